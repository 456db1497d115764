//! `CREATE TABLE ... AS SELECT` into a table that is neither partitioned nor clustered: one Delta writer per
//! partition of the query, all their files in one commit.
//!
//! deltalake's write operation drains every input stream of an unpartitioned table through a single Parquet
//! writer, so encoding and compressing the table runs on one core however many the query used (a dbt `table`
//! model of 700k rows spent more than half its time there). Rows of such a table have no order to keep, so each
//! partition of the query gets its own [`DeltaWriter`] on its own task and writes its own files; the files and the
//! table's schema are then committed at once by [`CreateBuilder`], which on `OR REPLACE` also removes every file
//! of the previous version in the same commit. A crash before the commit leaves unreferenced files only: the
//! previous version stays what readers see.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::schema::{StructType, cast_record_batch, normalize_for_delta};
use deltalake::kernel::{Action, Add};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::SaveMode;
use deltalake::table::config::DEFAULT_TARGET_FILE_SIZE;
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;
use parquet::file::properties::WriterProperties;
use tokio::task::JoinSet;

use crate::encoding::fit_dictionary;
use crate::{Result, WarehouseError};

/// What a parallel CTAS writes and where.
pub(crate) struct ParallelCtas<'a> {
    /// The (not yet loaded, or current) table at the target location.
    pub table: &'a DeltaTable,
    /// `dataset.table`, for errors and the table's name in its metadata.
    pub name: String,
    /// Replace the table's data and schema if it exists (`OR REPLACE`).
    pub replace: bool,
    pub writer_properties: WriterProperties,
}

impl ParallelCtas<'_> {
    /// Run `plan` (in `ctx`) through `writers` writers at once and commit what they wrote as the table's new
    /// version. Every column of the table is nullable, as BigQuery makes a CTAS's columns.
    pub(crate) async fn run(
        self,
        plan: Arc<dyn ExecutionPlan>,
        ctx: Arc<TaskContext>,
        writers: usize,
    ) -> Result<DeltaTable> {
        let delta_error = WarehouseError::delta(&self.name);
        let plan = spread(plan, writers.max(1)).map_err(WarehouseError::query)?;
        let query_schema = plan.schema();
        let nullable = nullable(&query_schema);
        // The types Delta stores (e.g. microsecond timestamps); batches are cast only when they differ.
        let file_schema = normalize_for_delta(&nullable);
        let needs_cast = file_schema
            .fields()
            .iter()
            .zip(query_schema.fields())
            .any(|(to, from)| to.data_type() != from.data_type());
        let columns: StructType = file_schema.as_ref().try_into_kernel().map_err(|e| {
            delta_error(DeltaTableError::Generic(format!(
                "the query's columns cannot be stored in Delta: {e}"
            )))
        })?;
        let config = WriterConfig::new(
            Arc::clone(&file_schema),
            Vec::new(),
            Some(self.writer_properties.clone()),
            Some(DEFAULT_TARGET_FILE_SIZE),
            None,
            Default::default(),
            None,
        );

        let store = self.table.object_store();
        let mut tasks = JoinSet::new();
        for partition in 0..plan.output_partitioning().partition_count() {
            let mut stream = plan
                .execute(partition, Arc::clone(&ctx))
                .map_err(WarehouseError::query)?;
            let config = config.clone();
            let properties = self.writer_properties.clone();
            let store = Arc::clone(&store);
            let file_schema = Arc::clone(&file_schema);
            tasks.spawn(async move {
                // The writer is made when the first batch is in: its columns' encodings are chosen from it.
                let mut writer: Option<DeltaWriter> = None;
                while let Some(batch) = stream.next().await {
                    let batch = match batch {
                        Ok(batch) => {
                            conform(&batch, &file_schema, needs_cast).map_err(Failure::Delta)
                        }
                        Err(e) => Err(Failure::Query(e)),
                    };
                    let written = match batch {
                        Ok(batch) => {
                            let writer = writer.get_or_insert_with(|| {
                                DeltaWriter::new(Arc::clone(&store), config.clone())
                                    .with_writer_properties(fit_dictionary(&properties, &batch))
                            });
                            writer.write(&batch).await.map_err(Failure::Delta)
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(e) = written {
                        // Abort rather than drop: an open multipart upload would be left behind.
                        if let Some(writer) = writer {
                            let _ = writer.abort().await;
                        }
                        return Err(e);
                    }
                }
                match writer {
                    Some(writer) => writer.close().await.map_err(Failure::Delta),
                    None => Ok(Vec::new()),
                }
            });
        }
        let mut adds: Vec<Add> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let written = joined.map_err(|e| {
                delta_error(DeltaTableError::Generic(format!(
                    "a writer task failed: {e}"
                )))
            })?;
            match written {
                Ok(files) => adds.extend(files),
                Err(failure) => {
                    // The other writers' partial files are never committed; stop them now.
                    tasks.abort_all();
                    return Err(match failure {
                        Failure::Query(e) => WarehouseError::query(e),
                        Failure::Delta(e) => delta_error(e),
                    });
                }
            }
        }

        CreateBuilder::new()
            .with_log_store(self.table.log_store())
            .with_table_name(self.name.clone())
            .with_columns(columns.fields().cloned())
            .with_save_mode(if self.replace {
                SaveMode::Overwrite
            } else {
                SaveMode::ErrorIfExists
            })
            .with_actions(adds.into_iter().map(Action::Add))
            .await
            .map_err(delta_error)
    }
}

enum Failure {
    Query(datafusion::error::DataFusionError),
    Delta(DeltaTableError),
}

/// `plan` with `writers` output partitions, its batches dealt round robin. Always dealt, even when the plan
/// already has that many partitions: a query's partitions can be far from even (a join that probes with the small
/// side puts every row in one partition), and a writer left without rows is a core left idle.
fn spread(
    plan: Arc<dyn ExecutionPlan>,
    writers: usize,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    if writers == 1 && plan.output_partitioning().partition_count() == 1 {
        return Ok(plan);
    }
    Ok(Arc::new(RepartitionExec::try_new(
        plan,
        Partitioning::RoundRobinBatch(writers),
    )?))
}

/// `schema` with every field nullable.
pub(crate) fn nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// `batch` under the table's file schema: the same arrays (nullability only widens), or cast where Delta stores a
/// different type.
fn conform(
    batch: &RecordBatch,
    file_schema: &SchemaRef,
    needs_cast: bool,
) -> deltalake::DeltaResult<RecordBatch> {
    if needs_cast {
        return cast_record_batch(batch, Arc::clone(file_schema), false, false);
    }
    let rows = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(file_schema),
        batch.columns().to_vec(),
        &rows,
    )?)
}
