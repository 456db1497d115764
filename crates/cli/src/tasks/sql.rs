//! `type: sql` — runs SQL in the warehouse over the lake (DataFusion with BigQuery-style DDL) or in PostgreSQL.
//!
//! Inputs: `sql` (one or more `;`-separated statements) or `file` (relative to the project), `on` (`warehouse`
//! (default), `postgres` for the configured server, or a `postgres://` URL), `dry_run` (warehouse only: plan and
//! report the bytes that would be read). Output: `{statements: [{kind, rows, bytes_scanned, files_read, seconds,
//! message, result}], bytes_scanned, summary}` where `result` holds up to 100 result rows as JSON objects, so a
//! downstream task can use `{{ tasks.<id>.output.statements[0].result[0].n }}`. The statements run in order and the
//! first failure fails the task (statements before it stay done).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tripline_flow::task::parse_inputs;
use tripline_flow::{Task, TaskContext, TaskFailure};
use tripline_warehouse::{RunMode, Warehouse, statement::split_statements};

use super::{TaskEnv, bool_or_string, check_keys, task_failure};
use crate::Failure;

/// Result rows kept in a task's output per statement.
const RESULT_ROWS: usize = 100;

/// The `sql` task type.
#[derive(Debug, Clone)]
pub struct SqlTask {
    env: Arc<TaskEnv>,
}

impl SqlTask {
    /// The task type over a project.
    pub fn new(env: Arc<TaskEnv>) -> Self {
        Self { env }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlInputs {
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    on: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    dry_run: Option<bool>,
}

#[async_trait]
impl Task for SqlTask {
    fn type_name(&self) -> &str {
        "sql"
    }

    fn check(&self, inputs: &Json) -> Result<(), String> {
        check_keys(inputs, &["sql", "file", "on", "dry_run"], &["sql|file"])?;
        if inputs.get("sql").is_some() && inputs.get("file").is_some() {
            return Err("give `sql` or `file`, not both".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        let inputs: SqlInputs = parse_inputs(&inputs).map_err(TaskFailure::fatal)?;
        let script = match (&inputs.sql, &inputs.file) {
            (Some(sql), None) => sql.clone(),
            (None, Some(file)) => {
                let path = ctx.resolve_path(file);
                std::fs::read_to_string(&path)
                    .map_err(|e| TaskFailure::fatal(format!("{}: {e}", path.display())))?
            }
            _ => return Err(TaskFailure::fatal("give `sql` or `file`")),
        };
        let statements =
            split_statements(&script).map_err(|e| task_failure(Failure::from_error(e)))?;
        if statements.is_empty() {
            return Err(TaskFailure::fatal("no SQL statement given"));
        }
        let dry_run = inputs.dry_run.unwrap_or(false);
        let results = match inputs.on.as_deref().unwrap_or("warehouse") {
            "warehouse" => self.on_warehouse(ctx, &statements, dry_run).await?,
            target => {
                if dry_run {
                    return Err(TaskFailure::fatal(
                        "not supported yet: dry_run on PostgreSQL (it applies to the warehouse)",
                    ));
                }
                let url = match target {
                    "postgres" => self.env.config.postgres.url.clone().ok_or_else(|| {
                        TaskFailure::fatal(
                            "on: postgres needs [postgres] url in tripline.toml or TRIPLINE_POSTGRES_URL",
                        )
                    })?,
                    u if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                        u.to_string()
                    }
                    other => {
                        return Err(TaskFailure::fatal(format!(
                            "on: `{other}` (use warehouse, postgres or a postgres:// URL)"
                        )));
                    }
                };
                on_postgres(ctx, &url, &statements).await?
            }
        };
        let bytes: u64 = results
            .iter()
            .filter_map(|r| r["bytes_scanned"].as_u64())
            .sum();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for r in &results {
            *kinds
                .entry(r["kind"].as_str().unwrap_or("statement").to_string())
                .or_default() += 1;
        }
        let kinds: Vec<String> = kinds.into_iter().map(|(k, n)| format!("{n} {k}")).collect();
        Ok(json!({
            "summary": format!("{} ({} bytes scanned)", kinds.join(", "), bytes),
            "bytes_scanned": bytes,
            "statements": results,
        }))
    }
}

impl SqlTask {
    async fn on_warehouse(
        &self,
        ctx: &TaskContext,
        statements: &[String],
        dry_run: bool,
    ) -> Result<Vec<Json>, TaskFailure> {
        let warehouse = Warehouse::open(&self.env.config.lake.root, &self.env.project_dir)
            .await
            .map_err(|e| task_failure(Failure::from_error(e)))?;
        let mode = if dry_run {
            RunMode::DryRun
        } else {
            RunMode::Run
        };
        let mut out = Vec::new();
        for sql in statements {
            ctx.log.info(format!("warehouse> {}", one_line(sql)));
            let r = warehouse
                .execute(sql, mode)
                .await
                .map_err(|e| task_failure(Failure::from_error(e)))?;
            let rows = r.row_count();
            let line = match &r.message {
                Some(m) => m.clone(),
                None => format!("{rows} rows"),
            };
            ctx.log.info(format!(
                "{line} ({} bytes {}, {} files, {:.2} s)",
                r.scan.bytes_scanned,
                if r.dry_run { "to scan" } else { "scanned" },
                r.scan.files_read,
                r.seconds
            ));
            out.push(json!({
                "kind": r.kind,
                "rows": rows,
                "bytes_scanned": r.scan.bytes_scanned,
                "files_read": r.scan.files_read,
                "seconds": r.seconds,
                "message": r.message,
                "dry_run": r.dry_run,
                "result": rows_json(&r.batches),
            }));
        }
        Ok(out)
    }
}

async fn on_postgres(
    _ctx: &TaskContext,
    _url: &str,
    _statements: &[String],
) -> Result<Vec<Json>, TaskFailure> {
    Err(TaskFailure::fatal(
        "not available yet: SQL tasks on PostgreSQL (they need the tripline-pg crate)",
    ))
}

/// Up to [`RESULT_ROWS`] rows as JSON objects (null when the conversion fails, which the log then says).
fn rows_json(batches: &[RecordBatch]) -> Json {
    let mut kept = Vec::new();
    let mut left = RESULT_ROWS;
    for b in batches {
        if left == 0 {
            break;
        }
        let n = b.num_rows().min(left);
        kept.push(b.slice(0, n));
        left -= n;
    }
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for b in &kept {
        if writer.write(b).is_err() {
            return Json::Null;
        }
    }
    if writer.finish().is_err() {
        return Json::Null;
    }
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Json::Array(Vec::new());
    }
    serde_json::from_slice(&bytes).unwrap_or(Json::Null)
}

fn one_line(sql: &str) -> String {
    let s: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 160 {
        format!("{}...", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}
