//! The writers of `CREATE TABLE ... AS SELECT`: the query's rows into Delta files, all of them committed at once.
//!
//! - **Neither partitioned nor clustered** ([`ParallelCtas::run`]): deltalake's write operation drains every input
//!   stream of an unpartitioned table through a single Parquet writer, so encoding and compressing the table runs
//!   on one core however many the query used (a dbt `table` model of 700k rows spent more than half its time
//!   there). Rows of such a table have no order to keep, so each partition of the query gets its own
//!   [`DeltaWriter`] on its own task and writes its own files.
//! - **Partitioned or clustered** ([`ParallelCtas::run_sorted`]): the query comes sorted by partition, then
//!   cluster columns, as one stream, and one writer at a time writes it in that order, so files hold runs of the
//!   cluster keys. The writer of a partition value is closed as soon as the next value starts: a year partitioned
//!   by day holds one open file at a time, not 366 (deltalake's write operation keeps every partition's writer and
//!   its buffered row group open until the end).
//!
//! Every writer is made when its first batch is in, with encodings fitted to that batch
//! ([`fit_encodings`]). The files and the table's schema are then committed at once by [`CreateBuilder`], which on
//! `OR REPLACE` also removes every file of the previous version in the same commit. A crash before the commit
//! leaves unreferenced files only: the previous version stays what readers see.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::ScalarValue;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, execute_stream,
};
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

use crate::{Result, WarehouseError};
use tripline_lake::encoding::fit_encodings;

/// What a parallel CTAS writes and where.
pub(crate) struct ParallelCtas<'a> {
    /// The (not yet loaded, or current) table at the target location.
    pub table: &'a DeltaTable,
    /// `dataset.table`, for errors and the table's name in its metadata.
    pub name: String,
    /// Replace the table's data and schema if it exists (`OR REPLACE`).
    pub replace: bool,
    pub writer_properties: WriterProperties,
    /// The table's partition column (a Delta partition column of the query's output), if partitioned.
    pub partition_column: Option<String>,
}

/// The table as Delta stores it, derived from the query's schema.
struct Columns {
    /// Every field nullable, types as Delta stores them (e.g. microsecond timestamps).
    file_schema: SchemaRef,
    /// Whether batches must be cast to `file_schema` (not only relabelled).
    needs_cast: bool,
    columns: StructType,
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
        let Columns {
            file_schema,
            needs_cast,
            columns,
        } = self.columns(&plan.schema())?;
        let config = self.writer_config(&file_schema, Vec::new());

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
                                    .with_writer_properties(fit_encodings(&properties, &batch))
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

        self.commit(columns, adds).await
    }

    /// Write the rows of `plan`, sorted by the partition column first (if any), in their order: one writer at a
    /// time, each partition value's writer closed when the next value starts.
    pub(crate) async fn run_sorted(
        self,
        plan: Arc<dyn ExecutionPlan>,
        ctx: Arc<TaskContext>,
    ) -> Result<DeltaTable> {
        let delta_error = WarehouseError::delta(&self.name);
        let Columns {
            file_schema,
            needs_cast,
            columns,
        } = self.columns(&plan.schema())?;
        let partition_index = match &self.partition_column {
            Some(name) => Some(file_schema.index_of(name).map_err(|e| {
                delta_error(DeltaTableError::Generic(format!(
                    "partition column {name}: {e}"
                )))
            })?),
            None => None,
        };
        let config = self.writer_config(
            &file_schema,
            self.partition_column.iter().cloned().collect(),
        );
        let store = self.table.object_store();
        // One stream in order (a sorted plan has one partition already; several would be merged unordered).
        let mut stream = execute_stream(plan, ctx).map_err(WarehouseError::query)?;
        let mut properties: Option<WriterProperties> = None;
        let mut current: Option<(ScalarValue, DeltaWriter)> = None;
        let mut adds: Vec<Add> = Vec::new();
        let failure = loop {
            let batch = match stream.next().await {
                None => break None,
                Some(Err(e)) => break Some(Failure::Query(e)),
                Some(Ok(batch)) => match conform(&batch, &file_schema, needs_cast) {
                    Ok(batch) => batch,
                    Err(e) => break Some(Failure::Delta(e)),
                },
            };
            if batch.num_rows() == 0 {
                continue;
            }
            // Fitted once, to the first batch; every partition value's writer uses them.
            let fitted =
                &*properties.get_or_insert_with(|| fit_encodings(&self.writer_properties, &batch));
            // The runs of one partition value in this batch (the input is sorted by it).
            let runs = match partition_index {
                None => vec![(ScalarValue::Null, batch)],
                Some(i) => match runs_of(&batch, i) {
                    Ok(runs) => runs,
                    Err(e) => break Some(Failure::Query(e)),
                },
            };
            let mut failed = None;
            for (value, rows) in runs {
                if current.as_ref().is_some_and(|(v, _)| *v != value) {
                    let (_, done) = current.take().expect("checked");
                    match done.close().await {
                        Ok(files) => adds.extend(files),
                        Err(e) => {
                            failed = Some(Failure::Delta(e));
                            break;
                        }
                    }
                }
                let (_, writer) = current.get_or_insert_with(|| {
                    (
                        value,
                        DeltaWriter::new(Arc::clone(&store), config.clone())
                            .with_writer_properties(fitted.clone()),
                    )
                });
                if let Err(e) = writer.write(&rows).await {
                    failed = Some(Failure::Delta(e));
                    break;
                }
            }
            if failed.is_some() {
                break failed;
            }
        };
        if let Some(failure) = failure {
            // Abort rather than drop: an open multipart upload would be left behind.
            if let Some((_, writer)) = current {
                let _ = writer.abort().await;
            }
            return Err(match failure {
                Failure::Query(e) => WarehouseError::query(e),
                Failure::Delta(e) => delta_error(e),
            });
        }
        if let Some((_, writer)) = current {
            adds.extend(writer.close().await.map_err(&delta_error)?);
        }
        self.commit(columns, adds).await
    }

    /// Files of the default target size, with `partition_columns`, encoded with the CTAS's properties.
    fn writer_config(
        &self,
        file_schema: &SchemaRef,
        partition_columns: Vec<String>,
    ) -> WriterConfig {
        WriterConfig::new(
            Arc::clone(file_schema),
            partition_columns,
            Some(self.writer_properties.clone()),
            Some(DEFAULT_TARGET_FILE_SIZE),
            None,
            Default::default(),
            None,
        )
    }

    /// The table's columns as Delta stores them, from the query's schema.
    fn columns(&self, query_schema: &SchemaRef) -> Result<Columns> {
        let nullable = nullable(query_schema);
        // The types Delta stores (e.g. microsecond timestamps); batches are cast only when they differ.
        let file_schema = normalize_for_delta(&nullable);
        let needs_cast = file_schema
            .fields()
            .iter()
            .zip(query_schema.fields())
            .any(|(to, from)| to.data_type() != from.data_type());
        let columns: StructType = file_schema.as_ref().try_into_kernel().map_err(|e| {
            WarehouseError::delta(&self.name)(DeltaTableError::Generic(format!(
                "the query's columns cannot be stored in Delta: {e}"
            )))
        })?;
        Ok(Columns {
            file_schema,
            needs_cast,
            columns,
        })
    }

    /// Commit `adds` as the table's new version (replacing the previous one's files, schema and partitioning).
    async fn commit(self, columns: StructType, adds: Vec<Add>) -> Result<DeltaTable> {
        CreateBuilder::new()
            .with_log_store(self.table.log_store())
            .with_table_name(self.name.clone())
            .with_columns(columns.fields().cloned())
            .with_partition_columns(self.partition_column.iter().cloned().collect::<Vec<_>>())
            .with_save_mode(if self.replace {
                SaveMode::Overwrite
            } else {
                SaveMode::ErrorIfExists
            })
            .with_actions(adds.into_iter().map(Action::Add))
            .await
            .map_err(WarehouseError::delta(&self.name))
    }
}

/// `batch` cut into its runs of equal values of column `index`, each with that value.
fn runs_of(
    batch: &RecordBatch,
    index: usize,
) -> datafusion::error::Result<Vec<(ScalarValue, RecordBatch)>> {
    let column = batch.column(index);
    let ranges = arrow::compute::partition(std::slice::from_ref(column))?.ranges();
    ranges
        .into_iter()
        .map(|r| {
            let value = ScalarValue::try_from_array(column, r.start)?;
            Ok((value, batch.slice(r.start, r.end - r.start)))
        })
        .collect()
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
