//! `DATE(ts)` / `CAST(ts AS DATE)` as integer arithmetic. The course groups and filters trips by pickup date all the
//! time; Arrow's cast turns every timestamp into a calendar date field by field, which costs more than scanning and
//! aggregating the column (0.8 s per 24M rows here). For a timestamp without a time zone the date is just the
//! timestamp floor-divided by a day. Two rules:
//! - [`DateFilters`] (an analyzer rule, before DataFusion's optimizer hoists common expressions out of filters)
//!   turns a comparison of the date with a date literal into the equivalent comparison of the timestamp
//!   (`CAST(ts AS DATE) BETWEEN d1 AND d2` is `ts >= d1 AND ts < d2 + 1 day`): exact, cheap, and prunable by the
//!   Parquet statistics of the timestamp column;
//! - [`FastDates`] (an optimizer rule, after DataFusion's own) replaces every remaining cast (group keys,
//!   projections, other filters) by [`TimestampToDate`], a one-division kernel.
//!
//! Timestamps with a time zone keep DataFusion's cast (their date depends on the zone's rules).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Date32Array, PrimitiveArray};
use datafusion::arrow::datatypes::{
    ArrowTimestampType, DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::{Between, BinaryExpr, Cast, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility, lit,
};
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use tripline_core::time;

const SECONDS_PER_DAY: i64 = 86_400;
const DAY_S: i64 = SECONDS_PER_DAY;
const DAY_MS: i64 = SECONDS_PER_DAY * 1_000;
const DAY_US: i64 = SECONDS_PER_DAY * 1_000_000;
const DAY_NS: i64 = SECONDS_PER_DAY * 1_000_000_000;

/// Units of `unit` in one day.
pub(crate) fn per_day(unit: &TimeUnit) -> i64 {
    SECONDS_PER_DAY
        * match unit {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        }
}

/// The optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct FastDates;

impl OptimizerRule for FastDates {
    fn name(&self) -> &str {
        "tripline_fast_dates"
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
        if !matches!(
            plan,
            LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Filter(_)
        ) {
            return Ok(Transformed::no(plan));
        }
        let schema = Arc::clone(plan.inputs()[0].schema());
        let names = NamePreserver::new(&plan);
        let rewritten = plan.map_expressions(|expr| {
            let saved = names.save(&expr);
            let expr = expr.transform_up(|e| fast_cast(e, &schema))?;
            Ok(expr.update_data(|e| saved.restore(e)))
        })?;
        if rewritten.transformed {
            rewritten.map_data(|p| p.recompute_schema())
        } else {
            Ok(rewritten)
        }
    }
}

/// The analyzer rule that unwraps date comparisons in filters (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct DateFilters;

impl AnalyzerRule for DateFilters {
    fn name(&self) -> &str {
        "tripline_date_filters"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            if !matches!(node, LogicalPlan::Filter(_)) {
                return Ok(Transformed::no(node));
            }
            let schema = Arc::clone(node.inputs()[0].schema());
            node.map_expressions(|predicate| {
                predicate.transform_up(|e| unwrap_date_comparison(e, &schema))
            })
        })
        .map(|t| t.data)
    }
}

/// The timestamp `e` when it has a zone-less timestamp type, with its unit.
fn zoneless_timestamp(e: &Expr, schema: &DFSchema) -> Option<TimeUnit> {
    match e.get_type(schema).ok()? {
        DataType::Timestamp(unit, None) => Some(unit),
        _ => None,
    }
}

/// `CAST(ts AS DATE)` of a zone-less timestamp: its argument and unit.
fn date_cast<'a>(e: &'a Expr, schema: &DFSchema) -> Option<(&'a Expr, TimeUnit)> {
    match e {
        Expr::Cast(Cast { expr, field }) if *field.data_type() == DataType::Date32 => {
            zoneless_timestamp(expr, schema).map(|unit| (expr.as_ref(), unit))
        }
        _ => None,
    }
}

/// `CAST(ts AS DATE)` or BigQuery's `DATE(ts)` (a function until the optimizer simplifies it to the cast).
fn date_of<'a>(e: &'a Expr, schema: &DFSchema) -> Option<(&'a Expr, TimeUnit)> {
    match e {
        Expr::ScalarFunction(ScalarFunction { func, args })
            if func.name() == "date" && args.len() == 1 =>
        {
            zoneless_timestamp(&args[0], schema).map(|unit| (&args[0], unit))
        }
        other => date_cast(other, schema),
    }
}

/// A non-null `DATE` literal's days since the epoch; also a constant cast to `DATE` (`'2019-06-01'` compared with
/// a date is `CAST(Utf8("2019-06-01") AS Date32)` until the optimizer folds it).
fn date_literal(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(ScalarValue::Date32(Some(d)), _) => Some(i64::from(*d)),
        Expr::Cast(Cast { expr, field }) if *field.data_type() == DataType::Date32 => {
            match expr.as_ref() {
                Expr::Literal(v, _) => match v.cast_to(&DataType::Date32).ok()? {
                    ScalarValue::Date32(Some(d)) => Some(i64::from(d)),
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

/// The timestamp literal at the start of day `days`, in `unit`.
fn day_start(days: i64, unit: &TimeUnit) -> Option<Expr> {
    let v = days.checked_mul(per_day(unit))?;
    Some(lit(match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(Some(v), None),
        TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(v), None),
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(v), None),
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(v), None),
    }))
}

/// `CAST(ts AS DATE) <op> DATE 'd'` (either side) and `CAST(ts AS DATE) [NOT] BETWEEN ...` as comparisons of `ts`.
fn unwrap_date_comparison(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let rewritten = match &e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (ts, unit, days, op) = match (date_of(left, schema), date_of(right, schema)) {
                (Some((ts, unit)), None) => match date_literal(right) {
                    Some(d) => (ts, unit, d, *op),
                    None => return Ok(Transformed::no(e)),
                },
                (None, Some((ts, unit))) => match (date_literal(left), op.swap()) {
                    (Some(d), Some(op)) => (ts, unit, d, op),
                    _ => return Ok(Transformed::no(e)),
                },
                _ => return Ok(Transformed::no(e)),
            };
            let (Some(start), Some(next)) = (day_start(days, &unit), day_start(days + 1, &unit))
            else {
                return Ok(Transformed::no(e));
            };
            let ts = ts.clone();
            match op {
                Operator::Eq => ts.clone().gt_eq(start).and(ts.lt(next)),
                Operator::NotEq => ts.clone().lt(start).or(ts.gt_eq(next)),
                Operator::Gt => ts.gt_eq(next),
                Operator::GtEq => ts.gt_eq(start),
                Operator::Lt => ts.lt(start),
                Operator::LtEq => ts.lt(next),
                _ => return Ok(Transformed::no(e)),
            }
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let Some((ts, unit)) = date_of(expr, schema) else {
                return Ok(Transformed::no(e));
            };
            let (Some(lo), Some(hi)) = (date_literal(low), date_literal(high)) else {
                return Ok(Transformed::no(e));
            };
            let (Some(start), Some(end)) = (day_start(lo, &unit), day_start(hi + 1, &unit)) else {
                return Ok(Transformed::no(e));
            };
            let ts = ts.clone();
            if *negated {
                ts.clone().lt(start).or(ts.gt_eq(end))
            } else {
                ts.clone().gt_eq(start).and(ts.lt(end))
            }
        }
        _ => return Ok(Transformed::no(e)),
    };
    Ok(Transformed::yes(rewritten))
}

/// `CAST(ts AS DATE)` of a zone-less timestamp as [`TimestampToDate`], `CAST(ts AS VARCHAR)` as
/// [`crate::timestamp_text`]'s kernel, and `date_trunc('week' | 'month' |
/// 'quarter' | 'year', ts)` as [`TimestampTrunc`] (DataFusion's own `date_trunc` already does the finer units with
/// arithmetic; the calendar units go through chrono value by value).
fn fast_cast(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    if let Some((granularity, ts)) = coarse_date_trunc(&e, schema) {
        let f = Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(timestamp_trunc(granularity)),
            vec![ts.clone()],
        ));
        return Ok(Transformed::yes(f));
    }
    if let Some(f) = crate::timestamp_text::text_cast(&e, schema) {
        return Ok(Transformed::yes(f));
    }
    let Some((ts, _)) = date_cast(&e, schema) else {
        return Ok(Transformed::no(e));
    };
    let f = Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(timestamp_to_date()),
        vec![ts.clone()],
    ));
    Ok(Transformed::yes(f))
}

/// The date of a zone-less timestamp, by floor division.
pub(crate) fn timestamp_to_date() -> ScalarUDF {
    ScalarUDF::new_from_impl(TimestampToDate {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

/// See [`timestamp_to_date`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimestampToDate {
    signature: Signature,
}

/// `array` as the timestamp array it is.
fn timestamps<T: ArrowTimestampType>(array: &dyn Array) -> Result<&PrimitiveArray<T>> {
    match array.as_any().downcast_ref::<PrimitiveArray<T>>() {
        Some(array) => Ok(array),
        None => exec_err!("unexpected array type {}", array.data_type()),
    }
}

/// The days of `array`; `PER_DAY` is a constant so the division compiles to a multiplication.
fn days_of<T: ArrowTimestampType, const PER_DAY: i64>(array: &dyn Array) -> Result<ArrayRef> {
    // Dates of real timestamps fit in i32 (i64 nanoseconds span +-292 years).
    let days: Date32Array = timestamps::<T>(array)?.unary(|v| v.div_euclid(PER_DAY) as i32);
    Ok(Arc::new(days))
}

impl ScalarUDFImpl for TimestampToDate {
    fn name(&self) -> &str {
        "timestamp_to_date"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Date32,
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arg = args
            .args
            .into_iter()
            .next()
            .expect("signature has one argument");
        match arg {
            ColumnarValue::Scalar(s) => Ok(ColumnarValue::Scalar(s.cast_to(&DataType::Date32)?)),
            ColumnarValue::Array(a) => {
                let out = match a.data_type() {
                    DataType::Timestamp(TimeUnit::Second, None) => {
                        days_of::<TimestampSecondType, DAY_S>(&a)?
                    }
                    DataType::Timestamp(TimeUnit::Millisecond, None) => {
                        days_of::<TimestampMillisecondType, DAY_MS>(&a)?
                    }
                    DataType::Timestamp(TimeUnit::Microsecond, None) => {
                        days_of::<TimestampMicrosecondType, DAY_US>(&a)?
                    }
                    DataType::Timestamp(TimeUnit::Nanosecond, None) => {
                        days_of::<TimestampNanosecondType, DAY_NS>(&a)?
                    }
                    other => {
                        return exec_err!(
                            "timestamp_to_date expects a timestamp without time zone, got {other}"
                        );
                    }
                };
                Ok(ColumnarValue::Array(out))
            }
        }
    }
}

/// `date_trunc('<calendar unit>', ts)` of a zone-less timestamp whose result has the timestamp's own type.
fn coarse_date_trunc<'a>(e: &'a Expr, schema: &DFSchema) -> Option<(Coarse, &'a Expr)> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = e else {
        return None;
    };
    if func.name() != "date_trunc" || args.len() != 2 {
        return None;
    }
    let granularity = match &args[0] {
        Expr::Literal(
            ScalarValue::Utf8(Some(g))
            | ScalarValue::Utf8View(Some(g))
            | ScalarValue::LargeUtf8(Some(g)),
            _,
        ) => Coarse::parse(g)?,
        _ => return None,
    };
    let unit = zoneless_timestamp(&args[1], schema)?;
    // `date_trunc` keeps its argument's type; anything else (a future change of that) keeps DataFusion's kernel.
    match e.get_type(schema).ok()? {
        DataType::Timestamp(u, None) if u == unit => Some((granularity, &args[1])),
        _ => None,
    }
}

/// The calendar units of `date_trunc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Coarse {
    Week,
    Month,
    Quarter,
    Year,
}

/// One calendar period of a timestamp unit: `[start, end)` in that unit, and its first day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Period {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) first: i64,
}

impl Period {
    /// A period holding no timestamp, to start a scan with.
    pub(crate) const EMPTY: Self = Self {
        start: i64::MAX,
        end: i64::MIN,
        first: 0,
    };

    /// Whether timestamp `v` is in it.
    pub(crate) fn holds(&self, v: i64) -> bool {
        v >= self.start && v < self.end
    }
}

impl Coarse {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            "quarter" => Some(Self::Quarter),
            "year" => Some(Self::Year),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Week => "week",
            Self::Month => "month",
            Self::Quarter => "quarter",
            Self::Year => "year",
        }
    }

    /// The first day of the period after the one starting on day `first` (as returned by [`Self::first_day`]).
    fn next_first_day(self, first: i64) -> i64 {
        let months = match self {
            Self::Week => return first + 7,
            Self::Month => 1,
            Self::Quarter => 3,
            Self::Year => 12,
        };
        let (y, m, _) = time::civil_from_days(first);
        let m0 = m - 1 + months;
        time::days_from_civil(y + (m0 / 12) as i32, m0 % 12 + 1, 1)
    }

    /// The period holding timestamp `v` (of a unit with `per_day` units a day); `None` if it starts before the
    /// unit's range (its `end` saturates at the range's end).
    pub(crate) fn period_of(self, v: i64, per_day: i64) -> Option<Period> {
        let first = self.first_day(v.div_euclid(per_day));
        let start = first.checked_mul(per_day)?;
        let end = self.next_first_day(first).checked_mul(per_day);
        Some(Period {
            start,
            end: end.unwrap_or(i64::MAX),
            first,
        })
    }

    /// The first day of the week (Monday), month, quarter or year holding day `days` (days since 1970-01-01).
    pub(crate) fn first_day(self, days: i64) -> i64 {
        match self {
            // 1970-01-01 was a Thursday: three days after a Monday.
            Self::Week => days - (days + 3).rem_euclid(7),
            Self::Month | Self::Quarter | Self::Year => {
                let (y, m, _) = time::civil_from_days(days);
                let m = match self {
                    Self::Month => m,
                    Self::Quarter => (m - 1) / 3 * 3 + 1,
                    _ => 1,
                };
                time::days_from_civil(y, m, 1)
            }
        }
    }
}

/// Apply `f` to the one argument of a call as an array: a scalar is a one-row array, and its answer a scalar again.
pub(crate) fn on_argument(
    args: ScalarFunctionArgs,
    f: impl FnOnce(&ArrayRef) -> Result<ArrayRef>,
) -> Result<ColumnarValue> {
    let arg = args
        .args
        .into_iter()
        .next()
        .expect("signature has one argument");
    let scalar = matches!(arg, ColumnarValue::Scalar(_));
    let out = f(&arg.into_array(if scalar { 1 } else { args.number_rows })?)?;
    if scalar {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
    }
    Ok(ColumnarValue::Array(out))
}

/// `date_trunc('<granularity>', ts)` of a zone-less timestamp by integer arithmetic.
pub(crate) fn timestamp_trunc(granularity: Coarse) -> ScalarUDF {
    ScalarUDF::new_from_impl(TimestampTrunc {
        granularity,
        signature: Signature::any(1, Volatility::Immutable),
    })
}

/// See [`timestamp_trunc`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimestampTrunc {
    granularity: Coarse,
    signature: Signature,
}

/// The granularity of `func` if it is one of [`timestamp_trunc`]'s functions.
pub(crate) fn truncation_of(func: &ScalarUDF) -> Option<Coarse> {
    (func.inner().as_ref() as &dyn std::any::Any)
        .downcast_ref::<TimestampTrunc>()
        .map(|t| t.granularity)
}

/// Whether `func` is [`timestamp_to_date`].
pub(crate) fn is_timestamp_to_date(func: &ScalarUDF) -> bool {
    (func.inner().as_ref() as &dyn std::any::Any)
        .downcast_ref::<TimestampToDate>()
        .is_some()
}

/// `array` truncated to `granularity`; `PER_DAY` units in a day. Trips come roughly in time order, so the last
/// period found is kept and a value inside it costs two comparisons instead of the calendar arithmetic.
fn trunc_of<T: ArrowTimestampType, const PER_DAY: i64>(
    array: &dyn Array,
    granularity: Coarse,
) -> Result<ArrayRef> {
    let array = timestamps::<T>(array)?;
    // The period of the last value.
    let mut last = Period::EMPTY;
    let mut out_of_range = None;
    let values = array.values().iter().enumerate().map(|(i, &v)| {
        if last.holds(v) {
            return last.start;
        }
        match granularity.period_of(v, PER_DAY) {
            Some(found) => {
                last = found;
                found.start
            }
            None => {
                // A null slot's value is meaningless; a real one is an error.
                if array.is_valid(i) && out_of_range.is_none() {
                    out_of_range = Some(v);
                }
                0
            }
        }
    });
    let out = PrimitiveArray::<T>::from_iter_values_with_nulls(values, array.nulls().cloned());
    if let Some(v) = out_of_range {
        return exec_err!(
            "date_trunc('{}', ..): timestamp {v} is out of range",
            granularity.name()
        );
    }
    Ok(Arc::new(out))
}

impl ScalarUDFImpl for TimestampTrunc {
    fn name(&self) -> &str {
        match self.granularity {
            Coarse::Week => "date_trunc_week",
            Coarse::Month => "date_trunc_month",
            Coarse::Quarter => "date_trunc_quarter",
            Coarse::Year => "date_trunc_year",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let arg = &args.arg_fields[0];
        Ok(Arc::new(Field::new(
            self.name(),
            arg.data_type().clone(),
            arg.is_nullable(),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let g = self.granularity;
        on_argument(args, |a| match a.data_type() {
            DataType::Timestamp(TimeUnit::Second, None) => {
                trunc_of::<TimestampSecondType, DAY_S>(a, g)
            }
            DataType::Timestamp(TimeUnit::Millisecond, None) => {
                trunc_of::<TimestampMillisecondType, DAY_MS>(a, g)
            }
            DataType::Timestamp(TimeUnit::Microsecond, None) => {
                trunc_of::<TimestampMicrosecondType, DAY_US>(a, g)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, None) => {
                trunc_of::<TimestampNanosecondType, DAY_NS>(a, g)
            }
            other => exec_err!(
                "date_trunc('{}', ..) expects a timestamp without time zone, got {other}",
                g.name()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMicrosecondArray;
    use datafusion::arrow::compute::cast;

    #[test]
    fn dates_equal_arrows_cast_before_and_after_the_epoch() {
        let day = per_day(&TimeUnit::Microsecond);
        let values: Vec<Option<i64>> = (-3 * day..3 * day)
            .step_by((day / 7) as usize)
            .chain([i64::MIN / 2, -1, 0, 1, day - 1, day, 1_700_000_000_000_000])
            .map(Some)
            .chain([None])
            .collect();
        let array: ArrayRef = Arc::new(TimestampMicrosecondArray::from(values.clone()));
        let expected = cast(&array, &DataType::Date32).unwrap();
        let field = Arc::new(Field::new("ts", array.data_type().clone(), true));
        let out = timestamp_to_date()
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(array)],
                arg_fields: vec![field],
                number_rows: values.len(),
                return_field: Arc::new(Field::new("d", DataType::Date32, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap();
        let ColumnarValue::Array(out) = out else {
            panic!("array in, array out")
        };
        assert_eq!(out.as_ref(), expected.as_ref());
    }

    /// `f` applied to `args` (one row per array element).
    fn invoke(f: &ScalarUDF, args: Vec<ColumnarValue>, rows: usize) -> ArrayRef {
        let arg_fields: Vec<FieldRef> = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type(), true)))
            .collect();
        let return_field = f
            .return_field_from_args(ReturnFieldArgs {
                arg_fields: &arg_fields,
                scalar_arguments: &vec![None; args.len()],
            })
            .unwrap();
        let out = f
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields,
                number_rows: rows,
                return_field,
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap();
        out.into_array(rows).unwrap()
    }

    #[test]
    fn calendar_truncation_equals_datafusions_date_trunc() {
        use datafusion::arrow::array::TimestampNanosecondArray;
        let day = per_day(&TimeUnit::Microsecond);
        // Every 7th hour plus a bit over 1968..1973 (a leap year, the epoch, negative values), then around
        // 2000-02-29 and 2100-03-01 (a century leap day and a century non-leap year), and nulls.
        let mut values: Vec<Option<i64>> = (-800 * day..1_200 * day)
            .step_by((7 * 3_600 * 1_000_000_i64 + 13) as usize)
            .map(Some)
            .collect();
        for centre in [11_016 * day, 47_541 * day] {
            values.extend(
                (centre - 40 * day..centre + 40 * day)
                    .step_by((day / 3) as usize)
                    .map(Some),
            );
        }
        values.extend([None, Some(0), Some(-1), Some(1_700_000_000_123_456)]);
        let rows = values.len();
        let micros: ArrayRef = Arc::new(TimestampMicrosecondArray::from(values.clone()));
        let nanos: ArrayRef = Arc::new(TimestampNanosecondArray::from(
            values
                .iter()
                .map(|v| v.map(|v| v * 1_000))
                .collect::<Vec<_>>(),
        ));
        // Backwards and shuffled too: the kernel remembers the last period, which must not leak.
        let mut shuffled = values.clone();
        shuffled.reverse();
        let n = shuffled.len();
        for i in 0..n {
            shuffled.swap(i, (i * 7_919) % n);
        }
        let shuffled: ArrayRef = Arc::new(TimestampMicrosecondArray::from(shuffled));
        let reference = datafusion::functions::datetime::date_trunc();
        for granularity in [Coarse::Week, Coarse::Month, Coarse::Quarter, Coarse::Year] {
            for array in [&micros, &nanos, &shuffled] {
                let expected = invoke(
                    &reference,
                    vec![
                        ColumnarValue::Scalar(ScalarValue::Utf8(Some(granularity.name().into()))),
                        ColumnarValue::Array(Arc::clone(array)),
                    ],
                    rows,
                );
                let out = invoke(
                    &timestamp_trunc(granularity),
                    vec![ColumnarValue::Array(Arc::clone(array))],
                    rows,
                );
                assert_eq!(
                    out.as_ref(),
                    expected.as_ref(),
                    "{granularity:?} {}",
                    array.data_type()
                );
            }
        }
        // A scalar stays a scalar.
        let one = invoke(
            &timestamp_trunc(Coarse::Month),
            vec![ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(
                Some(45 * day),
                None,
            ))],
            1,
        );
        assert_eq!(
            one.as_ref(),
            &TimestampMicrosecondArray::from(vec![Some(31 * day)]) as &dyn Array
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in -800_000..800_000 {
            let (y, m, d) = time::civil_from_days(days);
            assert!(
                (1..=12).contains(&m) && (1..=31).contains(&d),
                "{days}: {y}-{m}-{d}"
            );
            assert_eq!(time::days_from_civil(y, m, d), days);
        }
        assert_eq!(time::civil_from_days(0), (1970, 1, 1));
        assert_eq!(time::civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(time::civil_from_days(-1), (1969, 12, 31));
    }
}
