//! A physical node that runs in place of one of DataFusion's, faster on the plans it was chosen for, while
//! everything the planner knows about the node (schema, ordering, partitioning, required input ordering and
//! distribution, statistics) stays the replaced node's own. Only the rows are computed differently: by the
//! [`Replacement`].

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::{
    CardinalityEffect, ChildrenPropertiesMode, ReplaceChildrenOptions,
};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, PlanProperties,
};

/// How a [`ReplacedExec`] computes its rows.
pub(crate) trait Replacement: fmt::Debug + Clone + Send + Sync + 'static {
    /// The node's name in plans.
    const NAME: &'static str;

    /// What follows the name in a plan's line.
    fn describe(&self, f: &mut fmt::Formatter) -> fmt::Result;

    /// Whether the rows come out in the input's order.
    fn maintains_input_order(&self) -> bool;

    /// The output of one partition from its `input`, in batches of `schema`.
    fn execute(
        &self,
        input: SendableRecordBatchStream,
        schema: SchemaRef,
        partition: usize,
        context: &Arc<TaskContext>,
        metrics: BaselineMetrics,
    ) -> Result<SendableRecordBatchStream>;
}

/// `replaced`'s place in the plan, its rows computed by `by` (module documentation).
#[derive(Debug)]
pub(crate) struct ReplacedExec<R> {
    replaced: Arc<dyn ExecutionPlan>,
    by: R,
    metrics: ExecutionPlanMetricsSet,
}

impl<R: Replacement> ReplacedExec<R> {
    pub(crate) fn new(replaced: Arc<dyn ExecutionPlan>, by: R) -> Self {
        Self {
            replaced,
            by,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl<R: Replacement> DisplayAs for ReplacedExec<R> {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: ", R::NAME)?;
        self.by.describe(f)
    }
}

impl<R: Replacement> ExecutionPlan for ReplacedExec<R> {
    fn name(&self) -> &str {
        R::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.replaced.properties()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.replaced.input_distribution_requirements()
    }

    fn required_input_ordering(
        &self,
    ) -> Vec<Option<datafusion::physical_expr::OrderingRequirements>> {
        self.replaced.required_input_ordering()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![self.by.maintains_input_order()]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.replaced.children()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.replaced.apply_expressions(f)
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
        let replaced = Arc::clone(&self.replaced).replace_children(children, options)?;
        Ok(Arc::new(Self::new(replaced, self.by.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let Some(input) = self.replaced.children().first().map(|c| Arc::clone(c)) else {
            return internal_err!("{} without an input", R::NAME);
        };
        let input = input.execute(partition, Arc::clone(&context))?;
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        self.by
            .execute(input, self.schema(), partition, &context, metrics)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.replaced.child_stats_requests(partition)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.replaced.statistics_from_inputs(input_stats, args)
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        self.replaced.cardinality_effect()
    }
}
