//! The partial stage of a `GROUP BY` on one 64-bit key, with a flat hash table of the keys.
//!
//! [`crate::packed_keys`] turns the course's group-bys (`date_trunc('month', pickup), PULocationID`) into one
//! `UInt64` key. DataFusion's partial `AggregateExec` finds each row's group in a general hash table (a SwissTable
//! of group indices, the hash seeded per process, each value read as an `Option`): a quarter of the CPU of the
//! monthly zone revenue over 30M trips. [`KeyAggregateExec`] finds it in an open-addressing table of `(key, group)`
//! pairs probed from a Fibonacci hash, one multiply and usually one load per row, and feeds the group indices to
//! the same `GroupsAccumulator`s DataFusion uses, so the partial states it emits are exactly what the final stage
//! expects.
//!
//! A partial aggregate may emit a key more than once (the final stage merges them), so when the groups outgrow the
//! memory the pool grants, the states so far are emitted and the table starts again: memory stays bounded on keys
//! of any cardinality.
//!
//! [`KeyAggregates`] puts it in place of an `AggregateExec` in `Partial` mode grouped by one `UInt64` column, with
//! no grouping sets, limit, dynamic filter, `FILTER`, `DISTINCT` or ordered aggregate, whose aggregates all have
//! group accumulators. Everything the planner knows about the node stays the replaced node's own.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt64Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, SchemaRef, UInt64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, Statistics, internal_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{
    CardinalityEffect, ChildrenPropertiesMode, ReplaceChildrenOptions,
};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, PlanProperties,
};
use futures::StreamExt;

/// The physical optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct KeyAggregates;

impl PhysicalOptimizerRule for KeyAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match KeyAggregateExec::try_new(&node)? {
            Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tripline_key_aggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A partial aggregate on one `UInt64` key: the `AggregateExec` it replaces plus its key and aggregates.
#[derive(Debug)]
pub(crate) struct KeyAggregateExec {
    /// The replaced `AggregateExec`: its input, schema, properties and requirements are this node's.
    aggregate: Arc<dyn ExecutionPlan>,
    key: Arc<dyn PhysicalExpr>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    metrics: ExecutionPlanMetricsSet,
}

impl KeyAggregateExec {
    /// `node` as a key aggregate, when it is an `AggregateExec` this node can run (module documentation).
    fn try_new(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Self>> {
        let Some(agg) = node.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
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
            return Ok(None);
        }
        let key = Arc::clone(&group_by.expr()[0].0);
        if key.data_type(&agg.input_schema())? != DataType::UInt64 {
            return Ok(None);
        }
        Ok(Some(Self {
            aggregate: Arc::clone(node),
            key,
            aggregates: agg.aggr_expr().to_vec(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

impl DisplayAs for KeyAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let aggregates: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        write!(
            f,
            "KeyAggregateExec: mode=Partial, key={}, aggr=[{}]",
            self.key,
            aggregates.join(", ")
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
            aggregates: self.aggregates.clone(),
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
        let input = input.execute(partition, Arc::clone(&context))?;
        let schema = self.schema();
        let reservation = MemoryConsumer::new(format!("KeyAggregateExec[{partition}]"))
            .register(context.memory_pool());
        let groups = Grouping::new(
            Arc::clone(&self.key),
            self.aggregates.clone(),
            Arc::clone(&schema),
            reservation,
        )?;
        let metrics = BaselineMetrics::new(&self.metrics, partition);
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

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.aggregate.child_stats_requests(partition)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.aggregate.statistics_from_inputs(input_stats, args)
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        self.aggregate.cardinality_effect()
    }
}

/// The groups of one partition: the key table and the accumulators fed by it.
struct Grouping {
    key: Arc<dyn PhysicalExpr>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    table: KeyTable,
    /// Each row's group, reused batch to batch.
    indices: Vec<usize>,
    schema: SchemaRef,
    reservation: MemoryReservation,
}

impl Grouping {
    fn new(
        key: Arc<dyn PhysicalExpr>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        schema: SchemaRef,
        reservation: MemoryReservation,
    ) -> Result<Self> {
        let accumulators = accumulators(&aggregates)?;
        Ok(Self {
            key,
            aggregates,
            accumulators,
            table: KeyTable::default(),
            indices: Vec::new(),
            schema,
            reservation,
        })
    }

    /// Adds a batch; returns the states so far when the groups outgrew their memory (and starts again).
    fn update(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(None);
        }
        let keys = self.key.evaluate(batch)?.into_array(rows)?;
        self.table
            .intern(keys.as_primitive::<UInt64Type>(), &mut self.indices);
        let groups = self.table.len();
        for (aggregate, accumulator) in self.aggregates.iter().zip(&mut self.accumulators) {
            let values = aggregate
                .expressions()
                .iter()
                .map(|e| e.evaluate(batch)?.into_array(rows))
                .collect::<Result<Vec<_>>>()?;
            accumulator.update_batch(&values, &self.indices, None, groups)?;
        }
        let size = self.table.size()
            + self.indices.capacity() * size_of::<usize>()
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>();
        if groups < MAX_GROUPS && self.reservation.try_resize(size).is_ok() {
            return Ok(None);
        }
        self.emit()
    }

    /// The partial states of the groups so far, as one batch (`None` when there are none); starts again.
    fn emit(&mut self) -> Result<Option<RecordBatch>> {
        if self.table.len() == 0 {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.table.take_keys())];
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

/// An empty slot's group.
const EMPTY: u32 = u32::MAX;

/// Groups after which the states are emitted whatever the memory pool grants (group numbers stay far below
/// [`EMPTY`]).
const MAX_GROUPS: usize = 1 << 24;

/// Group indices of 64-bit keys: open addressing with linear probing over a power-of-two number of `(key,
/// group)` slots, at most half full, the slot from the top bits of the key times 2^64/φ.
#[derive(Debug, Default)]
struct KeyTable {
    slots: Vec<(u64, u32)>,
    /// `64 - log2(slots.len())`.
    shift: u32,
    /// The key of each group, in group order.
    keys: Vec<u64>,
    /// The group of the NULL key, if it has occurred.
    null_group: Option<usize>,
}

impl KeyTable {
    fn len(&self) -> usize {
        self.keys.len()
    }

    fn size(&self) -> usize {
        self.slots.capacity() * size_of::<(u64, u32)>() + self.keys.capacity() * size_of::<u64>()
    }

    /// The group of each of `keys`, new groups numbered in order of appearance.
    fn intern(&mut self, keys: &UInt64Array, groups: &mut Vec<usize>) {
        groups.clear();
        groups.reserve(keys.len());
        if keys.null_count() == 0 {
            for &key in keys.values() {
                groups.push(self.group_of(key));
            }
            return;
        }
        for key in keys.iter() {
            let group = match key {
                Some(key) => self.group_of(key),
                None => *self.null_group.get_or_insert_with(|| {
                    self.keys.push(0);
                    self.keys.len() - 1
                }),
            };
            groups.push(group);
        }
    }

    #[inline]
    fn group_of(&mut self, key: u64) -> usize {
        if 2 * (self.keys.len() + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut slot = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize;
        loop {
            let (k, group) = self.slots[slot];
            if group == EMPTY {
                let group = self.keys.len();
                self.slots[slot] = (key, group as u32);
                self.keys.push(key);
                return group;
            }
            if k == key {
                return group as usize;
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Twice the slots (at least 1,024), every key placed again.
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(1 << 10);
        self.shift = 64 - len.trailing_zeros();
        self.slots = vec![(0, EMPTY); len];
        let mask = len - 1;
        for (group, &key) in self.keys.iter().enumerate() {
            if Some(group) == self.null_group {
                continue;
            }
            let mut slot = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize;
            while self.slots[slot].1 != EMPTY {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = (key, group as u32);
        }
    }

    /// The keys in group order as an array (NULL at the NULL key's group); the table is left empty.
    fn take_keys(&mut self) -> UInt64Array {
        let keys = std::mem::take(&mut self.keys);
        let nulls = self.null_group.take().map(|null| {
            NullBuffer::from((0..keys.len()).map(|g| g != null).collect::<Vec<bool>>())
        });
        self.slots = Vec::new();
        self.shift = 0;
        UInt64Array::new(keys.into(), nulls)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// Row `i`'s key: 5,000 distinct values, some equal in their low or high bits (so slots collide), every 101st
    /// NULL.
    fn key(i: u64) -> Option<u64> {
        match i % 101 {
            0 => None,
            _ => Some(match i % 5_000 {
                g if g % 3 == 0 => g << 40,
                g if g % 3 == 1 => g,
                g => u64::MAX - g,
            }),
        }
    }

    /// Two partitions of batches of 7 rows (so groups span batches), with or without the rule.
    fn session(fast: bool, memory: Option<usize>) -> SessionContext {
        let config = SessionConfig::new()
            .with_batch_size(7)
            .with_target_partitions(2);
        let mut builder = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config);
        if let Some(limit) = memory {
            let runtime = RuntimeEnvBuilder::new()
                .with_memory_limit(limit, 1.0)
                .build_arc()
                .unwrap();
            builder = builder.with_runtime_env(runtime);
        }
        if fast {
            builder = builder.with_physical_optimizer_rule(Arc::new(KeyAggregates));
        }
        let ctx = SessionContext::new_with_state(builder.build());
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::UInt64, true),
            Field::new("v", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let part = |from: u64, to: u64| {
            let rows: Vec<u64> = (from..to).collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(UInt64Array::from_iter(rows.iter().map(|&i| key(i)))),
                    Arc::new(Float64Array::from_iter(
                        rows.iter().map(|&i| (i % 7 != 0).then_some(i as f64 / 4.0)),
                    )),
                    Arc::new(StringArray::from_iter(
                        rows.iter()
                            .map(|&i| (i % 11 != 0).then(|| format!("s{}", i % 37))),
                    )),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|&i| i as i64))),
                ],
            )
            .unwrap();
            (0..batch.num_rows())
                .step_by(700)
                .map(|at| batch.slice(at, 700.min(batch.num_rows() - at)))
                .collect::<Vec<_>>()
        };
        let table =
            MemTable::try_new(schema.clone(), vec![part(0, 12_000), part(12_000, 20_000)]).unwrap();
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

    async fn run(fast: bool, sql: &str) -> (String, String) {
        let ctx = session(fast, None);
        let plan = plan(&ctx, sql).await;
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        let batches = collect(plan, ctx.task_ctx()).await.unwrap();
        (shown, pretty_format_batches(&batches).unwrap().to_string())
    }

    #[tokio::test]
    async fn results_equal_the_aggregate_operator() {
        for sql in [
            "SELECT k, sum(v), count(*), count(v), avg(v), min(s), max(v), sum(n) FROM t GROUP BY k ORDER BY k",
            // A key computed from columns, a HAVING on the merged states.
            "SELECT m, count(*) AS c, max(s) FROM (SELECT CAST(n % 13 AS BIGINT UNSIGNED) AS m, s FROM t) \
             GROUP BY m HAVING count(*) > 1 ORDER BY m",
            // DISTINCT, planned as a group-by on (k, n) under one on k: the outer one is replaced.
            "SELECT k, count(DISTINCT n) FROM t GROUP BY k ORDER BY k",
            // Only NULL keys.
            "SELECT k, count(*) FROM t WHERE k IS NULL GROUP BY k",
            // No rows at all.
            "SELECT k, sum(v) FROM t WHERE n < 0 GROUP BY k",
        ] {
            let (plan, fast) = run(true, sql).await;
            assert!(plan.contains("KeyAggregateExec"), "{sql}\n{plan}");
            let (reference_plan, reference) = run(false, sql).await;
            assert!(!reference_plan.contains("KeyAggregateExec"));
            assert_eq!(fast, reference, "{sql}");
        }
    }

    #[tokio::test]
    async fn other_aggregates_are_left_alone() {
        for sql in [
            // Not one UInt64 key.
            "SELECT n % 5 AS m, count(*) FROM t GROUP BY m ORDER BY m",
            "SELECT k, n % 2 AS m, count(*) FROM t GROUP BY k, m ORDER BY k, m",
            // An ordered aggregate and FILTER.
            "SELECT k, first_value(n ORDER BY n DESC) FROM t GROUP BY k ORDER BY k",
            "SELECT k, count(*) FILTER (WHERE n > 3) FROM t GROUP BY k ORDER BY k",
        ] {
            let (plan, fast) = run(true, sql).await;
            assert!(!plan.contains("KeyAggregateExec"), "{sql}\n{plan}");
            let (_, reference) = run(false, sql).await;
            assert_eq!(fast, reference, "{sql}");
        }
    }

    /// With 64 KiB for everything the groups outgrow their memory: the partial states come out in several
    /// batches, a key in more than one, and they still add up to every row.
    #[tokio::test]
    async fn groups_beyond_the_memory_pool_are_emitted_and_restarted() {
        let ctx = session(true, Some(64 << 10));
        let plan = plan(&ctx, "SELECT k, sum(n), count(*) FROM t GROUP BY k").await;
        let mut partial = None;
        plan.apply(|node| {
            if node.downcast_ref::<KeyAggregateExec>().is_some() {
                partial = Some(Arc::clone(node));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        let partial = partial.expect("a KeyAggregateExec in the plan");
        let mut sums: HashMap<Option<u64>, (i64, i64)> = HashMap::new();
        let mut rows = 0;
        for p in 0..partial.properties().partitioning.partition_count() {
            let stream = partial.execute(p, ctx.task_ctx()).unwrap();
            let batches: Vec<RecordBatch> =
                futures::TryStreamExt::try_collect(stream).await.unwrap();
            assert!(
                batches.len() > 1,
                "partition {p}: {} batch(es)",
                batches.len()
            );
            for batch in batches {
                rows += batch.num_rows();
                let keys = batch.column(0).as_primitive::<UInt64Type>();
                let sum = batch
                    .column(1)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let count = batch
                    .column(2)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                for r in 0..batch.num_rows() {
                    let entry = sums
                        .entry(keys.is_valid(r).then(|| keys.value(r)))
                        .or_default();
                    entry.0 += sum.value(r);
                    entry.1 += count.value(r);
                }
            }
        }
        let mut expected: HashMap<Option<u64>, (i64, i64)> = HashMap::new();
        for i in 0..20_000u64 {
            let entry = expected.entry(key(i)).or_default();
            entry.0 += i as i64;
            entry.1 += 1;
        }
        assert!(rows > expected.len(), "some key emitted twice: {rows} rows");
        assert_eq!(sums, expected);
    }

    #[test]
    fn the_table_numbers_keys_in_order_of_appearance() {
        let mut table = KeyTable::default();
        let mut groups = Vec::new();
        let mut reference: HashMap<Option<u64>, usize> = HashMap::new();
        for round in 0..3u64 {
            let keys = UInt64Array::from_iter((0..30_000).map(|i| key(i * 7 + round)));
            table.intern(&keys, &mut groups);
            for (key, group) in keys.iter().zip(&groups) {
                let next = reference.len();
                assert_eq!(*reference.entry(key).or_insert(next), *group, "{key:?}");
            }
        }
        assert_eq!(table.len(), reference.len());
        let keys = table.take_keys();
        for (key, group) in &reference {
            assert_eq!(keys.is_valid(*group).then(|| keys.value(*group)), *key);
        }
        assert_eq!(table.len(), 0);
    }
}
