//! The rows a `CREATE TABLE ... AS SELECT` writes, as one stream handed to the Delta writer.
//!
//! Two things the writer's own planning of the query would get wrong:
//! - **Order without holding the table.** A partitioned or clustered table is written sorted (partition, then
//!   cluster columns) so its files hold runs of the cluster keys. Planned inside the writer, the sort is dropped (no
//!   writer operator asks for an order), so the query runs here, in a session whose memory pool is bounded: the sort
//!   spills sorted runs to disk past [`SORT_MEMORY`] and merges them, and the writer sees the merged stream once.
//! - **BigQuery's nullability.** A CTAS makes every column NULLABLE; DataFusion would carry `NOT NULL` over from
//!   the query (a literal, `count(*)`), and the table would refuse NULLs in every later INSERT or MERGE.

use std::sync::{Arc, Mutex};

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use datafusion::datasource::provider_as_source;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use futures::StreamExt;

/// Memory the query of a CTAS (its sort, above all) may hold before spilling to disk.
pub(crate) const SORT_MEMORY: usize = 2 << 30;

/// `state` with its memory pool bounded by [`SORT_MEMORY`] (same object stores, caches and spill directory).
pub(crate) fn bounded(state: &SessionState) -> Result<SessionState> {
    let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
        .with_memory_limit(SORT_MEMORY, 1.0)
        .build_arc()?;
    Ok(SessionStateBuilder::new_from_existing(state.clone())
        .with_runtime_env(runtime)
        .build())
}

/// A logical plan that scans the output of `plan` (run in `state`) once, all columns nullable.
pub(crate) fn once(plan: Arc<dyn ExecutionPlan>, state: &SessionState) -> Result<LogicalPlan> {
    let stream = execute_stream(plan, state.task_ctx())?;
    let input = stream.schema();
    let schema = Arc::new(Schema::new_with_metadata(
        input
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
        input.metadata().clone(),
    ));
    let source = OneShot {
        schema: Arc::clone(&schema),
        stream: Mutex::new(Some(stream)),
    };
    let table = StreamingTable::try_new(schema, vec![Arc::new(source)])?;
    LogicalPlanBuilder::scan("ctas_input", provider_as_source(Arc::new(table)), None)?.build()
}

/// One stream, given out once.
struct OneShot {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneShot").finish_non_exhaustive()
    }
}

impl PartitionStream for OneShot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = Arc::clone(&self.schema);
        let taken = self.stream.lock().expect("lock").take();
        match taken {
            Some(stream) => {
                let out = Arc::clone(&schema);
                Box::pin(RecordBatchStreamAdapter::new(
                    schema,
                    stream.map(move |batch| {
                        let batch = batch?;
                        let rows = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                        RecordBatch::try_new_with_options(
                            Arc::clone(&out),
                            batch.columns().to_vec(),
                            &rows,
                        )
                        .map_err(DataFusionError::from)
                    }),
                ))
            }
            None => Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::once(async {
                    Err(DataFusionError::Internal(
                        "the rows of this CREATE TABLE AS were already read once".into(),
                    ))
                }),
            )),
        }
    }
}
