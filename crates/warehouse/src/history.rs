//! A table's history: `DESCRIBE HISTORY`, reading an earlier version (`FOR SYSTEM_TIME AS OF`, `VERSION AS OF`),
//! `RESTORE` to one, and `OPTIMIZE` (compaction, z-order by the cluster columns) that makes the next version.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use datafusion::common::TableReference;
use deltalake::DeltaTable;
use deltalake::operations::optimize::OptimizeType;
use futures::TryStreamExt;

use crate::scan::ScanReport;
use crate::statement::{AsOf, TableName, time_travel};
use crate::{Result, RunMode, StatementResult, Warehouse, WarehouseError, empty_result, result};

/// The schema (dataset) time-travel snapshots are registered under for the statement that reads them.
const SNAPSHOTS: &str = "_as_of";

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")));
    }
    Err(WarehouseError::Syntax(format!(
        "'{text}' is not a timestamp (YYYY-MM-DD HH:MM:SS in UTC, or RFC 3339 with an offset)"
    )))
}

impl Warehouse {
    async fn delta_for_history(&self, name: &TableName) -> Result<DeltaTable> {
        match self.table_info(name).await? {
            None => Err(WarehouseError::NotFound(name.to_string())),
            Some(info) if info.kind != crate::TableKind::Delta => {
                Err(WarehouseError::NotSupported(format!(
                    "history of external table {name}: only warehouse (Delta) tables keep versions"
                )))
            }
            Some(_) => self.open_delta(name).await,
        }
    }

    /// Load `name` as of `at`.
    async fn load_as_of(&self, name: &TableName, at: &AsOf) -> Result<DeltaTable> {
        let mut table = self.delta_for_history(name).await?;
        let latest = table.version().unwrap_or_default();
        let loaded = match at {
            AsOf::Version(v) => {
                let v = u64::try_from(*v).ok().filter(|v| *v <= latest).ok_or_else(|| {
                    WarehouseError::Ddl(format!(
                        "{name} has no version {v}: its versions are 0 to {latest} (DESCRIBE HISTORY {name})"
                    ))
                })?;
                table.load_version(v).await
            }
            AsOf::Timestamp(t) => {
                let at_time = parse_timestamp(t)?;
                let loaded = table.load_with_datetime(at_time).await;
                if loaded.is_ok() {
                    // Before the first commit there is no version to read (delta-rs would return the first).
                    let first: Vec<_> = table
                        .history(Some(1))
                        .try_collect()
                        .await
                        .map_err(WarehouseError::delta(&name))?;
                    let committed = first.first().and_then(|c| c.timestamp);
                    if table.version() == Some(0)
                        && committed.is_some_and(|ms| ms > at_time.timestamp_millis())
                    {
                        return Err(WarehouseError::Ddl(format!(
                            "{name} did not exist at {at} (DESCRIBE HISTORY {name})"
                        )));
                    }
                }
                loaded
            }
        };
        loaded.map_err(|source| match source {
            deltalake::DeltaTableError::NotATable(_)
            | deltalake::DeltaTableError::InvalidVersion(_) => WarehouseError::Ddl(format!(
                "{name} did not exist at {at} (DESCRIBE HISTORY {name})"
            )),
            source => WarehouseError::Delta {
                table: name.to_string(),
                source,
            },
        })?;
        Ok(table)
    }

    /// Replace each `ds.t ... AS OF ...` in a query by a snapshot of that version, registered for this statement.
    pub(crate) async fn resolve_time_travel(&self, sql: &str) -> Result<String> {
        let found = time_travel(sql)?;
        if found.is_empty() {
            return Ok(sql.to_string());
        }
        let mut out = String::with_capacity(sql.len());
        let mut last = 0;
        for tt in found {
            let table = self.load_as_of(&tt.name, &tt.at).await?;
            let version = table.version().unwrap_or_default();
            let snapshot = format!("{}.{}@v{version}", tt.name.dataset, tt.name.table);
            let provider = self.delta_provider(&tt.name, &table).await?;
            self.ensure_dataset(SNAPSHOTS)?;
            let reference = TableReference::partial(SNAPSHOTS, snapshot.as_str());
            self.ctx
                .deregister_table(reference.clone())
                .map_err(WarehouseError::query)?;
            self.ctx
                .register_table(reference, provider)
                .map_err(WarehouseError::query)?;
            out.push_str(&sql[last..tt.start]);
            out.push_str(&format!("{SNAPSHOTS}.\"{snapshot}\""));
            last = tt.end;
        }
        out.push_str(&sql[last..]);
        Ok(out)
    }

    /// `DESCRIBE HISTORY ds.t`: one row per commit, newest first.
    pub(crate) async fn describe_history(&self, name: &TableName) -> Result<StatementResult> {
        let table = self.delta_for_history(name).await?;
        let latest = table.version().unwrap_or_default();
        let commits: Vec<_> = table
            .history(None)
            .try_collect()
            .await
            .map_err(WarehouseError::delta(&name))?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("version", DataType::UInt64, false),
            Field::new("timestamp", DataType::Utf8, true),
            Field::new("operation", DataType::Utf8, true),
            Field::new("parameters", DataType::Utf8, true),
            Field::new("metrics", DataType::Utf8, true),
            Field::new("read_version", DataType::Int64, true),
        ]));
        let n = commits.len() as u64;
        let versions: Vec<u64> = (0..n).map(|i| latest.saturating_sub(i)).collect();
        let timestamps: Vec<Option<String>> = commits
            .iter()
            .map(|c| {
                c.timestamp
                    .and_then(DateTime::from_timestamp_millis)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(UInt64Array::from(versions)),
                Arc::new(StringArray::from(timestamps)),
                Arc::new(StringArray::from(
                    commits
                        .iter()
                        .map(|c| c.operation.clone())
                        .collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    commits
                        .iter()
                        .map(|c| {
                            c.operation_parameters
                                .as_ref()
                                .and_then(|p| serde_json::to_string(p).ok())
                        })
                        .collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    commits
                        .iter()
                        .map(|c| c.info.get("operationMetrics").map(|m| m.to_string()))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    commits
                        .iter()
                        .map(|c| c.read_version.map(|v| v as i64))
                        .collect::<Vec<_>>(),
                )),
            ],
        )
        .map_err(|e| WarehouseError::Internal(e.to_string()))?;
        Ok(result(
            "describe_history",
            schema,
            vec![batch],
            ScanReport::default(),
            Some(format!("{name}: {n} commits, current version {latest}")),
        ))
    }

    /// `OPTIMIZE ds.t [ZORDER BY (...)]`: rewrite small files into large ones, z-ordered by the given columns or
    /// the table's cluster columns, per partition, in one commit.
    pub(crate) async fn optimize(
        &self,
        name: &TableName,
        zorder_by: &[String],
        mode: RunMode,
    ) -> Result<StatementResult> {
        let table = self.delta_for_history(name).await?;
        let layout = self.layout(name).await;
        let columns = if zorder_by.is_empty() {
            layout.cluster_by.clone()
        } else {
            zorder_by.to_vec()
        };
        let provider_schema = self
            .ctx
            .table_provider(crate::catalog::table_ref(name))
            .await
            .map_err(WarehouseError::query)?
            .schema();
        for c in &columns {
            if provider_schema.field_with_name(c).is_err() {
                return Err(WarehouseError::Ddl(format!(
                    "OPTIMIZE {name} ZORDER BY: unknown column '{c}'"
                )));
            }
            if layout.partition_column.as_deref() == Some(c.as_str()) {
                return Err(WarehouseError::Ddl(format!(
                    "OPTIMIZE {name} ZORDER BY: {c} is the partition column; files are already split by it"
                )));
            }
        }
        let how = if columns.is_empty() {
            "compacted".to_string()
        } else {
            format!("z-ordered by {}", columns.join(", "))
        };
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "optimize",
                ScanReport::default(),
                format!("would optimize {name} ({how})"),
            ));
        }
        let optimize_type = if columns.is_empty() {
            OptimizeType::Compact
        } else {
            OptimizeType::ZOrder(columns)
        };
        let (table, metrics) = table
            .optimize()
            .with_type(optimize_type)
            .with_writer_properties(layout.writer_properties())
            .with_session_state(Arc::new(self.ctx.state()))
            .await
            .map_err(WarehouseError::delta(&name))?;
        self.register_delta_table(name, &table).await?;
        let version = table.version().unwrap_or_default();
        Ok(empty_result(
            "optimize",
            ScanReport::default(),
            format!(
                "optimized {name} ({how}): {} files rewritten into {} in {} partitions (Delta version {version})",
                metrics.num_files_removed, metrics.num_files_added, metrics.partitions_optimized
            ),
        ))
    }

    /// `RESTORE TABLE ds.t TO VERSION AS OF n`: a new commit whose data is that version's.
    pub(crate) async fn restore(
        &self,
        name: &TableName,
        to: &AsOf,
        mode: RunMode,
    ) -> Result<StatementResult> {
        // Loading the target version first checks that it exists and gives a precise error when not.
        let target = self.load_as_of(name, to).await?;
        let restored_version = target.version().unwrap_or_default();
        if mode == RunMode::DryRun {
            return Ok(empty_result(
                "restore",
                ScanReport::default(),
                format!("would restore {name} to version {restored_version}"),
            ));
        }
        let table = self.open_delta(name).await?;
        let (table, metrics) = table
            .restore()
            .with_version_to_restore(restored_version)
            .await
            .map_err(WarehouseError::delta(&name))?;
        self.register_delta_table(name, &table).await?;
        let version = table.version().unwrap_or_default();
        Ok(empty_result(
            "restore",
            ScanReport::default(),
            format!(
                "restored {name} to version {restored_version}: {} files back, {} removed (Delta version {version})",
                metrics.num_restored_file, metrics.num_removed_file
            ),
        ))
    }
}
