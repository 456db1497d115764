//! The catalog: datasets and tables as folders and files in the lake, registered with DataFusion, and the DDL that
//! changes them.
//!
//! ```text
//! warehouse/<dataset>/<table>/_delta_log/...          a Delta table (the source of truth for its data)
//! warehouse/<dataset>/<table>/_tripline_table.json    how it was laid out: PARTITION BY, CLUSTER BY (informational)
//! warehouse/<dataset>/_external/<table>.json          an external table: format and uris, read in place
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{Column, TableReference};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, SortExpr, TableProviderFilterPushDown, TableType, cast};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::ctas_input;
use crate::dataset::LakeDataset;
use crate::delta_scan::DeltaFiles;
use crate::parallel_ctas::ParallelCtas;
use crate::scan::{self, ScanReport};
use crate::statement::{
    CreateExternalTable, CreateTable, ExternalFormat, PartitionSpec, TableName,
};
use crate::{Result, RunMode, StatementResult, Warehouse, WarehouseError, empty_result, not_found};

/// Rows per Parquet row group when a table does not say (the same as the raw lake files).
pub const DEFAULT_ROW_GROUP_ROWS: usize = 131_072;

const ROOT: &str = "warehouse";
const EXTERNAL_DIR: &str = "_external";
const VIEWS_DIR: &str = "_views";
const LAYOUT_FILE: &str = "_tripline_table.json";

/// The URL under which the lake's object store is registered with DataFusion, for external tables.
pub(crate) fn lake_store_url() -> &'static Url {
    static URL: OnceLock<Url> = OnceLock::new();
    URL.get_or_init(|| Url::parse("tripline-lake://lake/").expect("valid URL"))
}

/// The DataFusion name of a table.
pub(crate) fn table_ref(name: &TableName) -> TableReference {
    TableReference::partial(name.dataset.as_str(), name.table.as_str())
}

/// What kind of table a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// A Delta table written by the warehouse.
    Delta,
    /// Files in the lake read in place.
    External,
    /// A stored query.
    View,
}

impl std::fmt::Display for TableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Delta => "DELTA",
            Self::External => "EXTERNAL",
            Self::View => "VIEW",
        })
    }
}

/// A table of the catalog, as SHOW TABLES and DESCRIBE present it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Its name.
    pub name: TableName,
    /// Delta or external.
    pub kind: TableKind,
    /// `DATE(col)` or `col` for partitioned Delta tables.
    pub partition_by: Option<String>,
    /// The Delta partition column.
    pub partition_column: Option<String>,
    /// The cluster columns, in order.
    pub cluster_by: Vec<String>,
    /// Hive partition columns (`key=value` folders) of an external table, typed as text.
    pub hive_partitions: Vec<String>,
    /// Where the data is.
    pub location: String,
}

/// The layout a Delta table was written with, kept beside its log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TableLayout {
    pub(crate) partition_by: Option<String>,
    pub(crate) partition_column: Option<String>,
    pub(crate) cluster_by: Vec<String>,
    #[serde(default)]
    pub(crate) row_group_rows: usize,
}

impl TableLayout {
    /// `(source column, partition column)` when the partition column is `DATE(source)`, derived on write.
    pub(crate) fn derived_partition(&self) -> Option<(String, String)> {
        let source = self
            .partition_by
            .as_deref()?
            .strip_prefix("DATE(")?
            .strip_suffix(')')?;
        Some((source.to_string(), self.partition_column.clone()?))
    }

    /// The order rows are written in: partition column, then cluster columns.
    pub(crate) fn sort_columns(&self) -> Vec<String> {
        self.partition_column
            .iter()
            .chain(&self.cluster_by)
            .cloned()
            .collect()
    }

    /// Parquet settings for the table's files.
    pub(crate) fn writer_properties(&self) -> WriterProperties {
        let rows = if self.row_group_rows == 0 {
            DEFAULT_ROW_GROUP_ROWS
        } else {
            self.row_group_rows
        };
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(rows))
            .build()
    }
}

/// An external table definition, as stored in the lake.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExternalDefinition {
    format: ExternalFormat,
    /// The uris as written in the DDL.
    uris: Vec<String>,
    /// The project directory relative uris were resolved against, so the table still resolves from elsewhere.
    #[serde(default)]
    resolved: Vec<String>,
    /// Hive partition columns found under the uris.
    #[serde(default)]
    hive_partitions: Vec<String>,
}

fn dataset_path(dataset: &str) -> ObjectPath {
    ObjectPath::from(format!("{ROOT}/{dataset}"))
}

fn delta_path(name: &TableName) -> ObjectPath {
    ObjectPath::from(format!("{ROOT}/{}/{}", name.dataset, name.table))
}

fn external_path(name: &TableName) -> ObjectPath {
    ObjectPath::from(format!(
        "{ROOT}/{}/{EXTERNAL_DIR}/{}.json",
        name.dataset, name.table
    ))
}

fn ddl(message: impl Into<String>) -> WarehouseError {
    WarehouseError::Ddl(message.into())
}

fn columns_of(schema: &datafusion::common::DFSchema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Warehouse {
    fn store(&self) -> &Arc<dyn ObjectStore> {
        self.lake.store()
    }

    fn store_error(
        &self,
        action: &'static str,
        path: &ObjectPath,
    ) -> impl Fn(object_store::Error) -> WarehouseError {
        let location = self.lake.display(path);
        move |source| WarehouseError::Store {
            action,
            location: location.clone(),
            source,
        }
    }

    /// The URL of a Delta table's folder.
    fn delta_url(&self, name: &TableName) -> Result<Url> {
        let Some(root) = self.lake.local_root() else {
            let base = self.lake.url().as_str().trim_end_matches('/');
            return Url::parse(&format!("{base}/{}/", delta_path(name)))
                .map_err(|e| WarehouseError::Internal(format!("table URL: {e}")));
        };
        let dir = root.join(delta_path(name).as_ref());
        std::fs::create_dir_all(&dir).map_err(|e| WarehouseError::Store {
            action: "creating",
            location: dir.display().to_string(),
            source: object_store::Error::Generic {
                store: "local",
                source: Box::new(e),
            },
        })?;
        Url::from_directory_path(&dir)
            .map_err(|()| WarehouseError::Internal(format!("bad path {}", dir.display())))
    }

    /// A Delta table handle (not loaded) on the lake's own object store, so S3 and GCS lakes use the credentials
    /// and endpoint the lake was opened with.
    fn delta_table(&self, name: &TableName) -> Result<DeltaTable> {
        let url = self.delta_url(name)?;
        let mut builder =
            DeltaTableBuilder::from_url(url.clone()).map_err(WarehouseError::delta(&name))?;
        if let Some((store, _)) = self.lake.bucket() {
            object_store_log::register();
            builder = builder.with_storage_backend(store.clone(), url);
        } else {
            // A local table's data files are read through memory maps, as the lake's external tables are.
            builder = builder.with_storage_backend(tripline_mapped::root(), url);
        }
        builder.build().map_err(WarehouseError::delta(&name))
    }

    /// A resolved external uri as a person reads it: a path in the lake rather than the internal store URL.
    fn display_resolved(&self, resolved: &str) -> String {
        match resolved.strip_prefix(lake_store_url().as_str()) {
            Some(key) => match self.lake.local_root() {
                Some(root) => root.join(key).display().to_string(),
                None => format!("{}/{key}", self.lake.url().as_str().trim_end_matches('/')),
            },
            None => resolved.to_string(),
        }
    }

    /// Sub-folders directly under a prefix.
    async fn folders(&self, prefix: &ObjectPath) -> Result<Vec<String>> {
        let listing = self
            .store()
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(self.store_error("listing", prefix))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    async fn is_delta(&self, name: &TableName) -> Result<bool> {
        let log = delta_path(name).clone().join("_delta_log");
        let mut listing = self.store().list(Some(&log));
        Ok(listing
            .try_next()
            .await
            .map_err(self.store_error("listing", &log))?
            .is_some())
    }

    async fn external_definition(&self, name: &TableName) -> Result<Option<ExternalDefinition>> {
        let path = external_path(name);
        match self.store().get(&path).await {
            Ok(r) => {
                let bytes = r
                    .bytes()
                    .await
                    .map_err(self.store_error("reading", &path))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| WarehouseError::Catalog {
                        location: self.lake.display(&path),
                        message: e.to_string(),
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_error("reading", &path)(e)),
        }
    }

    pub(crate) async fn layout(&self, name: &TableName) -> TableLayout {
        let path = delta_path(name).clone().join(LAYOUT_FILE);
        self.lake
            .get_json::<TableLayout>(&path)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Every table of a dataset (or of all datasets), from the lake.
    pub(crate) async fn list_tables(&self, dataset: Option<&str>) -> Result<Vec<TableInfo>> {
        let datasets = match dataset {
            Some(d) => vec![d.to_string()],
            None => self.folders(&ObjectPath::from(ROOT)).await?,
        };
        let mut out = Vec::new();
        for dataset in datasets {
            let mut names: Vec<String> = self
                .folders(&dataset_path(&dataset))
                .await?
                .into_iter()
                .filter(|t| !t.starts_with('_'))
                .collect();
            for dir in [EXTERNAL_DIR, VIEWS_DIR] {
                names.extend(
                    self.json_names(&dataset_path(&dataset).clone().join(dir))
                        .await?,
                );
            }
            names.sort();
            names.dedup();
            for table in names {
                let name = TableName {
                    dataset: dataset.clone(),
                    table,
                };
                if let Some(info) = self.table_info(&name).await? {
                    out.push(info);
                }
            }
        }
        Ok(out)
    }

    /// The names of the `<name>.json` definitions in a catalog folder.
    async fn json_names(&self, dir: &ObjectPath) -> Result<Vec<String>> {
        let objects: Vec<_> = self
            .store()
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(self.store_error("listing", dir))?;
        Ok(objects
            .iter()
            .filter_map(|m| {
                m.location
                    .filename()
                    .and_then(|f| f.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect())
    }

    /// One table of the catalog, if it exists.
    pub(crate) async fn table_info(&self, name: &TableName) -> Result<Option<TableInfo>> {
        if self.is_delta(name).await? {
            let layout = self.layout(name).await;
            return Ok(Some(TableInfo {
                name: name.clone(),
                kind: TableKind::Delta,
                partition_by: layout.partition_by,
                partition_column: layout.partition_column,
                cluster_by: layout.cluster_by,
                hive_partitions: Vec::new(),
                location: self.lake.display(&delta_path(name)),
            }));
        }
        if self.view_definition(name).await?.is_some() {
            return Ok(Some(TableInfo {
                name: name.clone(),
                kind: TableKind::View,
                partition_by: None,
                partition_column: None,
                cluster_by: Vec::new(),
                hive_partitions: Vec::new(),
                location: self.lake.display(&crate::view::view_path(name)),
            }));
        }
        if let Some(def) = self.external_definition(name).await? {
            return Ok(Some(TableInfo {
                name: name.clone(),
                kind: TableKind::External,
                partition_by: None,
                partition_column: None,
                cluster_by: Vec::new(),
                hive_partitions: def.hive_partitions,
                location: def
                    .resolved
                    .iter()
                    .map(|r| self.display_resolved(r))
                    .collect::<Vec<_>>()
                    .join(", "),
            }));
        }
        Ok(None)
    }

    /// List every table in the lake with the session's catalog, to be opened when a statement first reads it (see
    /// [`LakeDataset`]). Only names and layouts are read here.
    pub(crate) async fn load_catalog(&self) -> Result<()> {
        for info in self.list_tables(None).await? {
            self.note_partitioning(
                &info.name,
                info.partition_by.as_deref(),
                info.partition_column.as_deref(),
            );
            let dataset = self.dataset(&info.name.dataset)?;
            if let Some(dataset) = dataset.downcast_ref::<LakeDataset>() {
                dataset.add_unopened(&info.name.table, info.kind);
            }
        }
        Ok(())
    }

    /// Open a table of the lake for reading: a Delta table at its latest version, an external table over its files,
    /// a view with its query planned. `None` when its definition has gone meanwhile.
    pub(crate) async fn open_table(
        &self,
        name: &TableName,
        kind: TableKind,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(match kind {
            TableKind::Delta => {
                let table = self.open_delta(name).await?;
                Some(self.delta_provider(name, &table).await?)
            }
            TableKind::External => match self.external_definition(name).await? {
                Some(def) => Some(self.external_provider(name, &def).await?),
                None => None,
            },
            TableKind::View => match self.view_definition(name).await? {
                Some(def) => Some(self.view_provider(name, &def.sql).await? as _),
                None => None,
            },
        })
    }

    /// The catalog's schema of a dataset, registered if it is new.
    fn dataset(&self, dataset: &str) -> Result<Arc<dyn SchemaProvider>> {
        self.ensure_dataset(dataset)?;
        self.ctx
            .catalog("datafusion")
            .and_then(|c| c.schema(dataset))
            .filter(|s| s.is::<LakeDataset>())
            .ok_or_else(|| {
                WarehouseError::Internal(format!("dataset {dataset} not in the catalog"))
            })
    }

    pub(crate) fn ensure_dataset(&self, dataset: &str) -> Result<()> {
        let catalog = self
            .ctx
            .catalog("datafusion")
            .ok_or_else(|| WarehouseError::Internal("no default catalog".into()))?;
        if catalog.schema(dataset).is_none() {
            let opener = self.opener.as_ref().map(Arc::downgrade).unwrap_or_default();
            catalog
                .register_schema(dataset, Arc::new(LakeDataset::new(dataset, opener)))
                .map_err(WarehouseError::query)?;
        }
        Ok(())
    }

    pub(crate) fn register(
        &self,
        name: &TableName,
        provider: Arc<dyn TableProvider>,
    ) -> Result<()> {
        self.ensure_dataset(&name.dataset)?;
        self.ctx
            .deregister_table(table_ref(name))
            .map_err(WarehouseError::query)?;
        self.ctx
            .register_table(table_ref(name), provider)
            .map_err(WarehouseError::query)?;
        Ok(())
    }

    pub(crate) async fn open_delta(&self, name: &TableName) -> Result<DeltaTable> {
        let delta_err = WarehouseError::delta(name);
        let mut table = self.delta_table(name)?;
        match table.load().await {
            Ok(()) | Err(deltalake::DeltaTableError::NotATable(_)) => Ok(table),
            Err(e) => Err(delta_err(e)),
        }
    }

    pub(crate) async fn register_delta_table(
        &self,
        name: &TableName,
        table: &DeltaTable,
    ) -> Result<()> {
        let provider = self.delta_provider(name, table).await?;
        self.register(name, provider)
    }

    /// The table provider of a loaded Delta table version: [`DeltaFiles`] over the files of the loaded snapshot,
    /// or deltalake's provider for the tables that needs.
    pub(crate) async fn delta_provider(
        &self,
        name: &TableName,
        table: &DeltaTable,
    ) -> Result<Arc<dyn TableProvider>> {
        table
            .update_datafusion_session(&self.ctx.state())
            .map_err(WarehouseError::delta(name))?;
        let inner = table
            .table_provider()
            .await
            .map_err(WarehouseError::query)?;
        Ok(
            match DeltaFiles::try_new(table, inner.clone(), lake_store_url(), &delta_path(name)) {
                Some(files) => Arc::new(files),
                None => inner,
            },
        )
    }

    async fn external_provider(
        &self,
        name: &TableName,
        def: &ExternalDefinition,
    ) -> Result<Arc<dyn TableProvider>> {
        let urls = def
            .resolved
            .iter()
            .map(|u| listing_url(u))
            .collect::<Result<Vec<_>>>()?;
        let provider = self
            .listing_table(name, def.format, urls, &def.hive_partitions)
            .await?;
        Ok(Arc::new(ExternalTable {
            name: name.to_string(),
            inner: provider,
        }))
    }

    async fn listing_table(
        &self,
        name: &TableName,
        format: ExternalFormat,
        urls: Vec<ListingTableUrl>,
        hive_partitions: &[String],
    ) -> Result<Arc<dyn TableProvider>> {
        let (file_format, extension): (Arc<dyn FileFormat>, &str) = match format {
            ExternalFormat::Parquet => (Arc::new(ParquetFormat::default()), ".parquet"),
            ExternalFormat::Csv => (Arc::new(CsvFormat::default().with_has_header(true)), ".csv"),
        };
        // Hive partition values are text: `month=03` stays '03', so a filter reads the folder name it wrote.
        let options = ListingOptions::new(file_format)
            .with_file_extension(extension)
            .with_table_partition_cols(
                hive_partitions
                    .iter()
                    .map(|c| (c.clone(), DataType::Utf8))
                    .collect(),
            );
        let state = self.ctx.state();
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .infer_schema(&state)
            .await
            .map_err(|e| {
                ddl(format!(
                    "external table {name}: cannot read the schema of its files: {e}"
                ))
            })?;
        let table = ListingTable::try_new(config).map_err(WarehouseError::query)?;
        Ok(Arc::new(table))
    }

    /// Turn a uri of the DDL into a location DataFusion lists: inside the lake through the lake's store, elsewhere
    /// on the local disk. Relative paths are taken from the project directory, else from the lake root.
    fn resolve_uri(&self, uri: &str) -> Result<String> {
        let (base, glob) = split_glob(uri);
        let lake_root = self.lake.local_root().map(Path::to_path_buf);
        let local: PathBuf = if let Some(rest) = base.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if base.contains("://") {
            let lake = self.lake.url().as_str().trim_end_matches('/');
            return match base.strip_prefix(lake) {
                Some(key) => Ok(format!(
                    "{}{}{glob}",
                    lake_store_url(),
                    key.trim_start_matches('/')
                )),
                None => Err(WarehouseError::NotSupported(format!(
                    "external uris outside the lake ({uri})"
                ))),
            };
        } else if Path::new(base).is_absolute() {
            PathBuf::from(base)
        } else if lake_root.is_none() {
            // A lake on object storage: relative uris are keys under the lake root.
            return Ok(format!(
                "{}{}{glob}",
                lake_store_url(),
                base.trim_start_matches("./").trim_start_matches('/')
            ));
        } else {
            let from_project = self.project_dir.join(base);
            match (&lake_root, from_project.exists()) {
                (Some(root), false) if root.join(base).exists() => root.join(base),
                _ => from_project,
            }
        };
        let local = local.canonicalize().map_err(|e| {
            ddl(format!(
                "uri '{uri}': {} does not exist ({e})",
                local.display()
            ))
        })?;
        let is_dir = local.is_dir();
        if let Some(root) = &lake_root
            && let Ok(key) = local.strip_prefix(root)
        {
            let key = key.to_string_lossy();
            let slash = if is_dir && !key.is_empty() { "/" } else { "" };
            return Ok(format!("{}{key}{slash}{glob}", lake_store_url()));
        }
        let url = if is_dir {
            Url::from_directory_path(&local)
        } else {
            Url::from_file_path(&local)
        }
        .map_err(|()| ddl(format!("uri '{uri}' is not a usable path")))?;
        Ok(format!("{url}{glob}"))
    }

    /// Hive partition columns (`key=value` folders) between a listing location and its first data file.
    async fn hive_partitions(
        &self,
        name: &TableName,
        url: &ListingTableUrl,
        format: ExternalFormat,
        uri: &str,
    ) -> Result<Vec<String>> {
        let store = self
            .ctx
            .runtime_env()
            .object_store(url.object_store())
            .map_err(WarehouseError::query)?;
        let extension = match format {
            ExternalFormat::Parquet => ".parquet",
            ExternalFormat::Csv => ".csv",
        };
        let prefix = url.prefix().clone();
        let files: Vec<_> = store
            .list(Some(&prefix))
            .try_filter(|m| {
                let keep = m.location.filename().is_some_and(|f| {
                    f.ends_with(extension) && !f.starts_with('.') && !f.starts_with('_')
                }) && url.contains(&m.location, false);
                futures::future::ready(keep)
            })
            .try_collect()
            .await
            .map_err(|e| ddl(format!("external table {name}: listing '{uri}': {e}")))?;
        let Some(first) = files.iter().min_by(|a, b| a.location.cmp(&b.location)) else {
            return Err(ddl(format!(
                "external table {name}: uri '{uri}' matches no {extension} files"
            )));
        };
        let segments: Vec<String> = url
            .strip_prefix(&first.location)
            .map(|s| s.map(str::to_string).collect())
            .unwrap_or_default();
        Ok(segments
            .iter()
            .take(segments.len().saturating_sub(1))
            .filter_map(|s| s.split_once('=').map(|(k, _)| k.to_string()))
            .collect())
    }

    pub(crate) async fn create_external_table(
        &self,
        c: &CreateExternalTable,
        mode: RunMode,
    ) -> Result<StatementResult> {
        if self.is_delta(&c.name).await? {
            return Err(if c.or_replace {
                ddl(format!(
                    "{} is a Delta table, not an external one: DROP TABLE it first",
                    c.name
                ))
            } else {
                WarehouseError::AlreadyExists(c.name.to_string())
            });
        }
        if self.external_definition(&c.name).await?.is_some() && !c.or_replace {
            if c.if_not_exists {
                return Ok(empty_result(
                    "create_external_table",
                    ScanReport::default(),
                    format!("{} already exists; nothing changed", c.name),
                ));
            }
            return Err(WarehouseError::AlreadyExists(c.name.to_string()));
        }
        let resolved = c
            .uris
            .iter()
            .map(|u| self.resolve_uri(u))
            .collect::<Result<Vec<_>>>()?;
        let urls = resolved
            .iter()
            .map(|u| listing_url(u))
            .collect::<Result<Vec<_>>>()?;
        let mut hive_partitions = None;
        for (url, uri) in urls.iter().zip(&c.uris) {
            let found = self.hive_partitions(&c.name, url, c.format, uri).await?;
            match &hive_partitions {
                None => hive_partitions = Some(found),
                Some(h) if *h != found => {
                    return Err(ddl(format!(
                        "external table {}: the uris have different partition folders ({} vs {})",
                        c.name,
                        h.join("/"),
                        found.join("/")
                    )));
                }
                Some(_) => {}
            }
        }
        let def = ExternalDefinition {
            format: c.format,
            uris: c.uris.clone(),
            resolved,
            hive_partitions: hive_partitions.unwrap_or_default(),
        };
        // Reading the schema checks the files before anything is saved.
        let provider = self
            .listing_table(&c.name, c.format, urls, &def.hive_partitions)
            .await?;
        let columns = provider.schema().fields().len();
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "create_external_table",
                ScanReport::default(),
                format!("would create external table {} ({columns} columns)", c.name),
            ));
        }
        self.lake.put_json(&external_path(&c.name), &def).await?;
        self.register(
            &c.name,
            Arc::new(ExternalTable {
                name: c.name.to_string(),
                inner: provider,
            }),
        )?;
        let partitions = if def.hive_partitions.is_empty() {
            String::new()
        } else {
            format!(", partitioned by {}", def.hive_partitions.join(", "))
        };
        Ok(empty_result(
            "create_external_table",
            ScanReport::default(),
            format!(
                "created external table {} over {} ({columns} columns{partitions})",
                c.name,
                c.uris.join(", ")
            ),
        ))
    }

    pub(crate) async fn create_table(
        &self,
        c: &CreateTable,
        mode: RunMode,
    ) -> Result<StatementResult> {
        if self.external_definition(&c.name).await?.is_some() {
            return Err(if c.or_replace {
                WarehouseError::ReadOnly(c.name.to_string())
            } else {
                WarehouseError::AlreadyExists(c.name.to_string())
            });
        }
        let exists = self.is_delta(&c.name).await?;
        if exists && !c.or_replace {
            if c.if_not_exists {
                return Ok(empty_result(
                    "create_table",
                    ScanReport::default(),
                    format!("{} already exists; nothing changed", c.name),
                ));
            }
            return Err(WarehouseError::AlreadyExists(c.name.to_string()));
        }
        let df = self
            .ctx
            .sql_with_options(&c.query, SQLOptions::new().with_allow_ddl(false))
            .await
            .map_err(WarehouseError::query)?;
        let df = self.prune_by_date(df)?;
        let layout = self.check_layout(c, df.schema())?;
        let mut df = df;
        let mut order = Vec::new();
        if let Some(partition) = &c.partition {
            let column = partition.partition_column();
            if let PartitionSpec::Date { column: source } = partition {
                df = df
                    .with_column(&column, cast(column_expr(source), DataType::Date32))
                    .map_err(WarehouseError::query)?;
            }
            order.push(column);
        }
        order.extend(c.cluster_by.iter().cloned());
        if !order.is_empty() {
            df = df
                .sort(
                    order
                        .iter()
                        .map(|c| SortExpr::new(column_expr(c), true, true))
                        .collect(),
                )
                .map_err(WarehouseError::query)?;
        }
        let query_state = df.clone().into_parts().0;
        let plan = query_state
            .create_physical_plan(df.logical_plan())
            .await
            .map_err(WarehouseError::query)?;
        // The sort spills past its memory budget rather than holding the table.
        let plan = ctas_input::bounded(plan, self.sort_memory()).map_err(WarehouseError::query)?;
        let mut report = scan::planned_files(&plan).report();
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "create_table",
                report,
                format!("would create table {}", c.name),
            ));
        }

        let table = if exists {
            self.open_delta(&c.name).await?
        } else {
            // A new location: build without loading, there is no log to read yet.
            self.delta_table(&c.name)?
        };
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(layout.row_group_rows))
            .build();
        let writer = ParallelCtas {
            table: &table,
            name: c.name.to_string(),
            replace: exists,
            writer_properties: props,
            partition_column: layout.partition_column.clone(),
        };
        let table = if order.is_empty() {
            // No partitions and no order to keep: a writer per partition of the query, one commit.
            let writers = query_state.config().target_partitions();
            writer
                .run(Arc::clone(&plan), query_state.task_ctx(), writers)
                .await?
        } else {
            // Sorted by partition, then cluster columns: written in that order, one commit.
            writer
                .run_sorted(Arc::clone(&plan), query_state.task_ctx())
                .await?
        };
        report.bytes_scanned = scan::bytes_scanned(&plan);
        report.estimated = false;
        self.lake
            .put_json(&delta_path(&c.name).clone().join(LAYOUT_FILE), &layout)
            .await?;
        self.note_partitioning(
            &c.name,
            layout.partition_by.as_deref(),
            layout.partition_column.as_deref(),
        );
        self.register_delta_table(&c.name, &table).await?;

        let (files, rows) = table
            .snapshot()
            .map(|s| {
                s.log_data().iter().fold((0usize, 0usize), |(f, r), file| {
                    (f + 1, r + file.num_records().unwrap_or(0))
                })
            })
            .unwrap_or_default();
        let version = table.version().unwrap_or_default();
        let verb = if exists { "replaced" } else { "created" };
        Ok(empty_result(
            "create_table",
            report,
            format!(
                "{verb} table {}: {rows} rows in {files} files (Delta version {version})",
                c.name
            ),
        ))
    }

    /// Check PARTITION BY and CLUSTER BY against the query's columns.
    fn check_layout(
        &self,
        c: &CreateTable,
        schema: &datafusion::common::DFSchema,
    ) -> Result<TableLayout> {
        let field = |name: &str| {
            schema
                .fields()
                .iter()
                .find(|f| f.name() == name)
                .map(|f| f.data_type().clone())
        };
        let mut layout = TableLayout {
            partition_by: c.partition.as_ref().map(ToString::to_string),
            partition_column: c.partition.as_ref().map(PartitionSpec::partition_column),
            cluster_by: c.cluster_by.clone(),
            row_group_rows: c.row_group_rows.unwrap_or(DEFAULT_ROW_GROUP_ROWS),
        };
        if let Some(partition) = &c.partition {
            let source = partition.source_column();
            let Some(data_type) = field(source) else {
                return Err(ddl(format!(
                    "PARTITION BY {partition} in {}: unknown column '{source}' (the query returns: {})",
                    c.name,
                    columns_of(schema)
                )));
            };
            match partition {
                PartitionSpec::Date { .. } => {
                    if !matches!(
                        data_type,
                        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
                    ) {
                        return Err(ddl(format!(
                            "PARTITION BY {partition} in {}: partitioning needs a date, and {source} is {data_type} \
                             (DATE() takes a TIMESTAMP or DATE column)",
                            c.name
                        )));
                    }
                    let column = partition.partition_column();
                    if field(&column).is_some() {
                        return Err(ddl(format!(
                            "PARTITION BY {partition} in {}: the partition column {column} it adds is already a \
                             column of the query; rename that column",
                            c.name
                        )));
                    }
                }
                PartitionSpec::Column { .. } => match data_type {
                    DataType::Date32 => {}
                    DataType::Timestamp(..) | DataType::Date64 => {
                        return Err(ddl(format!(
                            "PARTITION BY {source} in {}: {source} is {data_type}; partition by its date with \
                             PARTITION BY DATE({source})",
                            c.name
                        )));
                    }
                    other => {
                        return Err(ddl(format!(
                            "PARTITION BY {source} in {}: partitioning needs a date, and {source} is {other} \
                             (use DATE(<timestamp column>) or a DATE column)",
                            c.name
                        )));
                    }
                },
            }
        }
        let mut seen = Vec::new();
        for column in &c.cluster_by {
            if field(column).is_none() {
                return Err(ddl(format!(
                    "CLUSTER BY {} in {}: unknown column '{column}' (the query returns: {})",
                    c.cluster_by.join(", "),
                    c.name,
                    columns_of(schema)
                )));
            }
            if seen.contains(column) {
                return Err(ddl(format!(
                    "CLUSTER BY in {}: column '{column}' is listed twice",
                    c.name
                )));
            }
            seen.push(column.clone());
        }
        layout.cluster_by = seen;
        Ok(layout)
    }

    pub(crate) async fn drop_table(
        &self,
        name: &TableName,
        if_exists: bool,
        mode: RunMode,
    ) -> Result<StatementResult> {
        let Some(info) = self.table_info(name).await? else {
            if if_exists {
                return Ok(empty_result(
                    "drop_table",
                    ScanReport::default(),
                    format!("{name} does not exist; nothing changed"),
                ));
            }
            return Err(not_found(name));
        };
        if info.kind == TableKind::View {
            return Err(ddl(format!("{name} is a view: DROP VIEW {name}")));
        }
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "drop_table",
                ScanReport::default(),
                format!("would drop {} table {name}", info.kind),
            ));
        }
        match info.kind {
            TableKind::View => unreachable!("refused above"),
            TableKind::External => {
                let path = external_path(name);
                self.store()
                    .delete(&path)
                    .await
                    .map_err(self.store_error("deleting", &path))?;
            }
            TableKind::Delta => {
                // The log goes first, so a crash midway leaves files no reader sees rather than a log without data.
                let prefix = delta_path(name);
                let mut objects: Vec<ObjectPath> = self
                    .store()
                    .list(Some(&prefix))
                    .map_ok(|m| m.location)
                    .try_collect()
                    .await
                    .map_err(self.store_error("listing", &prefix))?;
                objects.sort_by_key(|p| !p.as_ref().contains("/_delta_log/"));
                for object in objects {
                    self.store()
                        .delete(&object)
                        .await
                        .map_err(self.store_error("deleting", &object))?;
                }
                if let Some(root) = self.lake.local_root() {
                    let _ = std::fs::remove_dir_all(root.join(prefix.as_ref()));
                }
            }
        }
        self.ctx
            .deregister_table(table_ref(name))
            .map_err(WarehouseError::query)?;
        self.note_partitioning(name, None, None);
        Ok(empty_result(
            "drop_table",
            ScanReport::default(),
            format!("dropped {} table {name}", info.kind),
        ))
    }
}

impl Warehouse {
    /// `DROP VIEW [IF EXISTS] ds.v`.
    pub(crate) async fn drop_view(
        &self,
        name: &TableName,
        if_exists: bool,
        mode: RunMode,
    ) -> Result<StatementResult> {
        match self.table_info(name).await? {
            None if if_exists => {
                return Ok(empty_result(
                    "drop_view",
                    ScanReport::default(),
                    format!("{name} does not exist; nothing changed"),
                ));
            }
            None => return Err(not_found(name)),
            Some(info) if info.kind != TableKind::View => {
                return Err(ddl(format!(
                    "{name} is a {} table, not a view: DROP TABLE {name}",
                    info.kind
                )));
            }
            Some(_) => {}
        }
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "drop_view",
                ScanReport::default(),
                format!("would drop view {name}"),
            ));
        }
        let path = crate::view::view_path(name);
        self.store()
            .delete(&path)
            .await
            .map_err(self.store_error("deleting", &path))?;
        self.ctx
            .deregister_table(table_ref(name))
            .map_err(WarehouseError::query)?;
        Ok(empty_result(
            "drop_view",
            ScanReport::default(),
            format!("dropped view {name}"),
        ))
    }
}

fn column_expr(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Split `dir/sub/*.parquet` into (`dir/sub/`, `*.parquet`): the folder to list and the pattern under it.
fn split_glob(uri: &str) -> (&str, &str) {
    match uri.find(['*', '?', '[']) {
        Some(i) => {
            let cut = uri[..i].rfind('/').map_or(0, |s| s + 1);
            (&uri[..cut], &uri[cut..])
        }
        None => (uri, ""),
    }
}

/// A listing location from a resolved uri (`scheme://.../dir/` plus an optional glob).
fn listing_url(resolved: &str) -> Result<ListingTableUrl> {
    let (base, glob) = split_glob(resolved);
    let url = Url::parse(base).map_err(|e| ddl(format!("uri '{resolved}': {e}")))?;
    let glob = if glob.is_empty() {
        None
    } else {
        Some(
            glob::Pattern::new(glob)
                .map_err(|e| ddl(format!("uri '{resolved}': bad pattern: {e}")))?,
        )
    };
    ListingTableUrl::try_new(url, glob).map_err(WarehouseError::query)
}

/// An external table: reads its files in place and refuses writes.
#[derive(Debug)]
struct ExternalTable {
    name: String,
    inner: Arc<dyn TableProvider>,
}

#[async_trait::async_trait]
impl TableProvider for ExternalTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: datafusion::logical_expr::dml::InsertOp,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        datafusion::common::plan_err!("{}", WarehouseError::ReadOnly(self.name.clone()))
    }
}

/// Delta commits on object storage: delta-rs finds a log store by URL scheme, and its S3 and GCS log stores come
/// with cloud SDK features this build leaves out. The default log store commits with a conditional put
/// (`If-None-Match: *`), which object_store's S3 and GCS clients send, so it is registered for those schemes over
/// the lake's own store.
mod object_store_log {
    use std::sync::{Arc, Once};

    use deltalake::DeltaResult;
    use deltalake::logstore::{
        LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
        logstore_factories,
    };
    use url::Url;

    struct ConditionalPutLogStore;

    impl LogStoreFactory for ConditionalPutLogStore {
        fn with_options(
            &self,
            prefixed_store: ObjectStoreRef,
            root_store: ObjectStoreRef,
            location: &Url,
            options: &StorageConfig,
        ) -> DeltaResult<Arc<dyn LogStore>> {
            Ok(default_logstore(
                prefixed_store,
                root_store,
                location,
                options,
            ))
        }
    }

    /// Register the log store for the object-storage schemes (once per process).
    pub(super) fn register() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let factories = logstore_factories();
            for scheme in ["s3://", "s3a://", "gs://"] {
                let url = Url::parse(scheme).expect("valid scheme URL");
                if !factories.contains_key(&url) {
                    factories.insert(url, Arc::new(ConditionalPutLogStore));
                }
            }
        });
    }
}
