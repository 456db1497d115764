//! A kept view result as a table: its batches in memory, with the column statistics a planner needs.
//!
//! DataFusion's in-memory table knows its row count and null counts but no column ranges. Without a range, a join's
//! size estimate takes every key as distinct: the course's `fact_trips` (700k trips joined to 263 zones, twice) was
//! estimated at 263 rows, so the planner built its hash table from the 700k-row side and probed it with the zones,
//! from one partition. With each primitive column's min and max, the estimate for keys in 1..265 is the trips'
//! count, and the zones are the side that is collected.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ColumnStatistics, Statistics};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::{Accumulator, Expr, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// Batches kept in memory, with each primitive column's min and max.
#[derive(Debug)]
pub(crate) struct KeptTable {
    batches: Arc<MemTable>,
    /// Per column of the table's schema: min and max (unknown for non-primitive columns).
    ranges: Vec<ColumnStatistics>,
}

impl KeptTable {
    /// `partitions` under `schema` (the batches must have it).
    pub(crate) fn try_new(schema: SchemaRef, partitions: Vec<Vec<RecordBatch>>) -> Result<Self> {
        let ranges = column_ranges(&schema, &partitions);
        Ok(Self {
            batches: Arc::new(MemTable::try_new(schema, partitions)?),
            ranges,
        })
    }
}

/// Min and max of each primitive column over all batches; unknown for other types or when a kernel fails.
fn column_ranges(schema: &SchemaRef, partitions: &[Vec<RecordBatch>]) -> Vec<ColumnStatistics> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let mut stats = ColumnStatistics::new_unknown();
            if !field.data_type().is_primitive() {
                return stats;
            }
            let range = || -> Result<_> {
                let mut min = MinAccumulator::try_new(field.data_type())?;
                let mut max = MaxAccumulator::try_new(field.data_type())?;
                for batch in partitions.iter().flatten() {
                    let column = Arc::clone(batch.column(i));
                    min.update_batch(std::slice::from_ref(&column))?;
                    max.update_batch(&[column])?;
                }
                Ok((min.evaluate()?, max.evaluate()?))
            };
            if let Ok((min, max)) = range()
                && !min.is_null()
                && !max.is_null()
            {
                stats.min_value = Precision::Exact(min);
                stats.max_value = Precision::Exact(max);
            }
            stats
        })
        .collect()
}

#[async_trait]
impl TableProvider for KeptTable {
    fn schema(&self) -> SchemaRef {
        self.batches.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan = self.batches.scan(state, projection, filters, limit).await?;
        if limit.is_some() {
            // The ranges are of all rows; a limited scan keeps the memory table's own statistics.
            return Ok(scan);
        }
        let ranges = match projection {
            Some(columns) => columns.iter().map(|&i| self.ranges[i].clone()).collect(),
            None => self.ranges.clone(),
        };
        Ok(Arc::new(WithRanges {
            input: scan,
            ranges,
        }))
    }
}

/// A scan of kept batches whose statistics (for the whole scan) include the columns' ranges.
#[derive(Debug)]
struct WithRanges {
    input: Arc<dyn ExecutionPlan>,
    /// Per output column.
    ranges: Vec<ColumnStatistics>,
}

impl DisplayAs for WithRanges {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KeptViewResult")
    }
}

impl ExecutionPlan for WithRanges {
    fn name(&self) -> &str {
        "KeptViewResult"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(WithRanges {
            input: children.swap_remove(0),
            ranges: self.ranges.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let inner = &input_stats[0];
        if args.partition().is_some() || inner.column_statistics.len() != self.ranges.len() {
            return Ok(Arc::clone(inner));
        }
        let mut stats = inner.as_ref().clone();
        for (column, range) in stats.column_statistics.iter_mut().zip(&self.ranges) {
            column.min_value = range.min_value.clone();
            column.max_value = range.max_value.clone();
        }
        Ok(Arc::new(stats))
    }
}
