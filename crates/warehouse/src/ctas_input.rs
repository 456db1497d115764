//! The memory a `CREATE TABLE ... AS SELECT` sorts its rows in.
//!
//! A partitioned or clustered table is written sorted (partition, then cluster columns) so its files hold runs of
//! the cluster keys; the sort must not hold the table in memory. DataFusion sorts each target partition on its own
//! and merges the sorted partitions; each partition's sort buffers rows until its memory runs out, spills a sorted
//! run to disk, and at the end merges its runs, which needs memory of its own for the merge cursors.
//!
//! Sharing one pool between the partitions fails: a partition that finishes its input releases its merge reserve
//! and asks the pool again for the merge, and by then another partition still buffering has taken the memory (a
//! fair pool only moves the race to the first batches). So [`bounded`] gives each partition's sort a pool of its
//! own, an equal slice of the budget, with a merge reserve in proportion to that slice (DataFusion's fixed 10 MB is
//! too little for the cursors of a gigabyte of buffered rows, and too much for a small slice): within its slice a
//! sort runs alone, as a single-partition sort does, and always has room to merge what it buffered.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// Memory the sort of a CTAS may hold before spilling to disk, unless the caller sets it.
pub(crate) const SORT_MEMORY: usize = 2 << 30;

/// The merge reserve is this fraction of a partition's slice. The merge's cursors hold the sort keys of every run
/// it merges in Arrow's row format: a few percent of the buffered rows for the usual date and integer keys, more
/// for long string keys.
const MERGE_RESERVE_DIVISOR: usize = 8;

/// `plan` with each of its sorts running in a memory pool of its own per partition, the partitions' pools together
/// `budget` bytes. Spill files go to the session's spill directory.
pub(crate) fn bounded(
    plan: Arc<dyn ExecutionPlan>,
    budget: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if !node.is::<SortExec>() {
            return Ok(Transformed::no(node));
        }
        let partitions = node.properties().partitioning.partition_count().max(1);
        let slice = budget / partitions;
        Ok(Transformed::yes(
            Arc::new(PartitionPools { input: node, slice }) as Arc<dyn ExecutionPlan>,
        ))
    })
    .map(|t| t.data)
}

/// Runs its input's partition `i` with a task context whose memory pool is a fresh `slice` bytes.
#[derive(Debug)]
struct PartitionPools {
    input: Arc<dyn ExecutionPlan>,
    slice: usize,
}

impl DisplayAs for PartitionPools {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PartitionPools: memory_per_partition={}", self.slice)
    }
}

impl ExecutionPlan for PartitionPools {
    fn name(&self) -> &str {
        "PartitionPools"
    }

    fn downcast_delegate(&self) -> Option<&dyn ExecutionPlan> {
        Some(self.input.as_ref())
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(Self {
                input,
                slice: self.slice,
            })),
            _ => datafusion::common::internal_err!("PartitionPools takes one input"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let runtime = RuntimeEnvBuilder::from_runtime_env(&context.runtime_env())
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(self.slice)))
            .build_arc()?;
        let mut config = context.session_config().clone();
        config.options_mut().execution.sort_spill_reservation_bytes =
            self.slice / MERGE_RESERVE_DIVISOR;
        let context = TaskContext::new(
            context.task_id(),
            context.session_id(),
            config,
            context.scalar_functions().clone(),
            context.higher_order_functions().clone(),
            context.aggregate_functions().clone(),
            context.window_functions().clone(),
            runtime,
        );
        self.input.execute(partition, Arc::new(context))
    }
}
