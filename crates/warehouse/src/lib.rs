//! The warehouse: SQL over the lake on DataFusion, with BigQuery-style DDL.
//!
//! Tables live in the lake root the [`tripline_lake::Lake`] uses:
//! - a dataset is a folder `warehouse/<dataset>/`;
//! - a table is a Delta table at `warehouse/<dataset>/<table>/`, written by `CREATE [OR REPLACE] TABLE ... AS
//!   SELECT` in one Delta commit (a crash leaves the previous version), partitioned by a `DATE` column and with its
//!   files sorted by the cluster columns, so DataFusion prunes partitions, files and row groups;
//! - an external table is a definition `warehouse/<dataset>/_external/<table>.json` over files already in the lake
//!   (the raw layer `ingest` writes), read in place.
//!
//! Every query reports the bytes it read and the files it opened; a dry run plans the query and reports the bytes of
//! the files it would read after partition and file pruning, without reading them.

mod catalog;
mod ctas_input;
mod dataset;
mod date_udf;
mod delta_scan;
mod dml;
mod error;
mod fast_dates;
mod grid_aggregate;
mod history;
mod kept_table;
mod packed_keys;
mod parallel_ctas;
mod partition_dates;
mod pruning;
mod replaced;
mod row_number;
mod rule;
mod scan;
pub mod statement;
mod timestamp_text;
mod union_aggregate;
mod view;
mod view_cache;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use tripline_lake::Lake;

pub use catalog::{TableInfo, TableKind};
pub use error::{Result, WarehouseError};
pub use scan::ScanReport;
pub use statement::{AsOf, ExternalFormat, PartitionSpec, Statement, TableName};

/// Whether statements run or are only planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// Run the statement.
    #[default]
    Run,
    /// Plan it and report the bytes it would read; change nothing.
    DryRun,
}

/// What one statement did.
#[derive(Debug, Clone)]
pub struct StatementResult {
    /// The statement, as written.
    pub sql: String,
    /// What kind of statement it was: `query`, `create_table`, `create_external_table`, `drop_table`,
    /// `show_tables`, `describe`, `insert`, `delete`, `update`, `merge`.
    pub kind: &'static str,
    /// The schema of the rows.
    pub schema: SchemaRef,
    /// The rows (empty for DDL and dry runs).
    pub batches: Vec<RecordBatch>,
    /// Bytes and files read (or, in a dry run, that would be read).
    pub scan: ScanReport,
    /// A sentence for people about what changed (DDL), if anything did.
    pub message: Option<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Whether this was only planned.
    pub dry_run: bool,
    /// Rows inserted, updated or deleted (DML only).
    pub rows_affected: Option<u64>,
}

impl StatementResult {
    /// Number of result rows.
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The warehouse over one lake: a DataFusion session whose catalog holds the lake's datasets.
pub struct Warehouse {
    lake: Lake,
    project_dir: PathBuf,
    ctx: SessionContext,
    /// Tables partitioned by `DATE(col)`, for rewriting `DATE(col)` filters to their partition column.
    derived: Arc<std::sync::RwLock<pruning::DerivedPartitions>>,
    /// Views' results kept for reuse, when a caller turns it on.
    view_cache: Arc<view_cache::ViewCache>,
    /// A second handle on this session that the catalog's datasets open their tables through when a statement first
    /// reads them (they hold it weakly, so the catalog does not keep the warehouse alive). `None` in that handle.
    opener: Option<Arc<Warehouse>>,
    /// Memory the sorts of a `CREATE TABLE ... AS` query may hold, all partitions together, before they spill.
    sort_memory: std::sync::atomic::AtomicUsize,
}

impl Warehouse {
    /// Open the warehouse in the lake at `root` (a path relative to `project_dir`, or a `file://` URL) and list
    /// every dataset and table found under `warehouse/`; each table is opened when a statement first reads it.
    pub async fn open(root: &str, project_dir: &Path) -> Result<Self> {
        let lake = Lake::open(root, project_dir)?;
        let mut config = SessionConfig::new()
            // Column names as written, so `VendorID` works unquoted as in BigQuery and the TLC files.
            .set_bool("datafusion.sql_parser.enable_ident_normalization", false);
        // Read each Parquet footer exactly rather than a 512 KiB tail guess, which swallows whole small files: the
        // bytes scanned are then what the query needed, and row groups pruned by statistics are never fetched.
        config.options_mut().execution.parquet.metadata_size_hint = None;
        let derived: Arc<std::sync::RwLock<pruning::DerivedPartitions>> = Default::default();
        // Delta's planner knows the plan nodes its writer adds; everything else plans as usual.
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
            .with_analyzer_rule(Arc::new(fast_dates::DateFilters))
            .with_optimizer_rule(Arc::new(fast_dates::FastDates))
            .with_optimizer_rule(Arc::new(union_aggregate::UnionAggregate))
            .with_optimizer_rule(Arc::new(partition_dates::PartitionDates::new(Arc::clone(
                &derived,
            ))))
            .with_optimizer_rule(Arc::new(packed_keys::PackedKeys))
            .with_physical_optimizer_rule(Arc::new(row_number::FastRowNumber))
            .with_physical_optimizer_rule(Arc::new(grid_aggregate::GridAggregates))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_udf(date_udf::date());
        ctx.register_object_store(catalog::lake_store_url(), lake.store().clone());
        // Files named by an absolute path outside the lake are read through memory maps too.
        ctx.register_object_store(
            &url::Url::parse("file://").expect("valid URL"),
            tripline_mapped::root(),
        );
        let opener = Arc::new(Self {
            lake: lake.clone(),
            project_dir: project_dir.to_path_buf(),
            ctx: ctx.clone(),
            derived: Arc::clone(&derived),
            view_cache: Default::default(),
            opener: None,
            sort_memory: ctas_input::SORT_MEMORY.into(),
        });
        let warehouse = Self {
            lake,
            project_dir: project_dir.to_path_buf(),
            ctx,
            derived,
            view_cache: Arc::clone(&opener.view_cache),
            opener: Some(opener),
            sort_memory: ctas_input::SORT_MEMORY.into(),
        };
        warehouse.load_catalog().await?;
        Ok(warehouse)
    }

    /// The lake the warehouse lives in.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// The DataFusion session, for callers that build their own plans.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Run a script of one or more `;`-separated statements, in order; stops at the first failure.
    pub async fn execute_script(
        &self,
        script: &str,
        mode: RunMode,
    ) -> Result<Vec<StatementResult>> {
        let mut out = Vec::new();
        for sql in statement::split_statements(script)? {
            out.push(self.execute(&sql, mode).await?);
        }
        if out.is_empty() {
            return Err(WarehouseError::Syntax("no SQL statement given".into()));
        }
        Ok(out)
    }

    /// Keep each view's result (up to `budget_bytes` of Arrow batches per view) and reuse it until a table under
    /// the view is written through this warehouse; 0 turns it off and drops what was kept. For runs that read the
    /// same views many times (`tripline dbt build`); see the `view_cache` module.
    pub fn cache_view_results(&self, budget_bytes: usize) {
        self.view_cache.set_budget(budget_bytes);
    }

    /// Let the sorts of a `CREATE TABLE ... AS` query (a partitioned or clustered table's, above all) hold up to
    /// `bytes` of memory, all partitions together, before they spill to disk; 2 GiB unless set.
    pub fn set_sort_memory(&self, bytes: usize) {
        self.sort_memory
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn sort_memory(&self) -> usize {
        self.sort_memory.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Keep the result of view `dataset.view` from its next read on (when results are kept at all).
    pub fn keep_view_result(&self, view: &str) {
        self.view_cache.want(view);
    }

    /// Drop the kept result of view `dataset.view`, if any, and keep it no longer (its readers are done; a later
    /// read runs its query).
    pub fn forget_view_result(&self, view: &str) {
        self.view_cache.forget(view);
    }

    /// How many views' queries ran to keep their result, and how many reads used a kept result.
    pub fn view_cache_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.view_cache.computed.load(Relaxed),
            self.view_cache.reused.load(Relaxed),
        )
    }

    /// Run (or plan) one statement.
    pub async fn execute(&self, sql: &str, mode: RunMode) -> Result<StatementResult> {
        let start = Instant::now();
        let parsed = statement::parse_statement(sql)?;
        // Kept view results under what this statement writes are stale from its start to its end.
        let _writing = (mode == RunMode::Run).then(|| self.view_cache.write(&parsed));
        let mut result = match parsed {
            Statement::Query(q) => {
                let q = self.resolve_time_travel(&q).await?;
                self.query(&q, mode).await?
            }
            Statement::CreateTable(mut c) => {
                c.query = self.resolve_time_travel(&c.query).await?;
                self.create_table(&c, mode).await?
            }
            Statement::CreateExternalTable(c) => self.create_external_table(&c, mode).await?,
            Statement::CreateView(c) => self.create_view(&c, mode).await?,
            Statement::DropView { name, if_exists } => {
                self.drop_view(&name, if_exists, mode).await?
            }
            Statement::DropTable { name, if_exists } => {
                self.drop_table(&name, if_exists, mode).await?
            }
            Statement::ShowTables { dataset } => self.show_tables(dataset.as_deref()).await?,
            Statement::Describe { name } => self.describe(&name).await?,
            Statement::DescribeHistory { name } => self.describe_history(&name).await?,
            Statement::Optimize { name, zorder_by } => {
                self.optimize(&name, &zorder_by, mode).await?
            }
            Statement::Restore { name, to } => self.restore(&name, &to, mode).await?,
            Statement::Insert(i) => self.insert(&i, mode).await?,
            Statement::Delete(d) => self.delete(&d, mode).await?,
            Statement::Update(u) => self.update(&u, mode).await?,
            Statement::Merge(m) => self.merge(&m, mode).await?,
        };
        result.sql = sql.to_string();
        result.seconds = start.elapsed().as_secs_f64();
        result.dry_run = mode == RunMode::DryRun;
        Ok(result)
    }

    async fn query(&self, sql: &str, mode: RunMode) -> Result<StatementResult> {
        // DDL DataFusion would run in memory (CREATE VIEW, CREATE TABLE with a column list) is not ours to allow.
        let options = SQLOptions::new().with_allow_ddl(false);
        let df = self
            .ctx
            .sql_with_options(sql, options)
            .await
            .map_err(WarehouseError::query)?;
        let df = self.prune_by_date(df)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let plan = df
            .create_physical_plan()
            .await
            .map_err(WarehouseError::query)?;
        let planned = scan::planned_files(&plan);
        if mode == RunMode::DryRun {
            return Ok(result("query", schema, Vec::new(), planned.report(), None));
        }
        let batches = datafusion::physical_plan::collect(plan.clone(), self.ctx.task_ctx())
            .await
            .map_err(WarehouseError::query)?;
        let report = ScanReport {
            bytes_scanned: scan::bytes_scanned(&plan),
            files_read: planned.files.len() as u64,
            estimated: false,
        };
        Ok(result("query", schema, batches, report, None))
    }

    async fn show_tables(&self, dataset: Option<&str>) -> Result<StatementResult> {
        let tables = self.list_tables(dataset).await?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("dataset", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("partition_by", DataType::Utf8, true),
            Field::new("cluster_by", DataType::Utf8, true),
            Field::new("location", DataType::Utf8, false),
        ]));
        let col = |f: &dyn Fn(&TableInfo) -> Option<String>| {
            Arc::new(StringArray::from(
                tables.iter().map(f).collect::<Vec<Option<String>>>(),
            )) as _
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                col(&|t| Some(t.name.dataset.clone())),
                col(&|t| Some(t.name.table.clone())),
                col(&|t| Some(t.kind.to_string())),
                col(&|t| t.partition_by.clone()),
                col(&|t| (!t.cluster_by.is_empty()).then(|| t.cluster_by.join(", "))),
                col(&|t| Some(t.location.clone())),
            ],
        )
        .map_err(|e| WarehouseError::Internal(e.to_string()))?;
        Ok(result(
            "show_tables",
            schema,
            vec![batch],
            ScanReport::default(),
            None,
        ))
    }

    async fn describe(&self, name: &TableName) -> Result<StatementResult> {
        let info = self
            .table_info(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        let provider = self
            .ctx
            .table_provider(catalog::table_ref(name))
            .await
            .map_err(WarehouseError::query)?;
        let table_schema = provider.schema();
        let schema = Arc::new(Schema::new(vec![
            Field::new("column", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("nullable", DataType::Utf8, false),
            Field::new("role", DataType::Utf8, true),
        ]));
        let partition_column = info.partition_column.clone();
        let roles: Vec<Option<String>> = table_schema
            .fields()
            .iter()
            .map(|f| {
                let mut roles = Vec::new();
                if partition_column.as_deref() == Some(f.name().as_str()) {
                    roles.push(format!(
                        "partition ({})",
                        info.partition_by.as_deref().unwrap_or("")
                    ));
                }
                if info.hive_partitions.contains(f.name()) {
                    roles.push("hive partition (text)".into());
                }
                if let Some(i) = info.cluster_by.iter().position(|c| c == f.name()) {
                    roles.push(format!("cluster {}", i + 1));
                }
                (!roles.is_empty()).then(|| roles.join(", "))
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    table_schema.fields().iter().map(|f| f.name().clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    table_schema
                        .fields()
                        .iter()
                        .map(|f| f.data_type().to_string()),
                )),
                Arc::new(StringArray::from_iter_values(
                    table_schema
                        .fields()
                        .iter()
                        .map(|f| if f.is_nullable() { "YES" } else { "NO" }),
                )),
                Arc::new(StringArray::from(roles)),
            ],
        )
        .map_err(|e| WarehouseError::Internal(e.to_string()))?;
        Ok(result(
            "describe",
            schema,
            vec![batch],
            ScanReport::default(),
            Some(format!("{name}: {} at {}", info.kind, info.location)),
        ))
    }
}

impl Warehouse {
    /// Rewrite `DATE(col)` filters over date-partitioned tables to their partition column (see [`pruning`]).
    pub(crate) fn prune_by_date(
        &self,
        df: datafusion::dataframe::DataFrame,
    ) -> Result<datafusion::dataframe::DataFrame> {
        let tables = self.derived.read().expect("lock").clone();
        if tables.is_empty() {
            return Ok(df);
        }
        let (state, plan) = df.into_parts();
        let plan = pruning::rewrite(plan, &tables).map_err(WarehouseError::query)?;
        Ok(datafusion::dataframe::DataFrame::new(state, plan))
    }

    /// Remember (or forget) how a table is partitioned, for [`Self::prune_by_date`].
    pub(crate) fn note_partitioning(
        &self,
        name: &TableName,
        partition_by: Option<&str>,
        column: Option<&str>,
    ) {
        let mut derived = self.derived.write().expect("lock");
        let source = partition_by
            .and_then(|p| p.strip_prefix("DATE("))
            .and_then(|p| p.strip_suffix(')'));
        match (source, column) {
            (Some(source), Some(column)) => {
                derived.insert(name.to_string(), (source.to_string(), column.to_string()));
            }
            _ => {
                derived.remove(&name.to_string());
            }
        }
    }
}

fn not_found(name: &TableName) -> WarehouseError {
    WarehouseError::NotFound(name.to_string())
}

fn result(
    kind: &'static str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    scan: ScanReport,
    message: Option<String>,
) -> StatementResult {
    StatementResult {
        sql: String::new(),
        kind,
        schema,
        batches,
        scan,
        message,
        seconds: 0.0,
        dry_run: false,
        rows_affected: None,
    }
}

fn empty_result(kind: &'static str, scan: ScanReport, message: String) -> StatementResult {
    result(
        kind,
        Arc::new(Schema::empty()),
        Vec::new(),
        scan,
        Some(message),
    )
}
