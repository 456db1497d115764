//! `type: sql` — runs SQL in the warehouse over the lake (DataFusion with BigQuery-style DDL) or in PostgreSQL,
//! through the same engine as `tripline sql` (PostgreSQL via tripline-pg).
//!
//! Inputs: `sql` (one or more `;`-separated statements) or `file` (relative to the project); where they run: `on`
//! (`warehouse` (default), `postgres` for the project's server (`[postgres] url` / `TRIPLINE_POSTGRES_URL`), or a
//! `postgres://` URL), or `postgres:` / `url:` (a `postgres://` URL; `postgres:` also takes `postgres`, `default` or
//! `true` for the project's server); `transaction` (PostgreSQL: all statements in one transaction, rolled back
//! whole when one fails; default false, each statement commits on its own as in psql); `dry_run` (warehouse only:
//! plan and report the bytes that would be read). Output: `{statements: [{kind, command, rows, rows_affected,
//! bytes_scanned, files_read, seconds, message, result}], rows_affected, bytes_scanned, summary}` where `result`
//! holds up to 100 result rows as JSON objects, so a downstream task can use
//! `{{ tasks.<id>.output.statements[0].result[0].n }}`. The statements run in order and the first failure fails
//! the task (statements before it stay done, unless `transaction` is set).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tripline_flow::task::parse_inputs;
use tripline_flow::{Task, TaskContext, TaskFailure};
use tripline_warehouse::{RunMode, statement::split_statements};

use super::{TaskEnv, bool_or_string, check_keys, task_failure};
use crate::Failure;
use crate::sql::Engine;

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
    #[serde(default)]
    postgres: Option<Json>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    dry_run: Option<bool>,
    #[serde(default, deserialize_with = "bool_or_string")]
    transaction: Option<bool>,
}

const KEYS: &[&str] = &[
    "sql",
    "file",
    "on",
    "postgres",
    "url",
    "dry_run",
    "transaction",
];

/// Where a task's statements run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Warehouse,
    /// The project's configured server.
    ProjectPostgres,
    /// A URL.
    Postgres(String),
}

fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl SqlInputs {
    fn target(&self) -> Result<Target, TaskFailure> {
        let given = [
            self.on.is_some(),
            self.postgres.is_some(),
            self.url.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(TaskFailure::fatal("give one of `on`, `postgres` and `url`"));
        }
        if let Some(on) = &self.on {
            return match on.trim() {
                "" | "warehouse" => Ok(Target::Warehouse),
                "postgres" => Ok(Target::ProjectPostgres),
                u if is_postgres_url(u) => Ok(Target::Postgres(u.to_string())),
                other => Err(TaskFailure::fatal(format!(
                    "on: `{other}` (use warehouse, postgres or a postgres:// URL)"
                ))),
            };
        }
        if let Some(pg) = &self.postgres {
            return match pg {
                Json::Bool(true) => Ok(Target::ProjectPostgres),
                Json::String(s) => match s.trim() {
                    "" | "postgres" | "default" | "true" => Ok(Target::ProjectPostgres),
                    u if is_postgres_url(u) => Ok(Target::Postgres(u.to_string())),
                    other => Err(TaskFailure::fatal(format!(
                        "postgres: `{other}` (use a postgres:// URL, or `postgres` for the project's server)"
                    ))),
                },
                other => Err(TaskFailure::fatal(format!(
                    "postgres: expected a postgres:// URL, got {other}"
                ))),
            };
        }
        if let Some(url) = &self.url {
            return if is_postgres_url(url.trim()) {
                Ok(Target::Postgres(url.trim().to_string()))
            } else {
                Err(TaskFailure::fatal(format!(
                    "url: `{url}` (expected a postgres:// URL)"
                )))
            };
        }
        Ok(Target::Warehouse)
    }
}

/// Whether a script uses PostgreSQL's dollar quoting (`$$ ... $$`, `$body$ ... $body$`), which the statement
/// splitter does not know: such a script is sent to the server whole.
fn has_dollar_quotes(script: &str) -> bool {
    let b = script.as_bytes();
    (0..b.len()).any(|i| {
        if b[i] != b'$' || b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return false; // not a dollar, or a `$1` parameter
        }
        let tag = b[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count();
        b.get(i + 1 + tag) == Some(&b'$')
    })
}

/// The statement's first keyword, upper-cased (`INSERT`, `CREATE`, `WITH`): what PostgreSQL's command tag starts
/// with.
fn command_word(sql: &str) -> String {
    let mut rest = sql.trim_start();
    // Leading comments.
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    rest.split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// Whether a command changes rows (its rows-affected count is worth reporting).
fn is_dml(command: &str) -> bool {
    matches!(command, "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY")
}

#[async_trait]
impl Task for SqlTask {
    fn type_name(&self) -> &str {
        "sql"
    }

    fn check(&self, inputs: &Json) -> Result<(), String> {
        check_keys(inputs, KEYS, &["sql|file"])?;
        if inputs.get("sql").is_some() && inputs.get("file").is_some() {
            return Err("give `sql` or `file`, not both".into());
        }
        let targets = ["on", "postgres", "url"]
            .iter()
            .filter(|k| inputs.get(**k).is_some())
            .count();
        if targets > 1 {
            return Err("give one of `on`, `postgres` and `url`".into());
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
        let target = inputs.target()?;
        let dry_run = inputs.dry_run.unwrap_or(false);
        let transaction = inputs.transaction.unwrap_or(false);
        if target != Target::Warehouse && dry_run {
            return Err(TaskFailure::fatal(
                "not supported yet: dry_run on PostgreSQL (it applies to the warehouse; EXPLAIN shows PostgreSQL's plan)",
            ));
        }
        if target == Target::Warehouse && transaction {
            return Err(TaskFailure::fatal(
                "transaction applies to PostgreSQL; in the warehouse every statement is its own atomic commit",
            ));
        }
        let statements = if target != Target::Warehouse && has_dollar_quotes(&script) {
            vec![script.trim().to_string()]
        } else {
            split_statements(&script).map_err(|e| task_failure(Failure::from_error(e)))?
        };
        if statements.is_empty() {
            return Err(TaskFailure::fatal("no SQL statement given"));
        }
        let cli = self.env.context();
        let (engine, prompt) = match &target {
            Target::Warehouse => (Engine::open(&cli, None).await, "warehouse".to_string()),
            Target::ProjectPostgres => (Engine::open(&cli, Some("")).await, "postgres".into()),
            Target::Postgres(url) => (Engine::open(&cli, Some(url)).await, "postgres".into()),
        };
        let engine = engine.map_err(|f| {
            if target == Target::ProjectPostgres && f.usage {
                TaskFailure::fatal(
                    "PostgreSQL needs a server: give `postgres: postgres://...`, or set [postgres] url in \
                     tripline.toml or TRIPLINE_POSTGRES_URL",
                )
            } else {
                task_failure(f)
            }
        })?;
        if let Some(server) = engine.server() {
            ctx.log.info(format!("connected to PostgreSQL {server}"));
        }
        let mode = if dry_run {
            RunMode::DryRun
        } else {
            RunMode::Run
        };
        if transaction {
            engine.execute("BEGIN", mode).await.map_err(task_failure)?;
            ctx.log.info(format!("{prompt}> BEGIN"));
        }
        let mut results = Vec::new();
        for sql in &statements {
            ctx.log.info(format!("{prompt}> {}", one_line(sql)));
            let r = match engine.execute(sql, mode).await {
                Ok(r) => r,
                Err(f) => {
                    if transaction {
                        let _ = engine.execute("ROLLBACK", mode).await;
                        ctx.log.info("ROLLBACK: no statement of this task is kept");
                    }
                    return Err(task_failure(f));
                }
            };
            let rows = r.row_count();
            let command = command_word(sql);
            let line = match (&r.message, engine.reports_scan()) {
                (Some(m), true) => m.clone(),
                (_, true) => format!("{rows} rows"),
                // PostgreSQL: its command tag, as psql prints it.
                (_, false) if r.kind == "query" => format!("{rows} rows"),
                (_, false) if is_dml(&command) => {
                    format!("{command} {}", r.rows_affected.unwrap_or(0))
                }
                (_, false) => command.clone(),
            };
            if engine.reports_scan() {
                ctx.log.info(format!(
                    "{line} ({} bytes {}, {} files, {:.2} s)",
                    r.scan.bytes_scanned,
                    if r.dry_run { "to scan" } else { "scanned" },
                    r.scan.files_read,
                    r.seconds
                ));
            } else {
                ctx.log.info(format!("{line} ({:.2} s)", r.seconds));
            }
            results.push(json!({
                "kind": r.kind,
                "command": command,
                "rows": rows,
                "rows_affected": r.rows_affected,
                "bytes_scanned": r.scan.bytes_scanned,
                "files_read": r.scan.files_read,
                "seconds": r.seconds,
                "message": r.message,
                "dry_run": r.dry_run,
                "result": rows_json(&r.batches),
            }));
        }
        if transaction {
            engine.execute("COMMIT", mode).await.map_err(task_failure)?;
            ctx.log.info(format!("{prompt}> COMMIT"));
        }
        let bytes: u64 = results
            .iter()
            .filter_map(|r| r["bytes_scanned"].as_u64())
            .sum();
        let affected: u64 = results
            .iter()
            .filter_map(|r| r["rows_affected"].as_u64())
            .sum();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for r in &results {
            *kinds
                .entry(r["kind"].as_str().unwrap_or("statement").to_string())
                .or_default() += 1;
        }
        let kinds: Vec<String> = kinds.into_iter().map(|(k, n)| format!("{n} {k}")).collect();
        let summary = if engine.reports_scan() {
            format!("{} ({} bytes scanned)", kinds.join(", "), bytes)
        } else {
            let changes: Vec<String> = results
                .iter()
                .filter_map(|r| {
                    let command = r["command"].as_str()?;
                    is_dml(command).then(|| format!("{command} {}", r["rows_affected"]))
                })
                .collect();
            format!(
                "{} statement{} on PostgreSQL{}{}{}",
                results.len(),
                if results.len() == 1 { "" } else { "s" },
                if transaction {
                    " in one transaction"
                } else {
                    ""
                },
                if changes.is_empty() { "" } else { ": " },
                changes.join(", ")
            )
        };
        Ok(json!({
            "summary": summary,
            "bytes_scanned": bytes,
            "rows_affected": affected,
            "statements": results,
        }))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_words_skip_leading_comments() {
        assert_eq!(command_word("  insert into t values (1)"), "INSERT");
        assert_eq!(
            command_word("-- load\n/* x */ UPDATE t SET a = 1"),
            "UPDATE"
        );
        assert_eq!(command_word("CREATE TABLE t (a int)"), "CREATE");
    }

    #[test]
    fn dollar_quotes_are_found_and_parameters_are_not() {
        assert!(has_dollar_quotes(
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql"
        ));
        assert!(has_dollar_quotes("DO $body$ BEGIN NULL; END $body$"));
        assert!(!has_dollar_quotes("SELECT $1, $2; SELECT 'a$'"));
        assert!(!has_dollar_quotes("SELECT 1; SELECT 2"));
    }

    #[test]
    fn the_target_comes_from_one_of_on_postgres_and_url() {
        let inputs = |v: Json| -> SqlInputs { parse_inputs(&v).unwrap() };
        assert_eq!(
            inputs(json!({"sql": "x"})).target().unwrap(),
            Target::Warehouse
        );
        assert_eq!(
            inputs(json!({"sql": "x", "on": "postgres"}))
                .target()
                .unwrap(),
            Target::ProjectPostgres
        );
        assert_eq!(
            inputs(json!({"sql": "x", "postgres": "postgres"}))
                .target()
                .unwrap(),
            Target::ProjectPostgres
        );
        assert_eq!(
            inputs(json!({"sql": "x", "postgres": true}))
                .target()
                .unwrap(),
            Target::ProjectPostgres
        );
        assert_eq!(
            inputs(json!({"sql": "x", "url": "postgres://u@h/db"}))
                .target()
                .unwrap(),
            Target::Postgres("postgres://u@h/db".into())
        );
        assert!(
            inputs(json!({"sql": "x", "url": "mysql://h"}))
                .target()
                .is_err()
        );
        assert!(
            inputs(json!({"sql": "x", "on": "warehouse", "url": "postgres://h/db"}))
                .target()
                .is_err()
        );
    }
}
