//! `row_number()` over input sorted by its partition keys, counted run by run.
//!
//! The course's staging models keep one row per trip with `row_number() OVER (PARTITION BY VendorID,
//! tpep_pickup_datetime ORDER BY ...) ... WHERE rn = 1`. Almost every partition is one or two rows, and DataFusion's
//! `BoundedWindowAggExec` keeps per-partition state (its keys as scalars, a batch slice, an evaluator) for each of
//! them: 1.4 s of the 1.6 s such a view takes on 600,000 trips. Once the input is sorted by the partition keys (the
//! sort the window requires anyway), a partition is a run of equal keys and its row numbers are 1, 2, 3...:
//! [`RowNumberExec`] finds the runs of each batch with Arrow's `partition` kernel and carries the last run's count
//! into the next batch.
//!
//! [`FastRowNumber`] puts it in place of a `BoundedWindowAggExec` in sorted mode whose window functions are all
//! `row_number()` (they then share one partitioning and ordering). Everything the planner knows about the node —
//! schema, ordering, partitioning, required input ordering and distribution, statistics — stays the window node's
//! own ([`ReplacedExec`]).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::compute::{concat, partition};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::window::{StandardWindowExpr, WindowExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::metrics::BaselineMetrics;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{ExecutionPlan, InputOrderMode};
use futures::StreamExt;

use crate::replaced::{ReplacedExec, Replacement};

/// The physical optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct FastRowNumber;

impl PhysicalOptimizerRule for FastRowNumber {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(window) = node.downcast_ref::<BoundedWindowAggExec>() else {
                return Ok(Transformed::no(node));
            };
            if window.input_order_mode != InputOrderMode::Sorted
                || window.window_expr().is_empty()
                || !window
                    .window_expr()
                    .iter()
                    .all(|e| is_row_number(e.as_ref()))
            {
                return Ok(Transformed::no(node));
            }
            let by = RowNumbers {
                keys: window.window_expr()[0].partition_by().to_vec(),
                columns: window.window_expr().len(),
            };
            Ok(Transformed::yes(Arc::new(RowNumberExec::new(node, by))))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tripline_fast_row_number"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `e` is the `row_number()` window function.
fn is_row_number(e: &dyn WindowExpr) -> bool {
    e.as_any()
        .downcast_ref::<StandardWindowExpr>()
        .and_then(|s| {
            s.get_standard_func_expr()
                .as_any()
                .downcast_ref::<WindowUDFExpr>()
        })
        .is_some_and(|f| f.fun().name() == "row_number")
}

/// `row_number()` over input sorted by the partition keys, in place of a window node.
pub(crate) type RowNumberExec = ReplacedExec<RowNumbers>;

/// How a [`RowNumberExec`] counts.
#[derive(Debug, Clone)]
pub(crate) struct RowNumbers {
    /// The partition keys.
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// How many `row_number()` columns follow the input's.
    columns: usize,
}

impl Replacement for RowNumbers {
    const NAME: &'static str = "RowNumberExec";

    fn describe(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        write!(
            f,
            "partition_by=[{}], columns={}",
            keys.join(", "),
            self.columns
        )
    }

    fn maintains_input_order(&self) -> bool {
        true
    }

    fn execute(
        &self,
        input: SendableRecordBatchStream,
        schema: SchemaRef,
        _partition: usize,
        _context: &Arc<TaskContext>,
        metrics: BaselineMetrics,
    ) -> Result<SendableRecordBatchStream> {
        let mut counter = Counter {
            keys: self.keys.clone(),
            columns: self.columns,
            schema: Arc::clone(&schema),
            last: None,
            count: 0,
        };
        let stream = input.map(move |batch| {
            let _timer = metrics.elapsed_compute().timer();
            let out = counter.number(batch?)?;
            metrics.record_output(out.num_rows());
            Ok(out)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// The numbering state of one partition of the stream.
struct Counter {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    columns: usize,
    schema: SchemaRef,
    /// The last row's keys (one-row arrays) and its row number.
    last: Option<Vec<ArrayRef>>,
    count: u64,
}

impl Counter {
    /// `batch` with its row numbers appended.
    fn number(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let mut numbers = Vec::with_capacity(rows);
        if rows > 0 {
            let keys = self
                .keys
                .iter()
                .map(|k| k.evaluate(&batch)?.into_array(rows))
                .collect::<Result<Vec<_>>>()?;
            let ranges = if keys.is_empty() {
                std::iter::once(0..rows).collect()
            } else {
                partition(&keys)?.ranges()
            };
            // Does the first run continue the previous batch's last one? Compared with the same kernel.
            let continues = match &self.last {
                None => false,
                Some(_) if keys.is_empty() => true,
                Some(last) => {
                    let pairs = last
                        .iter()
                        .zip(&keys)
                        .map(|(l, k)| concat(&[l.as_ref(), k.slice(0, 1).as_ref()]))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    partition(&pairs)?.len() == 1
                }
            };
            for (i, range) in ranges.into_iter().enumerate() {
                let start = if i == 0 && continues { self.count } else { 0 };
                numbers.extend(start + 1..=start + range.len() as u64);
            }
            self.count = *numbers.last().expect("rows > 0");
            self.last = Some(keys.iter().map(|k| k.slice(rows - 1, 1)).collect());
        }
        let numbers: ArrayRef = Arc::new(UInt64Array::from(numbers));
        let mut columns = batch.columns().to_vec();
        columns.extend(std::iter::repeat_n(numbers, self.columns));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// A session with small batches (so partitions span batches), with or without the rule.
    fn session(fast: bool) -> SessionContext {
        let config = SessionConfig::new()
            .with_batch_size(7)
            .with_target_partitions(2);
        let mut builder = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config);
        if fast {
            builder = builder.with_physical_optimizer_rule(Arc::new(FastRowNumber));
        }
        let ctx = SessionContext::new_with_state(builder.build());
        // Keys with nulls and runs of every length from 1 to 40; ties in the ordering column.
        let n = 1_000;
        let a: Vec<Option<i64>> = (0..n)
            .map(|i| if i % 97 == 0 { None } else { Some(i % 13) })
            .collect();
        let b: Vec<Option<&str>> = (0..n)
            .map(|i| match (i * 7) % 5 {
                0 => None,
                1 => Some("x"),
                _ => Some("y"),
            })
            .collect();
        let o: Vec<i64> = (0..n).map(|i| (i * 31) % 17).collect();
        let id: Vec<i64> = (0..n).collect();
        let batch = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from(a)) as ArrayRef),
            ("b", Arc::new(StringArray::from(b)) as ArrayRef),
            ("o", Arc::new(Int64Array::from(o)) as ArrayRef),
            ("id", Arc::new(Int64Array::from(id)) as ArrayRef),
        ])
        .unwrap();
        ctx.register_batch("t", batch).unwrap();
        ctx
    }

    async fn run(fast: bool, sql: &str) -> (String, String) {
        let ctx = session(fast);
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

    #[tokio::test]
    async fn row_numbers_equal_the_window_operators() {
        for sql in [
            // Ties broken by id so the numbering is deterministic.
            "SELECT a, b, id, row_number() OVER (PARTITION BY a, b ORDER BY o, id) AS rn FROM t ORDER BY id",
            "SELECT id, row_number() OVER (PARTITION BY b ORDER BY id DESC) AS r1, \
             row_number() OVER (PARTITION BY b ORDER BY id DESC) AS r2 FROM t ORDER BY id",
            // The staging models' dedup.
            "SELECT a, b, o, id FROM (SELECT *, row_number() OVER (PARTITION BY a, b ORDER BY o NULLS LAST, id) AS rn \
             FROM t) WHERE rn = 1 ORDER BY a, b",
            // No partition: one numbering over everything.
            "SELECT id, row_number() OVER (ORDER BY o, id) AS rn FROM t ORDER BY id",
        ] {
            let (plan, fast) = run(true, sql).await;
            assert!(plan.contains("RowNumberExec"), "{sql}\n{plan}");
            assert!(!plan.contains("BoundedWindowAggExec"), "{sql}\n{plan}");
            let (_, reference) = run(false, sql).await;
            assert_eq!(fast, reference, "{sql}");
        }
    }

    #[tokio::test]
    async fn other_window_functions_keep_datafusions_operator() {
        let sql = "SELECT id, rank() OVER (PARTITION BY a ORDER BY o) AS r, \
                   row_number() OVER (PARTITION BY a ORDER BY o) AS n FROM t";
        let (plan, _) = run(true, sql).await;
        assert!(!plan.contains("RowNumberExec"), "{plan}");
    }
}
