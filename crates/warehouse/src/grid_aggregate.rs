//! The partial stage of a `GROUP BY` on packed keys, each row's group found in a dense grid instead of a hash table.
//!
//! [`crate::packed_keys`] turns a group-by on several narrow keys (`date_trunc('month', pickup), PULocationID`) into
//! one on a `UInt64` that packs them. DataFusion's partial `AggregateExec` then builds the packed column and finds
//! each row's group by hashing it: together about a third of the CPU of the monthly zone revenue over 30M trips.
//! Keys like these take few values each (a dozen months, 265 zones), so [`GridAggregateExec`] gives each key an
//! axis of small coordinates and finds a row's group in a grid of group numbers indexed by its coordinates, the
//! way DuckDB's perfect hash aggregate does. Per key it makes one pass over the column; per row it does one load
//! from the grid, without hashing, comparing keys or building the packed column:
//!
//! - an integer or date key's coordinate is its value minus the smallest value seen;
//! - a `date_trunc` key's coordinate is its period's number in order of appearance. Trips come roughly in time
//!   order, so the last period is kept and a timestamp inside it costs two comparisons;
//! - a nullable key keeps coordinate 0 for NULL.
//!
//! An axis grows when a value falls outside it, and the grid is then laid out again; this is rare, because an axis
//! at least doubles. If the grid would pass [`MAX_CELLS`] cells, the states so far are emitted and DataFusion's own
//! hash table groups the rest of the input on the packed key. A partial aggregate may emit a key more than once,
//! because the final stage merges the states. For the same reason, when the groups outgrow the memory the pool
//! grants, the states so far are emitted and grouping starts again. The accumulators are DataFusion's
//! `GroupsAccumulator`s, so the partial states are exactly what the final stage expects.
//!
//! [`GridAggregates`] puts it in place of an `AggregateExec` in `Partial` mode grouped by one `pack_keys(..)`, with
//! no grouping sets, limit, dynamic filter, `FILTER`, `DISTINCT` or ordered aggregate, whose aggregates all have
//! group accumulators. Everything the planner knows about the node stays the replaced node's own
//! ([`ReplacedExec`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Field, Int8Type, Int16Type, Int32Type, Int64Type,
    Schema, SchemaRef, UInt8Type, UInt16Type, UInt32Type,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, exec_err, internal_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::metrics::BaselineMetrics;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::fast_dates::{Coarse, Period, per_day};
use crate::packed_keys::{Key, PackKeys};
use crate::replaced::{ReplacedExec, Replacement};

/// Cells of the largest grid (4 MiB of group numbers); keys spanning more are hashed.
const MAX_CELLS: usize = 1 << 20;

/// A cell without a group.
const EMPTY: u32 = u32::MAX;

/// Groups after which the hash table's states are emitted whatever the memory pool grants.
const MAX_GROUPS: usize = 1 << 24;

/// The physical optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct GridAggregates;

impl PhysicalOptimizerRule for GridAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match GridAggregate::of(&node) {
            Some(by) => Ok(Transformed::yes(
                Arc::new(GridAggregateExec::new(node, by)) as Arc<dyn ExecutionPlan>
            )),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tripline_grid_aggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A partial `AggregateExec` on packed keys, its groups found in a grid.
pub(crate) type GridAggregateExec = ReplacedExec<GridAggregate>;

/// How a [`GridAggregateExec`] aggregates: its key and its aggregates.
#[derive(Debug, Clone)]
pub(crate) struct GridAggregate {
    /// `pack_keys(..)`, evaluated once the keys are hashed.
    key: Arc<dyn PhysicalExpr>,
    /// How each key is packed, the first highest.
    specs: Arc<Vec<Key>>,
    /// Each key's expression.
    args: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
}

impl GridAggregate {
    /// How to run `node` in a grid, when it is an `AggregateExec` that can be (module documentation).
    fn of(node: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        let agg = node.downcast_ref::<AggregateExec>()?;
        let group_by = agg.group_expr();
        let simple = *agg.mode() == AggregateMode::Partial
            && group_by.is_single()
            && group_by.expr().len() == 1
            && agg.limit_options().is_none()
            && node.dynamic_expressions_produced().is_empty()
            && agg.filter_expr().iter().all(Option::is_none)
            && agg.aggr_expr().iter().all(|a| {
                !a.is_distinct() && a.order_bys().is_empty() && a.groups_accumulator_supported()
            });
        if !simple {
            return None;
        }
        let key = &group_by.expr()[0].0;
        let call = key.downcast_ref::<ScalarFunctionExpr>()?;
        let pack = call.fun().inner().downcast_ref::<PackKeys>()?;
        Some(Self {
            key: Arc::clone(key),
            specs: Arc::new(pack.specs().to_vec()),
            args: call.args().to_vec(),
            aggregates: agg.aggr_expr().to_vec(),
        })
    }
}

impl Replacement for GridAggregate {
    const NAME: &'static str = "GridAggregateExec";

    fn describe(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let aggregates: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        write!(
            f,
            "mode=Partial, key={}, aggr=[{}]",
            self.key,
            aggregates.join(", ")
        )
    }

    fn maintains_input_order(&self) -> bool {
        false
    }

    fn execute(
        &self,
        input: SendableRecordBatchStream,
        schema: SchemaRef,
        partition: usize,
        context: &Arc<TaskContext>,
        metrics: BaselineMetrics,
    ) -> Result<SendableRecordBatchStream> {
        let reservation = MemoryConsumer::new(format!("GridAggregateExec[{partition}]"))
            .register(context.memory_pool());
        let groups = Grouping {
            key: Arc::clone(&self.key),
            args: self.args.clone(),
            specs: Arc::clone(&self.specs),
            accumulators: accumulators(&self.aggregates)?,
            aggregates: self.aggregates.clone(),
            groups: Groups::Grid(Grid::new(&self.specs)),
            indices: Vec::new(),
            schema: Arc::clone(&schema),
            reservation,
        };
        let stream = futures::stream::unfold(Some((input, groups, metrics)), |state| async move {
            let (mut input, mut groups, metrics) = state?;
            loop {
                let step = match input.next().await {
                    Some(Ok(batch)) => {
                        let _timer = metrics.elapsed_compute().timer();
                        groups.update(&batch)
                    }
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => {
                        let _timer = metrics.elapsed_compute().timer();
                        return match groups.emit() {
                            Ok(Some(out)) => {
                                metrics.record_output(out.num_rows());
                                Some((Ok(out), None))
                            }
                            Ok(None) => None,
                            Err(e) => Some((Err(e), None)),
                        };
                    }
                };
                match step {
                    Ok(Some(out)) => {
                        metrics.record_output(out.num_rows());
                        return Some((Ok(out), Some((input, groups, metrics))));
                    }
                    Ok(None) => {}
                    Err(e) => return Some((Err(e), None)),
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Where one partition's groups are found.
enum Groups {
    Grid(Grid),
    /// DataFusion's hash table on the packed key, once the keys span too many cells.
    Hash(Box<dyn GroupValues>),
}

/// The groups of one partition and the accumulators fed by them.
struct Grouping {
    key: Arc<dyn PhysicalExpr>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    specs: Arc<Vec<Key>>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    groups: Groups,
    /// Each row's group, reused batch to batch.
    indices: Vec<usize>,
    schema: SchemaRef,
    reservation: MemoryReservation,
}

impl Grouping {
    /// Adds a batch; returns the states so far when they are emitted early (the groups outgrew their memory, or
    /// the keys the grid).
    fn update(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(None);
        }
        let mut early = None;
        if let Groups::Grid(grid) = &mut self.groups {
            let keys = self
                .args
                .iter()
                .map(|e| e.evaluate(batch)?.into_array(rows))
                .collect::<Result<Vec<_>>>()?;
            if !grid.intern(&keys, &mut self.indices)? {
                early = self.emit()?;
                let field = Field::new("key", DataType::UInt64, false);
                self.groups = Groups::Hash(new_group_values(
                    Arc::new(Schema::new(vec![field])),
                    &GroupOrdering::None,
                )?);
            }
        }
        if let Groups::Hash(table) = &mut self.groups {
            let key = self.key.evaluate(batch)?.into_array(rows)?;
            table.intern(&[key], &mut self.indices)?;
        }
        let groups = self.len();
        for (aggregate, accumulator) in self.aggregates.iter().zip(&mut self.accumulators) {
            let values = aggregate
                .expressions()
                .iter()
                .map(|e| e.evaluate(batch)?.into_array(rows))
                .collect::<Result<Vec<_>>>()?;
            accumulator.update_batch(&values, &self.indices, None, groups)?;
        }
        let size = match &self.groups {
            Groups::Grid(grid) => grid.size(),
            Groups::Hash(table) => table.size(),
        } + self.indices.capacity() * size_of::<usize>()
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>();
        if early.is_some() || (groups < MAX_GROUPS && self.reservation.try_resize(size).is_ok()) {
            return Ok(early);
        }
        self.emit()
    }

    fn len(&self) -> usize {
        match &self.groups {
            Groups::Grid(grid) => grid.keys.len(),
            Groups::Hash(table) => table.len(),
        }
    }

    /// The partial states of the groups so far, as one batch (`None` when there are none); starts again.
    fn emit(&mut self) -> Result<Option<RecordBatch>> {
        if self.len() == 0 {
            return Ok(None);
        }
        let keys: ArrayRef = match &mut self.groups {
            Groups::Grid(grid) => {
                let keys = UInt64Array::from(std::mem::take(&mut grid.keys));
                *grid = Grid::new(&self.specs);
                Arc::new(keys)
            }
            Groups::Hash(table) => {
                let mut keys = table.emit(EmitTo::All)?;
                table.clear_shrink(0);
                keys.remove(0)
            }
        };
        let mut columns = vec![keys];
        for accumulator in &mut self.accumulators {
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        self.accumulators = accumulators(&self.aggregates)?;
        self.indices = Vec::new();
        self.reservation.free();
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?))
    }
}

fn accumulators(
    aggregates: &[Arc<AggregateFunctionExpr>],
) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
    aggregates
        .iter()
        .map(|a| a.create_groups_accumulator())
        .collect()
}

/// Group numbers by the keys' coordinates (module documentation).
///
/// Every axis holds a power of two of coordinates, so a row's cell is its coordinates' bits side by side, the first
/// axis highest, as [`PackKeys`] packs the keys themselves: one pass per key shifts its coordinates in.
struct Grid {
    specs: Vec<Key>,
    axes: Vec<Axis>,
    /// The group of each cell, or [`EMPTY`].
    cells: Vec<u32>,
    /// The packed key of each group.
    keys: Vec<u64>,
    /// Each group's key values (`axes.len()` per group), to lay the grid out again.
    values: Vec<Option<i64>>,
    /// The cell of each row of the batch, reused batch to batch.
    rows: Vec<u32>,
}

impl Grid {
    fn new(specs: &[Key]) -> Self {
        Self {
            specs: specs.to_vec(),
            axes: specs.iter().map(Axis::new).collect(),
            cells: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
            rows: Vec::new(),
        }
    }

    fn size(&self) -> usize {
        (self.cells.capacity() + self.rows.capacity()) * size_of::<u32>()
            + self.keys.capacity() * size_of::<u64>()
            + self.values.capacity() * size_of::<Option<i64>>()
    }

    /// The group of each row of `keys` (one array per axis) into `groups`, new groups numbered in order of
    /// appearance. `false` (and nothing changed but the axes) when the keys need more than [`MAX_CELLS`] cells.
    fn intern(&mut self, keys: &[ArrayRef], groups: &mut Vec<usize>) -> Result<bool> {
        let mut rows = std::mem::take(&mut self.rows);
        let mut grew = self.cells.is_empty();
        // An axis that grows changes the bits of every cell: the batch starts again (rare: axes double).
        'batch: loop {
            rows.clear();
            rows.resize(keys[0].len(), 0);
            for ((axis, spec), array) in self.axes.iter_mut().zip(&self.specs).zip(keys) {
                match axis.fold(spec, array, &mut rows)? {
                    Folded::Inside => {}
                    Folded::Grew => {
                        grew = true;
                        continue 'batch;
                    }
                    Folded::TooWide => {
                        self.rows = rows;
                        return Ok(false);
                    }
                }
            }
            break;
        }
        if grew && !self.lay_out() {
            self.rows = rows;
            return Ok(false);
        }
        groups.clear();
        groups.reserve(rows.len());
        for &cell in &rows {
            let group = self.cells[cell as usize];
            groups.push(if group == EMPTY {
                self.new_group(cell as usize)
            } else {
                group as usize
            });
        }
        self.rows = rows;
        Ok(true)
    }

    /// A new group for the empty `cell`.
    #[cold]
    #[inline(never)]
    fn new_group(&mut self, cell: usize) -> usize {
        let group = self.keys.len();
        let mut key = 0u64;
        let mut shift: u32 = self.axes.iter().map(Axis::bits).sum();
        for (axis, spec) in self.axes.iter().zip(&self.specs) {
            shift -= axis.bits();
            let value = axis.value_of(((cell >> shift) & (axis.len() - 1)) as u32);
            key = (key << spec.width()) | spec.code(value);
            self.values.push(value);
        }
        self.keys.push(key);
        self.cells[cell] = group as u32;
        group
    }

    /// Cells for the axes as they are now, every group placed again; `false` if they would be more than
    /// [`MAX_CELLS`].
    fn lay_out(&mut self) -> bool {
        let bits: u32 = self.axes.iter().map(Axis::bits).sum();
        if bits > MAX_CELLS.trailing_zeros() {
            return false;
        }
        self.cells = vec![EMPTY; 1 << bits];
        let n = self.axes.len();
        for group in 0..self.keys.len() {
            let values = &self.values[group * n..(group + 1) * n];
            let cell = self
                .axes
                .iter()
                .zip(values)
                .fold(0usize, |cell, (axis, &value)| {
                    (cell << axis.bits()) | axis.coordinate_of(value) as usize
                });
            self.cells[cell] = group as u32;
        }
        true
    }
}

/// What folding a batch's key into the rows' cells did.
#[derive(Debug, PartialEq, Eq)]
enum Folded {
    Inside,
    /// The axis grew to hold the batch: the cells are to be computed again.
    Grew,
    /// The values span more than [`MAX_CELLS`].
    TooWide,
}

/// One key's coordinates: a power of two of them, the first NULL's if the key is nullable.
#[derive(Debug)]
enum Axis {
    Values(Values),
    Periods(Periods),
}

impl Axis {
    fn new(spec: &Key) -> Self {
        let nulls = u32::from(spec.nullable);
        match (spec.period, &spec.midnight) {
            (Some(period), Some(unit)) => Self::Periods(Periods {
                period,
                per_day: per_day(unit),
                firsts: Vec::new(),
                known: HashMap::new(),
                last: (Period::EMPTY, 0),
                nulls,
                len: 1,
            }),
            _ => Self::Values(Values {
                base: 0,
                span: 0,
                nulls,
            }),
        }
    }

    /// Coordinates, NULL's included: a power of two.
    fn len(&self) -> usize {
        match self {
            Self::Values(v) => (v.nulls as usize + v.span as usize).max(1),
            Self::Periods(p) => p.len,
        }
    }

    /// Bits of a coordinate.
    fn bits(&self) -> u32 {
        self.len().trailing_zeros()
    }

    /// The value at coordinate `c` (as [`Key::code`] takes it).
    fn value_of(&self, c: u32) -> Option<i64> {
        match self {
            Self::Values(v) => (c >= v.nulls).then(|| v.base + i64::from(c - v.nulls)),
            Self::Periods(p) => (c >= p.nulls).then(|| p.firsts[(c - p.nulls) as usize]),
        }
    }

    /// The coordinate of `value`, one the axis holds.
    fn coordinate_of(&self, value: Option<i64>) -> u32 {
        match (self, value) {
            (_, None) => 0,
            (Self::Values(v), Some(value)) => v.nulls + (value - v.base) as u32,
            (Self::Periods(p), Some(first)) => p.known[&first],
        }
    }

    /// Each row's coordinate of `array` (a key packed as `spec` says) shifted into its cell in `rows`, unless the
    /// axis had to grow to hold them.
    fn fold(&mut self, spec: &Key, array: &ArrayRef, rows: &mut [u32]) -> Result<Folded> {
        if array.null_count() > 0 && !spec.nullable {
            return internal_err!("grid aggregate: NULL in a key declared not nullable");
        }
        match self {
            Self::Periods(periods) => {
                let timestamps = cast(array, &DataType::Int64)?;
                periods.fold(timestamps.as_primitive::<Int64Type>(), rows)
            }
            Self::Values(values) => match (array.data_type(), &spec.midnight) {
                (DataType::Int8, _) => Ok(values.fold(array.as_primitive::<Int8Type>(), rows)),
                (DataType::Int16, _) => Ok(values.fold(array.as_primitive::<Int16Type>(), rows)),
                (DataType::Int32, _) => Ok(values.fold(array.as_primitive::<Int32Type>(), rows)),
                (DataType::UInt8, _) => Ok(values.fold(array.as_primitive::<UInt8Type>(), rows)),
                (DataType::UInt16, _) => Ok(values.fold(array.as_primitive::<UInt16Type>(), rows)),
                (DataType::UInt32, _) => Ok(values.fold(array.as_primitive::<UInt32Type>(), rows)),
                (DataType::Date32, _) => Ok(values.fold(array.as_primitive::<Date32Type>(), rows)),
                (DataType::Timestamp(unit, None), Some(_)) => {
                    // A period start: its day number.
                    let per_day = per_day(unit);
                    let timestamps = cast(array, &DataType::Int64)?;
                    let days: PrimitiveArray<Int64Type> = timestamps
                        .as_primitive::<Int64Type>()
                        .unary(|v| v.div_euclid(per_day));
                    Ok(values.fold(&days, rows))
                }
                (other, _) => exec_err!("grid aggregate: cannot place a {other} key"),
            },
        }
    }
}

/// Coordinates of integer values: `nulls + value - base`, for `span` values from `base`.
#[derive(Debug)]
struct Values {
    base: i64,
    span: u64,
    /// 1 if coordinate 0 is NULL's, else 0.
    nulls: u32,
}

impl Values {
    fn fold<T>(&mut self, array: &PrimitiveArray<T>, rows: &mut [u32]) -> Folded
    where
        T: ArrowPrimitiveType,
        T::Native: Into<i64>,
    {
        let (base, span, first) = (self.base, self.span, self.nulls);
        let bits = (first as usize + span as usize).max(1).trailing_zeros();
        let values = array.values();
        let mut inside = true;
        match array.nulls().filter(|n| n.null_count() > 0) {
            None => {
                for (cell, &v) in rows.iter_mut().zip(values.iter()) {
                    let offset = v.into().wrapping_sub(base) as u64;
                    inside &= offset < span;
                    *cell = (*cell << bits) | first.wrapping_add(offset as u32);
                }
            }
            Some(nulls) => {
                for ((cell, &v), valid) in rows.iter_mut().zip(values.iter()).zip(nulls.iter()) {
                    let offset = v.into().wrapping_sub(base) as u64;
                    inside &= !valid || offset < span;
                    let c = if valid {
                        first.wrapping_add(offset as u32)
                    } else {
                        0
                    };
                    *cell = (*cell << bits) | c;
                }
            }
        }
        match inside {
            true => Folded::Inside,
            false if self.widen(array) => Folded::Grew,
            false => Folded::TooWide,
        }
    }

    /// The axis widened to hold every value of `array` (at least doubled); `false` if it would pass
    /// [`MAX_CELLS`].
    fn widen<T>(&mut self, array: &PrimitiveArray<T>) -> bool
    where
        T: ArrowPrimitiveType,
        T::Native: Into<i64>,
    {
        let (mut low, mut high) = (i64::MAX, i64::MIN);
        for v in array.iter().flatten() {
            let v: i64 = v.into();
            low = low.min(v);
            high = high.max(v);
        }
        if self.span > 0 {
            low = low.min(self.base);
            high = high.max(self.base + (self.span - 1) as i64);
        }
        let needed = (i128::from(high) - i128::from(low) + 1) as u128;
        let len =
            (needed.max(2 * u128::from(self.span)) + u128::from(self.nulls)).next_power_of_two();
        if len > MAX_CELLS as u128 {
            return false;
        }
        self.base = low;
        self.span = len as u64 - u64::from(self.nulls);
        true
    }
}

/// Coordinates of `date_trunc` periods, numbered in order of appearance.
#[derive(Debug)]
struct Periods {
    period: Coarse,
    per_day: i64,
    /// The first day of each period, in coordinate order.
    firsts: Vec<i64>,
    /// The coordinate of each period by its first day.
    known: HashMap<i64, u32>,
    /// The last period met, and its coordinate.
    last: (Period, u32),
    /// 1 if coordinate 0 is NULL's, else 0.
    nulls: u32,
    /// Coordinates in the grid: a power of two, at least the periods known.
    len: usize,
}

impl Periods {
    fn fold(&mut self, timestamps: &PrimitiveArray<Int64Type>, rows: &mut [u32]) -> Result<Folded> {
        let bits = self.len.trailing_zeros();
        let values = timestamps.values();
        // The last period in locals, so that the row loop reads no memory but the timestamps.
        let (mut last, mut coordinate) = self.last;
        let nulls = timestamps.nulls().filter(|n| n.null_count() > 0);
        for (i, (cell, &v)) in rows.iter_mut().zip(values.iter()).enumerate() {
            let c = if nulls.is_some_and(|n| n.is_null(i)) {
                0
            } else if last.holds(v) {
                coordinate
            } else {
                coordinate = self.enter(v)?;
                last = self.last.0;
                if coordinate as usize >= self.len {
                    return self.grow();
                }
                coordinate
            };
            *cell = (*cell << bits) | c;
        }
        Ok(Folded::Inside)
    }

    /// Room for every period known.
    #[cold]
    fn grow(&mut self) -> Result<Folded> {
        self.len = (self.nulls as usize + self.firsts.len()).next_power_of_two();
        Ok(if self.len > MAX_CELLS {
            Folded::TooWide
        } else {
            Folded::Grew
        })
    }

    /// The coordinate of timestamp `v`'s period, which becomes the last one. Out of line: the rows of a batch
    /// mostly stay in one period.
    #[cold]
    #[inline(never)]
    fn enter(&mut self, v: i64) -> Result<u32> {
        let Some(period) = self.period.period_of(v, self.per_day) else {
            return exec_err!(
                "date_trunc('{}', ..): timestamp {v} is out of range",
                self.period.name()
            );
        };
        let next = self.nulls + self.firsts.len() as u32;
        let c = *self.known.entry(period.first).or_insert_with(|| {
            self.firsts.push(period.first);
            next
        });
        self.last = (period, c);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use datafusion::arrow::array::{
        Float64Array, Int16Array, Int32Array, Int64Array, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::TimeUnit;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    const ROWS: i64 = 20_000;

    /// Row `i`: a pickup every 40 minutes from 2023 on (19 months; every 53rd NULL), a 16-bit zone (every 41st NULL, below
    /// zero from row 15,000 so the axis widens downwards), a key spanning millions from row 12,000 (past the grid),
    /// a value (every 7th NULL) and the row number.
    fn row(i: i64) -> (Option<i64>, Option<i16>, i32, Option<f64>, i64) {
        let ts = (i % 53 != 0).then_some(1_672_531_200_000_000 + i * 40 * 60 * 1_000_000);
        let zone = (i % 41 != 0)
            .then_some((i * 7_919 % 265 + 1) as i16 - if i > 15_000 { 300 } else { 0 });
        let wide = if i < 12_000 {
            (i % 100) as i32
        } else {
            (i * 1_000) as i32
        };
        (ts, zone, wide, (i % 7 != 0).then_some(i as f64 / 4.0), i)
    }

    /// Two partitions of batches of 700 rows, packed keys planned, with or without the grid.
    fn session(grid: bool, memory: Option<usize>) -> SessionContext {
        let mut builder = SessionStateBuilder::new()
            .with_default_features()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_optimizer_rule(Arc::new(crate::fast_dates::FastDates))
            .with_optimizer_rule(Arc::new(crate::packed_keys::PackedKeys));
        if let Some(limit) = memory {
            let runtime = RuntimeEnvBuilder::new()
                .with_memory_limit(limit, 1.0)
                .build_arc()
                .unwrap();
            builder = builder.with_runtime_env(runtime);
        }
        if grid {
            builder = builder.with_physical_optimizer_rule(Arc::new(GridAggregates));
        }
        let ctx = SessionContext::new_with_state(builder.build());
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("z", DataType::Int16, true),
            Field::new("w", DataType::Int32, false),
            Field::new("v", DataType::Float64, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let part = |from: i64, to: i64| {
            let rows: Vec<_> = (from..to).map(row).collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(TimestampMicrosecondArray::from_iter(
                        rows.iter().map(|r| r.0),
                    )),
                    Arc::new(Int16Array::from_iter(rows.iter().map(|r| r.1))),
                    Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.3))),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
                ],
            )
            .unwrap();
            (0..batch.num_rows())
                .step_by(700)
                .map(|at| batch.slice(at, 700.min(batch.num_rows() - at)))
                .collect::<Vec<_>>()
        };
        let table =
            MemTable::try_new(schema.clone(), vec![part(0, 13_000), part(13_000, ROWS)]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    async fn plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    }

    async fn run(grid: bool, sql: &str) -> (String, String) {
        let ctx = session(grid, None);
        let plan = plan(&ctx, sql).await;
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        (shown, pretty_format_batches(&batches).unwrap().to_string())
    }

    #[tokio::test]
    async fn results_equal_the_aggregate_operator() {
        for sql in [
            // Months in order of appearance, zones widening below zero, NULL in both.
            "SELECT date_trunc('month', ts) AS m, z, sum(v), count(*), avg(v), min(n), max(v) \
             FROM t GROUP BY 1, 2 ORDER BY 1, 2",
            "SELECT date_trunc('week', ts) AS wk, date_trunc('quarter', ts) AS q, count(*) \
             FROM t GROUP BY 1, 2 ORDER BY 1, 2",
            // Three integer keys; a HAVING on the merged states.
            "SELECT z, CAST(n % 7 AS SMALLINT) AS s, CAST(n % 3 AS TINYINT) AS b, count(*), sum(n) \
             FROM t GROUP BY 1, 2, 3 HAVING count(*) > 1 ORDER BY 1, 2, 3",
            // A key spanning past the grid from row 12,000: the rest is hashed.
            "SELECT z, w, count(*), sum(v) FROM t GROUP BY z, w ORDER BY z, w",
            // Only NULL keys; no rows at all.
            "SELECT date_trunc('month', ts) AS m, z, count(*) FROM t WHERE ts IS NULL GROUP BY 1, 2 ORDER BY 1, 2",
            "SELECT date_trunc('month', ts) AS m, z, sum(v) FROM t WHERE n < 0 GROUP BY 1, 2",
        ] {
            let (plan, fast) = run(true, sql).await;
            assert!(plan.contains("GridAggregateExec"), "{sql}\n{plan}");
            let (reference_plan, reference) = run(false, sql).await;
            assert!(!reference_plan.contains("GridAggregateExec"));
            assert_eq!(fast, reference, "{sql}");
        }
    }

    #[tokio::test]
    async fn other_aggregates_are_left_alone() {
        for sql in [
            // One key (not packed), or keys that do not fit 64 bits.
            "SELECT z, count(*) FROM t GROUP BY z ORDER BY z",
            "SELECT z, n, count(*) FROM t GROUP BY z, n ORDER BY z, n LIMIT 5",
            // FILTER.
            "SELECT z, w, count(*) FILTER (WHERE n > 3) FROM t GROUP BY z, w ORDER BY z, w",
        ] {
            let (plan, fast) = run(true, sql).await;
            assert!(!plan.contains("GridAggregateExec"), "{sql}\n{plan}");
            let (_, reference) = run(false, sql).await;
            assert_eq!(fast, reference, "{sql}");
        }
    }

    /// The partial states of every partition, added up by packed key: (sum of n, count) per key, and the batches.
    async fn partial_states(
        ctx: &SessionContext,
        sql: &str,
    ) -> (HashMap<u64, (i64, i64)>, Vec<usize>) {
        let plan = plan(ctx, sql).await;
        let mut partial = None;
        plan.apply(|node| {
            if node.downcast_ref::<GridAggregateExec>().is_some() {
                partial = Some(Arc::clone(node));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        let partial = partial.expect("a GridAggregateExec in the plan");
        let mut sums: HashMap<u64, (i64, i64)> = HashMap::new();
        let mut batches_per_partition = Vec::new();
        for p in 0..partial.properties().partitioning.partition_count() {
            let stream = partial.execute(p, ctx.task_ctx()).unwrap();
            let batches: Vec<RecordBatch> =
                futures::TryStreamExt::try_collect(stream).await.unwrap();
            batches_per_partition.push(batches.len());
            for batch in batches {
                let keys = batch
                    .column(0)
                    .as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
                let sum = batch.column(1).as_primitive::<Int64Type>();
                let count = batch.column(2).as_primitive::<Int64Type>();
                for r in 0..batch.num_rows() {
                    let entry = sums.entry(keys.value(r)).or_default();
                    entry.0 += sum.value(r);
                    entry.1 += count.value(r);
                }
            }
        }
        (sums, batches_per_partition)
    }

    /// Past row 12,000 the keys outgrow the grid, and with 64 KiB for everything the groups outgrow their memory:
    /// the states come out in several batches, a key in more than one, and they still add up to every row.
    #[tokio::test]
    async fn states_emitted_early_add_up_to_every_row() {
        let sql = "SELECT z, w, sum(n), count(*) FROM t GROUP BY z, w";
        let (wide, batches) = partial_states(&session(true, None), sql).await;
        assert!(batches.iter().any(|&b| b > 1), "{batches:?}");
        let (tight, batches) = partial_states(&session(true, Some(64 << 10)), sql).await;
        assert!(batches.iter().all(|&b| b > 2), "{batches:?}");
        let keys: std::collections::HashSet<_> = (0..ROWS).map(|i| (row(i).1, row(i).2)).collect();
        for states in [&wide, &tight] {
            assert_eq!(states.len(), keys.len());
            let (sum, count) = states
                .values()
                .fold((0, 0), |(s, c), &(s1, c1)| (s + s1, c + c1));
            assert_eq!((sum, count), ((0..ROWS).sum(), ROWS));
        }
        assert_eq!(wide, tight);
    }
}
