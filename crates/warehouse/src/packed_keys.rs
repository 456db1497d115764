//! Several narrow group keys as one 64-bit key.
//!
//! DataFusion groups by one primitive key through a hash table of that primitive; by two or more keys it stores
//! and compares the keys column by column, which costs twice as much per row (the course's monthly zone revenue,
//! `GROUP BY date_trunc('month', pickup), PULocationID`, spent a third of its CPU there). When the keys together fit
//! in 64 bits they are packed into one `UInt64` before aggregating and unpacked after:
//!
//! ```text
//! Aggregate(keys: k1, k2..; aggs)   =>   Projection(unpack(key, 1) AS k1, unpack(key, 2) AS k2.., aggs)
//!                                          Aggregate(keys: pack(k1, k2..) AS key; aggs)
//! ```
//!
//! Exact, NULLs included: each key takes the bits its type can hold, plus one for NULL if it is nullable. A key
//! fits if it is an 8-, 16- or 32-bit integer or a date, or a zone-less timestamp that is the start of a calendar
//! period (`date_trunc` to a week, month, quarter or year), stored as its day number (28 bits for microseconds).
//! A `date_trunc` key is packed straight from the timestamp it truncates: the packing finds each row's period start
//! itself, so the truncated column is never built (one pass over the rows instead of two).
//!
//! The partial stage of such an aggregate mostly runs without the packing: [`crate::grid_aggregate`] finds the
//! groups from the keys' own columns and packs a key once per group. `pack_keys` itself runs when the keys span too
//! many values for its grid, and wherever else DataFusion evaluates the aggregate.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, PrimitiveArray, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Field, FieldRef, Int8Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, UInt8Type, UInt16Type, UInt32Type,
};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, exec_err};
use datafusion::logical_expr::expr::{Alias, ScalarFunction};
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Projection, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use crate::fast_dates::{Coarse, Period, per_day, truncation_of};
use crate::partition_dates::is_period_start;

/// The packed key's column name.
const PACKED: &str = "__tripline_packed_key";

/// The optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct PackedKeys;

impl OptimizerRule for PackedKeys {
    fn name(&self) -> &str {
        "tripline_packed_keys"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        crate::rule::on_aggregate(plan, pack)
    }
}

/// How one key is stored in the packed key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    data_type: DataType,
    /// Bits of the value (signed values are offset by half their range).
    bits: u32,
    signed: bool,
    /// A timestamp at midnight, stored as its day number in this unit.
    pub(crate) midnight: Option<TimeUnit>,
    /// Packed from the timestamp under `date_trunc(period, ts)` rather than from the truncated value.
    pub(crate) period: Option<Coarse>,
    pub(crate) nullable: bool,
}

impl Key {
    pub(crate) fn width(&self) -> u32 {
        self.bits + u32::from(self.nullable)
    }

    /// The bits stored for `value` (as [`fold`] reads it; `None` for NULL): the value offset to unsigned, with a
    /// set NULL bit above it if the key is nullable; all zeros for NULL.
    #[inline(always)]
    pub(crate) fn code(&self, value: Option<i64>) -> u64 {
        let present = if self.nullable { 1u64 << self.bits } else { 0 };
        match value {
            Some(v) => ((v.wrapping_add(self.offset()) as u64) & self.value_mask()) | present,
            None => 0,
        }
    }

    fn offset(&self) -> i64 {
        if self.signed { 1 << (self.bits - 1) } else { 0 }
    }

    fn value_mask(&self) -> u64 {
        (1u64 << self.bits) - 1
    }
}

/// How `expr` (a group key over `input`) can be stored, if it can, and the expression the packing reads for it.
fn classify(expr: &Expr, input: &datafusion::common::DFSchema) -> Result<Option<(Key, Expr)>> {
    let field = expr.to_field(input)?.1;
    let (data_type, nullable) = (field.data_type().clone(), field.is_nullable());
    let expr = expr.clone().unalias();
    let key = |bits, signed, midnight| {
        Some((
            Key {
                data_type: data_type.clone(),
                bits,
                signed,
                midnight,
                period: None,
                nullable,
            },
            expr.clone(),
        ))
    };
    Ok(match &data_type {
        DataType::Int8 => key(8, true, None),
        DataType::Int16 => key(16, true, None),
        DataType::Int32 | DataType::Date32 => key(32, true, None),
        DataType::UInt8 => key(8, false, None),
        DataType::UInt16 => key(16, false, None),
        DataType::UInt32 => key(32, false, None),
        DataType::Timestamp(unit, None) => {
            // Day numbers of the unit's whole range, with a sign bit.
            let days = i64::MAX / per_day(unit);
            let bits = 64 - days.leading_zeros() + 1;
            match &expr {
                Expr::ScalarFunction(ScalarFunction { func, args }) => {
                    match (truncation_of(func), args.as_slice()) {
                        // `date_trunc` keeps its argument's type: the timestamp is of the same unit.
                        (Some(period), [ts]) => key(bits, true, Some(*unit)).map(|(mut k, _)| {
                            k.period = Some(period);
                            (k, ts.clone())
                        }),
                        _ if is_period_start(func) => key(bits, true, Some(*unit)),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        _ => None,
    })
}

/// `aggregate` with its keys packed, or `None` if they are not several or do not fit 64 bits.
fn pack(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    let keys = &aggregate.group_expr;
    if keys.len() < 2 || keys.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
        return Ok(None);
    }
    let mut specs = Vec::with_capacity(keys.len());
    let mut inputs = Vec::with_capacity(keys.len());
    for key in keys {
        match classify(key, aggregate.input.schema())? {
            Some((spec, input)) => {
                specs.push(spec);
                inputs.push(input);
            }
            None => return Ok(None),
        }
    }
    if specs.iter().map(Key::width).sum::<u32>() > 64 {
        return Ok(None);
    }
    let specs = Arc::new(specs);
    let packed = Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(PackKeys {
            specs: Arc::clone(&specs),
            signature: Signature::any(specs.len(), Volatility::Immutable),
        })),
        inputs,
    ))
    .alias(PACKED);
    let inner = Aggregate::try_new(
        Arc::clone(&aggregate.input),
        vec![packed],
        aggregate.aggr_expr.clone(),
    )?;
    let packed_column = Expr::Column(Column::from(inner.schema.qualified_field(0)));
    let schema = Arc::clone(&aggregate.schema);
    let mut exprs = Vec::with_capacity(schema.fields().len());
    for (i, _) in specs.iter().enumerate() {
        let (qualifier, field) = schema.qualified_field(i);
        let unpacked = Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(ScalarUDF::new_from_impl(UnpackKey {
                specs: Arc::clone(&specs),
                index: i,
                signature: Signature::exact(vec![DataType::UInt64], Volatility::Immutable),
            })),
            vec![packed_column.clone()],
        ));
        exprs.push(Expr::Alias(Alias::new(
            unpacked,
            qualifier.cloned(),
            field.name(),
        )));
    }
    for j in 0..aggregate.aggr_expr.len() {
        exprs.push(Expr::Column(Column::from(
            inner.schema.qualified_field(1 + j),
        )));
    }
    Ok(Some(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(LogicalPlan::Aggregate(inner)),
    )?)))
}

/// `pack(k1, k2..)`: the keys' bits side by side, the first key highest.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct PackKeys {
    specs: Arc<Vec<Key>>,
    signature: Signature,
}

impl PackKeys {
    /// How each argument is packed, the first highest.
    pub(crate) fn specs(&self) -> &[Key] {
        &self.specs
    }
}

impl ScalarUDFImpl for PackKeys {
    fn name(&self) -> &str {
        "pack_keys"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(self.name(), DataType::UInt64, false)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let mut packed = vec![0u64; rows];
        for (spec, arg) in self.specs.iter().zip(args.args) {
            let array = arg.into_array(rows)?;
            match array.data_type() {
                DataType::Int8 => fold(
                    &mut packed,
                    array.as_primitive::<Int8Type>(),
                    spec,
                    i64::from,
                ),
                DataType::Int16 => fold(
                    &mut packed,
                    array.as_primitive::<Int16Type>(),
                    spec,
                    i64::from,
                ),
                DataType::Int32 => fold(
                    &mut packed,
                    array.as_primitive::<Int32Type>(),
                    spec,
                    i64::from,
                ),
                DataType::UInt8 => fold(
                    &mut packed,
                    array.as_primitive::<UInt8Type>(),
                    spec,
                    i64::from,
                ),
                DataType::UInt16 => fold(
                    &mut packed,
                    array.as_primitive::<UInt16Type>(),
                    spec,
                    i64::from,
                ),
                DataType::UInt32 => fold(
                    &mut packed,
                    array.as_primitive::<UInt32Type>(),
                    spec,
                    i64::from,
                ),
                DataType::Date32 => fold(
                    &mut packed,
                    array.as_primitive::<Date32Type>(),
                    spec,
                    i64::from,
                ),
                DataType::Timestamp(unit, None) if spec.period.is_some() => {
                    let period = spec.period.expect("checked");
                    let values = cast(&array, &DataType::Int64)?;
                    fold_periods(
                        &mut packed,
                        values.as_primitive(),
                        spec,
                        period,
                        per_day(unit),
                    )?;
                }
                DataType::Timestamp(unit, None) => {
                    let per_day = per_day(unit);
                    // Period starts repeat in long runs: the last one's day number is kept.
                    let mut last = (i64::MIN, 0i64);
                    let days = |v: i64| {
                        if v != last.0 {
                            last = (v, v.div_euclid(per_day));
                        }
                        last.1
                    };
                    let values = cast(&array, &DataType::Int64)?;
                    fold(&mut packed, values.as_primitive::<Int64Type>(), spec, days)
                }
                other => return exec_err!("pack_keys: cannot pack a {other} key"),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(UInt64Array::from(packed))))
    }
}

/// Shift `array`'s codes into `packed`, one per row: the value (as `to_i64` reads it) offset to unsigned, with a
/// set NULL bit above it for a value of a nullable key; all zeros for a NULL.
fn fold<T: ArrowPrimitiveType>(
    packed: &mut [u64],
    array: &PrimitiveArray<T>,
    spec: &Key,
    mut to_i64: impl FnMut(T::Native) -> i64,
) {
    let width = spec.width();
    let values = array.values();
    match array.nulls().filter(|n| n.null_count() > 0) {
        None => {
            for (slot, &v) in packed.iter_mut().zip(values.iter()) {
                *slot = (*slot << width) | spec.code(Some(to_i64(v)));
            }
        }
        Some(nulls) => {
            for ((slot, &v), valid) in packed.iter_mut().zip(values.iter()).zip(nulls.iter()) {
                *slot = (*slot << width) | spec.code(valid.then(|| to_i64(v)));
            }
        }
    }
}

/// [`fold`] of the period starts of `timestamps` (in units of `per_day` a day) as day numbers: what `fold` of
/// `date_trunc(period, ts)` would pack, without building the truncated column. Trips come roughly in time order, so
/// the last period found is kept and a timestamp inside it costs two comparisons instead of calendar arithmetic.
fn fold_periods(
    packed: &mut [u64],
    timestamps: &Int64Array,
    spec: &Key,
    period: Coarse,
    per_day: i64,
) -> Result<()> {
    // The period of the last timestamp.
    let mut last = Period::EMPTY;
    let mut overflow = false;
    let period_day = |v: i64| {
        if last.holds(v) {
            return last.first;
        }
        enter_period(&mut last, &mut overflow, v, period, per_day)
    };
    fold(packed, timestamps, spec, period_day);
    // A period starting before the unit's range cannot be returned by `date_trunc`: an error, unless only NULL
    // slots (whose values are meaningless) hit it.
    if overflow {
        let bad = (0..timestamps.len())
            .filter(|&i| timestamps.is_valid(i))
            .map(|i| timestamps.value(i))
            .find(|&v| period.period_of(v, per_day).is_none());
        if let Some(v) = bad {
            return exec_err!(
                "date_trunc('{}', ..): timestamp {v} is out of range",
                period.name()
            );
        }
    }
    Ok(())
}

/// Make `last` the period holding timestamp `v` and return its first day (see [`Coarse::period_of`]); sets
/// `overflow` if the period starts before the unit's range. Out of line: the rows of a batch mostly stay in one
/// period, and the comparisons that check it are all the row loop should hold.
#[cold]
#[inline(never)]
fn enter_period(
    last: &mut Period,
    overflow: &mut bool,
    v: i64,
    period: Coarse,
    per_day: i64,
) -> i64 {
    match period.period_of(v, per_day) {
        Some(found) => {
            *last = found;
            found.first
        }
        None => {
            *overflow = true;
            0
        }
    }
}

/// `unpack(key, i)`: key `i` back from the packed key, in its own type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UnpackKey {
    specs: Arc<Vec<Key>>,
    index: usize,
    signature: Signature,
}

impl ScalarUDFImpl for UnpackKey {
    fn name(&self) -> &str {
        "unpack_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.specs[self.index].data_type.clone())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        let spec = &self.specs[self.index];
        Ok(Arc::new(Field::new(
            self.name(),
            spec.data_type.clone(),
            spec.nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arg = args.args.into_iter().next().expect("one argument");
        let array = arg.into_array(rows)?;
        let Some(packed) = array.as_any().downcast_ref::<UInt64Array>() else {
            return exec_err!("unpack_key: expects UInt64, got {}", array.data_type());
        };
        let spec = &self.specs[self.index];
        let shift: u32 = self.specs[self.index + 1..].iter().map(Key::width).sum();
        let per_day = spec.midnight.as_ref().map(per_day).unwrap_or(1);
        let offset = spec.offset();
        let mask = spec.value_mask();
        let values: Int64Array = packed
            .values()
            .iter()
            .map(|&p| {
                let code = p.checked_shr(shift).unwrap_or(0);
                if spec.nullable && code & (1 << spec.bits) == 0 {
                    return None;
                }
                let v = ((code & mask) as i64).wrapping_sub(offset);
                Some(v.wrapping_mul(per_day))
            })
            .collect();
        let values: ArrayRef = Arc::new(values);
        let out = match &spec.data_type {
            DataType::Date32 => cast(&cast(&values, &DataType::Int32)?, &DataType::Date32)?,
            other => cast(&values, other)?,
        };
        Ok(ColumnarValue::Array(out))
    }
}
