//! Partial `sum` / `count` grouped by one integer key, in a table of its own.
//!
//! After [`crate::packed_keys`] the course's monthly zone revenue groups 30 million trips by one `UInt64` key into a
//! few thousand groups. DataFusion's partial aggregate then spends ~6 ns a row: hashing each key through a generic
//! hasher into a table of `(key, group)` entries, then one pass per aggregate through its null-tracking
//! accumulators. [`KeyAggregateExec`] does the same work in one tight loop per column: a multiplicative hash into an
//! open-addressed table sized for the groups seen (a few thousand fit in the L1/L2 caches), then `sum`s and
//! `count`s added by group index into plain vectors.
//!
//! [`OneKeyAggregate`] puts it in place of a `Partial` [`AggregateExec`] that has exactly one group key of an integer
//! or date type, unordered input, no limit, and only `sum` (Float64 / Int64) and `count` aggregates without
//! `DISTINCT`, `FILTER` or `ORDER BY`. Its output is the partial aggregate's: the key and each aggregate's state, so
//! the final aggregate merges it unchanged. Being partial, it may emit a group more than once: it does when its
//! memory reservation cannot grow, or when the groups reach [`MAX_GROUPS`], and then starts again empty. Like
//! DataFusion's, once the first rows show almost one group per row it stops aggregating and passes each row on as
//! its own state.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanBufferBuilder, Float64Array, Int64Array,
    PrimitiveArray, RecordBatch,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int32Type, Int64Type, SchemaRef, UInt32Type, UInt64Type,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, InputOrderMode,
    PlanProperties,
};
use futures::{Stream, StreamExt};

/// Groups one partition holds before it emits them and starts again (partial state may repeat a group).
pub(crate) const MAX_GROUPS: usize = 1 << 20;

/// The physical optimizer rule (see the module documentation).
#[derive(Debug)]
pub(crate) struct OneKeyAggregate {
    /// Groups a partition holds before it emits them ([`MAX_GROUPS`]; tests use a few).
    pub(crate) max_groups: usize,
}

impl Default for OneKeyAggregate {
    fn default() -> Self {
        Self {
            max_groups: MAX_GROUPS,
        }
    }
}

impl PhysicalOptimizerRule for OneKeyAggregate {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(agg) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            match plan_of(agg)? {
                Some((key, aggs)) => Ok(Transformed::yes(Arc::new(KeyAggregateExec {
                    aggregate: Arc::clone(&node),
                    key,
                    aggs,
                    max_groups: self.max_groups,
                    metrics: ExecutionPlanMetricsSet::new(),
                }) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tripline_one_key_aggregate"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One aggregate the node computes.
#[derive(Debug, Clone)]
enum Agg {
    /// `count(*)` or `count(non-null literal)`: rows.
    CountRows,
    /// `count(expr)`: rows where `expr` is not NULL.
    Count(Arc<dyn PhysicalExpr>),
    /// `sum(expr)` of a Float64 expression.
    SumF64(Arc<dyn PhysicalExpr>),
    /// `sum(expr)` of an Int64 expression (wrapping on overflow, as DataFusion's).
    SumI64(Arc<dyn PhysicalExpr>),
}

/// The key expression and the aggregates, if `agg` is a partial aggregate this node computes exactly.
fn plan_of(agg: &AggregateExec) -> Result<Option<(Arc<dyn PhysicalExpr>, Vec<Agg>)>> {
    if *agg.mode() != AggregateMode::Partial
        || *agg.input_order_mode() != InputOrderMode::Linear
        || agg.limit_options().is_some()
        || !agg.group_expr().is_single()
        || agg.group_expr().expr().len() != 1
        || agg.filter_expr().iter().any(Option::is_some)
    {
        return Ok(None);
    }
    let input = agg.input_schema();
    let key = Arc::clone(&agg.group_expr().expr()[0].0);
    if KeyType::of(&key.data_type(&input)?).is_none() {
        return Ok(None);
    }
    let mut aggs = Vec::with_capacity(agg.aggr_expr().len());
    for e in agg.aggr_expr() {
        let args = e.expressions();
        if e.is_distinct() || !e.order_bys().is_empty() || args.len() != 1 {
            return Ok(None);
        }
        let states = e.state_fields()?;
        let [state] = states.as_slice() else {
            return Ok(None);
        };
        let arg = Arc::clone(&args[0]);
        let arg_type = arg.data_type(&input)?;
        let one = match (e.fun().name(), &arg_type, state.data_type()) {
            ("count", _, DataType::Int64) => {
                let literal = arg
                    .downcast_ref::<Literal>()
                    .is_some_and(|l| !l.value().is_null());
                if literal {
                    Agg::CountRows
                } else {
                    Agg::Count(arg)
                }
            }
            ("sum", DataType::Float64, DataType::Float64) => Agg::SumF64(arg),
            ("sum", DataType::Int64, DataType::Int64) => Agg::SumI64(arg),
            _ => return Ok(None),
        };
        aggs.push(one);
    }
    Ok(Some((key, aggs)))
}

/// The key types the table holds, each as the 64 bits of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Int32,
    Date32,
    UInt32,
    Int64,
    UInt64,
}

impl KeyType {
    fn of(t: &DataType) -> Option<Self> {
        Some(match t {
            DataType::Int32 => Self::Int32,
            DataType::Date32 => Self::Date32,
            DataType::UInt32 => Self::UInt32,
            DataType::Int64 => Self::Int64,
            DataType::UInt64 => Self::UInt64,
            _ => return None,
        })
    }
}

/// The partial aggregate replaced (its input, schema, properties and requirements are this node's) and how to
/// compute it.
#[derive(Debug)]
pub(crate) struct KeyAggregateExec {
    aggregate: Arc<dyn ExecutionPlan>,
    key: Arc<dyn PhysicalExpr>,
    aggs: Vec<Agg>,
    max_groups: usize,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for KeyAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let aggs: Vec<String> = self
            .aggs
            .iter()
            .map(|a| match a {
                Agg::CountRows => "count(*)".to_string(),
                Agg::Count(e) => format!("count({e})"),
                Agg::SumF64(e) | Agg::SumI64(e) => format!("sum({e})"),
            })
            .collect();
        write!(
            f,
            "KeyAggregateExec: mode=Partial, gby=[{}], aggr=[{}]",
            self.key,
            aggs.join(", ")
        )
    }
}

impl ExecutionPlan for KeyAggregateExec {
    fn name(&self) -> &str {
        "KeyAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.aggregate.input_distribution_requirements()
    }

    fn required_input_ordering(
        &self,
    ) -> Vec<Option<datafusion::physical_expr::OrderingRequirements>> {
        self.aggregate.required_input_ordering()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.aggregate.children()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.aggregate.apply_expressions(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let aggregate = Arc::clone(&self.aggregate).replace_children(children, options)?;
        Ok(Arc::new(Self {
            aggregate,
            key: Arc::clone(&self.key),
            aggs: self.aggs.clone(),
            max_groups: self.max_groups,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let Some(input) = self.aggregate.children().first().map(|c| Arc::clone(c)) else {
            return internal_err!("KeyAggregateExec without an input");
        };
        let key_type = match KeyType::of(&self.key.data_type(&input.schema())?) {
            Some(t) => t,
            None => return internal_err!("KeyAggregateExec: key {} is not an integer", self.key),
        };
        let options = context.session_config().options();
        let skip_probe_rows = options
            .execution
            .skip_partial_aggregation_probe_rows_threshold;
        let skip_ratio = options
            .execution
            .skip_partial_aggregation_probe_ratio_threshold;
        let reservation = MemoryConsumer::new(format!("KeyAggregateExec[{partition}]"))
            .register(context.memory_pool());
        let stream = KeyAggregateStream {
            input: input.execute(partition, Arc::clone(&context))?,
            schema: self.schema(),
            batch_size: context.session_config().batch_size(),
            state: State::new(key_type, &self.aggs),
            key: Arc::clone(&self.key),
            aggs: self.aggs.clone(),
            ids: Vec::new(),
            max_groups: self.max_groups,
            rows_in: 0,
            skip_probe_rows,
            skip_ratio,
            skipping: false,
            pending: VecDeque::new(),
            done: false,
            reservation,
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        Ok(Box::pin(stream))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// An aggregate's values by group index.
enum Values {
    Count(Vec<i64>),
    /// Sums and whether each group has seen a non-NULL value (a sum of none is NULL).
    SumF64(Vec<f64>, Vec<bool>),
    SumI64(Vec<i64>, Vec<bool>),
}

/// The groups of one partition: keys in a hash table and each aggregate's values by group index.
struct State {
    key_type: KeyType,
    /// Key bits by group index.
    keys: Vec<u64>,
    /// The group of the NULL key, if one arrived.
    null_group: Option<u32>,
    /// Open addressing with linear probing: a group index per slot, `EMPTY` if free; a power of two long.
    slots: Vec<u32>,
    /// 64 minus log2 of `slots.len()`: the hash's top bits pick the slot.
    shift: u32,
    values: Vec<Values>,
}

const EMPTY: u32 = u32::MAX;

impl State {
    fn new(key_type: KeyType, aggs: &[Agg]) -> Self {
        let values = aggs
            .iter()
            .map(|a| match a {
                Agg::CountRows | Agg::Count(_) => Values::Count(Vec::new()),
                Agg::SumF64(_) => Values::SumF64(Vec::new(), Vec::new()),
                Agg::SumI64(_) => Values::SumI64(Vec::new(), Vec::new()),
            })
            .collect();
        let capacity = 1024;
        Self {
            key_type,
            keys: Vec::new(),
            null_group: None,
            slots: vec![EMPTY; capacity],
            shift: 64 - capacity.trailing_zeros(),
            values,
        }
    }

    fn groups(&self) -> usize {
        // The NULL key's group has a placeholder in `keys` too.
        self.keys.len()
    }

    /// Bytes held, for the memory reservation.
    fn size(&self) -> usize {
        let per_group: usize = 8 + self
            .values
            .iter()
            .map(|v| match v {
                Values::Count(_) => 8,
                Values::SumF64(..) | Values::SumI64(..) => 9,
            })
            .sum::<usize>();
        self.slots.capacity() * 4 + self.keys.capacity() * per_group
    }

    #[inline]
    fn slot_of(&self, key: u64) -> usize {
        // Fibonacci hashing after folding the high half in, so keys differing only in high bits spread too.
        ((key ^ (key >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// The group index of each key of `keys` into `ids`, new groups added.
    fn intern(&mut self, keys: &dyn Array, ids: &mut Vec<u32>) {
        ids.clear();
        ids.reserve(keys.len());
        match self.key_type {
            KeyType::Int32 => self.intern_typed::<Int32Type>(keys, ids, |v| v as u32 as u64),
            KeyType::Date32 => self.intern_typed::<Date32Type>(keys, ids, |v| v as u32 as u64),
            KeyType::UInt32 => self.intern_typed::<UInt32Type>(keys, ids, u64::from),
            KeyType::Int64 => self.intern_typed::<Int64Type>(keys, ids, |v| v as u64),
            KeyType::UInt64 => self.intern_typed::<UInt64Type>(keys, ids, |v| v),
        }
    }

    fn intern_typed<T: ArrowPrimitiveType>(
        &mut self,
        keys: &dyn Array,
        ids: &mut Vec<u32>,
        bits: impl Fn(T::Native) -> u64,
    ) {
        let keys = keys.as_primitive::<T>();
        match keys.nulls().filter(|n| n.null_count() > 0) {
            None => {
                for &k in keys.values().iter() {
                    let g = self.group_of(bits(k));
                    ids.push(g);
                }
            }
            Some(nulls) => {
                for (i, &k) in keys.values().iter().enumerate() {
                    let g = if nulls.is_valid(i) {
                        self.group_of(bits(k))
                    } else {
                        self.null_group()
                    };
                    ids.push(g);
                }
            }
        }
    }

    fn null_group(&mut self) -> u32 {
        if let Some(g) = self.null_group {
            return g;
        }
        let g = self.new_group();
        self.null_group = Some(g);
        // Keep `keys` aligned with group indexes; the slot table never points at this one.
        self.keys.push(0);
        g
    }

    #[inline]
    fn group_of(&mut self, key: u64) -> u32 {
        let mask = self.slots.len() - 1;
        let mut slot = self.slot_of(key);
        loop {
            let g = self.slots[slot];
            if g == EMPTY {
                break;
            }
            if self.keys[g as usize] == key {
                return g;
            }
            slot = (slot + 1) & mask;
        }
        let g = self.new_group();
        self.keys.push(key);
        self.slots[slot] = g;
        if self.keys.len() * 2 > self.slots.len() {
            self.grow();
        }
        g
    }

    /// A new group's index, its values started (`keys` is pushed by the caller).
    fn new_group(&mut self) -> u32 {
        for v in &mut self.values {
            match v {
                Values::Count(c) => c.push(0),
                Values::SumF64(s, seen) => {
                    s.push(0.0);
                    seen.push(false);
                }
                Values::SumI64(s, seen) => {
                    s.push(0);
                    seen.push(false);
                }
            }
        }
        self.keys.len() as u32
    }

    fn grow(&mut self) {
        let capacity = self.slots.len() * 2;
        self.slots = vec![EMPTY; capacity];
        self.shift = 64 - capacity.trailing_zeros();
        let mask = capacity - 1;
        for (g, &key) in self.keys.iter().enumerate() {
            if self.null_group == Some(g as u32) {
                continue;
            }
            let mut slot = self.slot_of(key);
            while self.slots[slot] != EMPTY {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = g as u32;
        }
    }

    /// Add one batch's aggregate arguments by the group indexes `ids`.
    fn update(&mut self, args: &[Option<ArrayRef>], ids: &[u32]) {
        for (values, arg) in self.values.iter_mut().zip(args) {
            match (values, arg) {
                (Values::Count(counts), None) => {
                    for &g in ids {
                        counts[g as usize] += 1;
                    }
                }
                (Values::Count(counts), Some(a)) => match a.logical_nulls() {
                    None => {
                        for &g in ids {
                            counts[g as usize] += 1;
                        }
                    }
                    Some(nulls) => {
                        for (i, &g) in ids.iter().enumerate() {
                            counts[g as usize] += i64::from(nulls.is_valid(i));
                        }
                    }
                },
                (Values::SumF64(sums, seen), Some(a)) => {
                    sum_into(a.as_primitive::<Float64Type>(), ids, sums, seen, |s, v| *s += v)
                }
                (Values::SumI64(sums, seen), Some(a)) => sum_into(
                    a.as_primitive::<Int64Type>(),
                    ids,
                    sums,
                    seen,
                    |s, v| *s = s.wrapping_add(v),
                ),
                (Values::SumF64(..) | Values::SumI64(..), None) => {
                    unreachable!("a sum always has its argument")
                }
            }
        }
    }

    /// The groups as output batches of at most `batch_size` rows; the state is left empty.
    fn emit(&mut self, schema: &SchemaRef, batch_size: usize) -> Result<Vec<RecordBatch>> {
        let groups = self.groups();
        if groups == 0 {
            return Ok(Vec::new());
        }
        let mut fresh = State::new(self.key_type, &[]);
        fresh.values = self
            .values
            .iter()
            .map(|v| match v {
                Values::Count(_) => Values::Count(Vec::new()),
                Values::SumF64(..) => Values::SumF64(Vec::new(), Vec::new()),
                Values::SumI64(..) => Values::SumI64(Vec::new(), Vec::new()),
            })
            .collect();
        let old = std::mem::replace(self, fresh);
        let key_nulls = old.null_group.map(|g| {
            let mut b = BooleanBufferBuilder::new(groups);
            b.append_n(groups, true);
            b.set_bit(g as usize, false);
            NullBuffer::new(b.finish())
        });
        let keys: ArrayRef = match old.key_type {
            KeyType::Int32 => key_array::<Int32Type>(&old.keys, key_nulls, |b| b as u32 as i32),
            KeyType::Date32 => key_array::<Date32Type>(&old.keys, key_nulls, |b| b as u32 as i32),
            KeyType::UInt32 => key_array::<UInt32Type>(&old.keys, key_nulls, |b| b as u32),
            KeyType::Int64 => key_array::<Int64Type>(&old.keys, key_nulls, |b| b as i64),
            KeyType::UInt64 => key_array::<UInt64Type>(&old.keys, key_nulls, |b| b),
        };
        let mut columns = vec![keys];
        for v in old.values {
            columns.push(match v {
                Values::Count(c) => Arc::new(Int64Array::from(c)) as ArrayRef,
                Values::SumF64(s, seen) => {
                    Arc::new(Float64Array::new(s.into(), Some(NullBuffer::from(seen))))
                }
                Values::SumI64(s, seen) => {
                    Arc::new(Int64Array::new(s.into(), Some(NullBuffer::from(seen))))
                }
            });
        }
        let all = RecordBatch::try_new(Arc::clone(schema), columns)?;
        Ok((0..groups)
            .step_by(batch_size.max(1))
            .map(|start| all.slice(start, batch_size.min(groups - start)))
            .collect())
    }
}

fn key_array<T: ArrowPrimitiveType>(
    bits: &[u64],
    nulls: Option<NullBuffer>,
    native: impl Fn(u64) -> T::Native,
) -> ArrayRef {
    let values: Vec<T::Native> = bits.iter().map(|&b| native(b)).collect();
    Arc::new(PrimitiveArray::<T>::new(values.into(), nulls))
}

fn sum_into<T: ArrowPrimitiveType>(
    values: &PrimitiveArray<T>,
    ids: &[u32],
    sums: &mut [T::Native],
    seen: &mut [bool],
    add: impl Fn(&mut T::Native, T::Native),
) {
    match values.nulls().filter(|n| n.null_count() > 0) {
        None => {
            for (&g, &v) in ids.iter().zip(values.values().iter()) {
                add(&mut sums[g as usize], v);
                seen[g as usize] = true;
            }
        }
        Some(nulls) => {
            for (i, (&g, &v)) in ids.iter().zip(values.values().iter()).enumerate() {
                if nulls.is_valid(i) {
                    add(&mut sums[g as usize], v);
                    seen[g as usize] = true;
                }
            }
        }
    }
}

/// One partition of the node's output.
struct KeyAggregateStream {
    input: SendableRecordBatchStream,
    schema: SchemaRef,
    batch_size: usize,
    state: State,
    key: Arc<dyn PhysicalExpr>,
    aggs: Vec<Agg>,
    /// Group indexes of the current batch (kept to reuse its allocation).
    ids: Vec<u32>,
    max_groups: usize,
    rows_in: usize,
    skip_probe_rows: usize,
    skip_ratio: f64,
    /// Almost one group per row: each row is passed on as its own state.
    skipping: bool,
    pending: VecDeque<RecordBatch>,
    done: bool,
    reservation: MemoryReservation,
    metrics: BaselineMetrics,
}

impl KeyAggregateStream {
    /// Take one input batch in; output that is ready goes to `pending`.
    fn consume(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let keys = self.key.evaluate(batch)?.into_array(rows)?;
        let args = self
            .aggs
            .iter()
            .map(|a| match a {
                Agg::CountRows => Ok(None),
                Agg::Count(e) | Agg::SumF64(e) | Agg::SumI64(e) => {
                    Ok(Some(e.evaluate(batch)?.into_array(rows)?))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        if self.skipping {
            let out = self.as_states(keys, args)?;
            self.pending.push_back(out);
            return Ok(());
        }
        self.state.intern(keys.as_ref(), &mut self.ids);
        self.state.update(&args, &self.ids);
        self.rows_in += rows;
        let groups = self.state.groups();
        if self.rows_in >= self.skip_probe_rows
            && self.rows_in < self.skip_probe_rows + rows
            && groups as f64 / self.rows_in as f64 >= self.skip_ratio
        {
            self.skipping = true;
            self.flush()?;
            return Ok(());
        }
        if groups >= self.max_groups || self.reservation.try_resize(self.state.size()).is_err() {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let out = self.state.emit(&self.schema, self.batch_size)?;
        self.pending.extend(out);
        self.reservation.free();
        Ok(())
    }

    /// Each row as its own partial state: the key, each sum's value, each count 1 or 0.
    fn as_states(&self, keys: ArrayRef, args: Vec<Option<ArrayRef>>) -> Result<RecordBatch> {
        let rows = keys.len();
        let mut columns = vec![keys];
        for (a, arg) in self.aggs.iter().zip(args) {
            columns.push(match (a, arg) {
                (Agg::CountRows, _) => Arc::new(Int64Array::from(vec![1i64; rows])) as ArrayRef,
                (Agg::Count(_), Some(arg)) => {
                    let nulls = arg.logical_nulls();
                    Arc::new(Int64Array::from_iter_values(
                        (0..rows).map(|i| i64::from(nulls.as_ref().is_none_or(|n| n.is_valid(i)))),
                    ))
                }
                (Agg::SumF64(_) | Agg::SumI64(_), Some(arg)) => arg,
                (_, None) => return internal_err!("KeyAggregateExec: an aggregate lost its argument"),
            });
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl Stream for KeyAggregateStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                self.metrics.record_output(batch.num_rows());
                return Poll::Ready(Some(Ok(batch)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.input.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(batch))) => {
                    let elapsed = self.metrics.elapsed_compute().clone();
                    let _timer = elapsed.timer();
                    if let Err(e) = self.consume(&batch) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(None) => {
                    let elapsed = self.metrics.elapsed_compute().clone();
                    let _timer = elapsed.timer();
                    self.done = true;
                    if let Err(e) = self.flush() {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }
}

impl RecordBatchStream for KeyAggregateStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Date32Array, Int32Array, UInt64Array};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// A session with small batches (so groups span batches), with the rule (holding `max_groups`) or without.
    fn session(max_groups: Option<usize>, probe_rows: usize) -> SessionContext {
        let mut config = SessionConfig::new()
            .with_batch_size(64)
            .with_target_partitions(2);
        config
            .options_mut()
            .execution
            .skip_partial_aggregation_probe_rows_threshold = probe_rows;
        let mut builder = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config);
        if let Some(max_groups) = max_groups {
            builder = builder.with_physical_optimizer_rule(Arc::new(OneKeyAggregate { max_groups }));
        }
        let ctx = SessionContext::new_with_state(builder.build());
        // Keys with NULLs, negative values and 64-bit values far apart; amounts with NULLs, and a group whose
        // amounts are all NULL (k = 7).
        let n = 5_000i64;
        let k: Vec<Option<i32>> = (0..n)
            .map(|i| match i % 101 {
                0 => None,
                _ => Some((i % 13) as i32 - 6),
            })
            .collect();
        let wide: Vec<u64> = (0..n).map(|i| ((i % 17) as u64) << 40 | (i % 3) as u64).collect();
        let day: Vec<i32> = (0..n).map(|i| 19_000 + (i % 31) as i32).collect();
        let id: Vec<i64> = (0..n).collect();
        let amount: Vec<Option<f64>> = (0..n)
            .map(|i| {
                if i % 7 == 0 || (i % 101 != 0 && (i % 13) as i32 - 6 == 7 - 6) {
                    None
                } else {
                    Some((i % 1000) as f64 / 8.0)
                }
            })
            .collect();
        let cents: Vec<Option<i64>> = (0..n)
            .map(|i| if i % 11 == 0 { None } else { Some(i * 37 - 90_000) })
            .collect();
        let batch = RecordBatch::try_from_iter([
            ("k", Arc::new(Int32Array::from(k)) as ArrayRef),
            ("wide", Arc::new(UInt64Array::from(wide)) as ArrayRef),
            ("day", Arc::new(Date32Array::from(day)) as ArrayRef),
            ("id", Arc::new(Int64Array::from(id)) as ArrayRef),
            ("amount", Arc::new(Float64Array::from(amount)) as ArrayRef),
            ("cents", Arc::new(Int64Array::from(cents)) as ArrayRef),
        ])
        .unwrap();
        ctx.register_batch("t", batch).unwrap();
        ctx
    }

    async fn run(max_groups: Option<usize>, probe_rows: usize, sql: &str) -> (String, String) {
        let ctx = session(max_groups, probe_rows);
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        (shown, pretty_format_batches(&batches).unwrap().to_string())
    }

    const QUERIES: [&str; 5] = [
        "SELECT k, sum(amount) AS s, count(*) AS n, count(amount) AS na, sum(cents) AS c FROM t GROUP BY k ORDER BY k",
        "SELECT wide, sum(amount) AS s, count(1) AS n FROM t GROUP BY wide ORDER BY wide",
        "SELECT day, count(*) AS n, sum(cents) AS c FROM t GROUP BY day ORDER BY day",
        // One group per row.
        "SELECT id, sum(amount) AS s, count(amount) AS n FROM t GROUP BY id ORDER BY id",
        // An expression as the key and as the argument.
        "SELECT k + 1 AS k1, sum(amount * 2) AS s FROM t GROUP BY k + 1 ORDER BY k1",
    ];

    #[tokio::test]
    async fn results_equal_datafusions_aggregate() {
        for sql in QUERIES {
            let (_, reference) = run(None, 100_000, sql).await;
            // As planned, with a group limit that forces repeated emits, and with the one-row-per-group probe firing.
            for (max_groups, probe_rows) in [(MAX_GROUPS, 100_000), (3, 100_000), (MAX_GROUPS, 100)] {
                let (plan, fast) = run(Some(max_groups), probe_rows, sql).await;
                assert!(plan.contains("KeyAggregateExec"), "{sql}\n{plan}");
                assert_eq!(fast, reference, "{sql} with max_groups {max_groups}, probe {probe_rows}");
            }
        }
    }

    #[tokio::test]
    async fn other_aggregates_keep_datafusions_operator() {
        for sql in [
            "SELECT k, min(amount) FROM t GROUP BY k",
            "SELECT k, avg(amount) FROM t GROUP BY k",
            "SELECT CAST(k AS VARCHAR) AS s, sum(amount) FROM t GROUP BY s",
            "SELECT k, sum(CAST(amount AS DECIMAL(10, 2))) FROM t GROUP BY k",
            "SELECT k, day, sum(amount) FROM t GROUP BY k, day",
            "SELECT k, sum(amount) FILTER (WHERE id > 3) FROM t GROUP BY k",
            "SELECT sum(amount) FROM t",
        ] {
            let (plan, _) = run(Some(MAX_GROUPS), 100_000, sql).await;
            assert!(!plan.contains("KeyAggregateExec"), "{sql}\n{plan}");
        }
    }
}
