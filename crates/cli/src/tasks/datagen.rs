//! `type: datagen` — one month of TLC trips as a file, offline: this is how the course's web-to-lake flow runs
//! with no internet. With `url`, the real file is downloaded when its server can be reached, and generated only when
//! it cannot (no DNS answer, no TCP connection within 20 s); once connected, an HTTP error such as 404 fails the task
//! (made-up data must never stand in for a month that does not exist) and a broken transfer is retryable.
//!
//! Inputs: `kind`, `month` (YYYY-MM), `rows` (default 100000), `format` (`csv` | `csv.gz` (default) | `parquet`),
//! `path` (default `data/<kind>_tripdata_<month>.<ext>`, relative to the project), `seed` (default 42),
//! `dirty_rate` (default 0), `url` (optional), `keep_existing` (default false: reuse a file already there). Output:
//! `{path, origin: datagen|download|existing, rows, dirty_rows, bytes, summary}`. The file is written under a
//! temporary name and renamed, so a killed attempt never leaves half a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tripline_core::{TripKind, YearMonth};
use tripline_datagen::OutputFormat;
use tripline_flow::task::parse_inputs;
use tripline_flow::tasks::download::DownloadTask;
use tripline_flow::{Task, TaskContext, TaskFailure};

use super::{TaskEnv, TaskEvent, bool_or_string, check_keys, int_or_string};

/// How long connecting to the download server may take before the month is generated instead.
const REACH_TIMEOUT: Duration = Duration::from_secs(20);

/// The `datagen` task type.
#[derive(Debug, Clone)]
pub struct DatagenTask {
    env: Arc<TaskEnv>,
}

impl DatagenTask {
    /// The task type over a project.
    pub fn new(env: Arc<TaskEnv>) -> Self {
        Self { env }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatagenInputs {
    kind: String,
    month: String,
    #[serde(default, deserialize_with = "int_or_string")]
    rows: Option<u64>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default, deserialize_with = "int_or_string")]
    seed: Option<u64>,
    #[serde(default)]
    dirty_rate: Option<Json>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    keep_existing: Option<bool>,
}

const KEYS: &[&str] = &[
    "kind",
    "month",
    "rows",
    "format",
    "path",
    "seed",
    "dirty_rate",
    "url",
    "keep_existing",
];

#[async_trait]
impl Task for DatagenTask {
    fn type_name(&self) -> &str {
        "datagen"
    }

    fn check(&self, inputs: &Json) -> Result<(), String> {
        check_keys(inputs, KEYS, &["kind", "month"])
    }

    async fn run(&self, ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        let inputs: DatagenInputs = parse_inputs(&inputs).map_err(TaskFailure::fatal)?;
        let kind: TripKind = inputs
            .kind
            .parse()
            .map_err(|e| TaskFailure::fatal(format!("kind: {e}")))?;
        let month: YearMonth = inputs
            .month
            .trim()
            .parse()
            .map_err(|e| TaskFailure::fatal(format!("month: {e}")))?;
        let format: OutputFormat = inputs
            .format
            .as_deref()
            .unwrap_or("csv.gz")
            .parse()
            .map_err(|e| TaskFailure::fatal(format!("format: {e}")))?;
        let dirty_rate = match &inputs.dirty_rate {
            None => 0.0,
            Some(Json::Number(n)) => n.as_f64().unwrap_or(0.0),
            Some(Json::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| TaskFailure::fatal(format!("dirty_rate: `{s}` is not a number")))?,
            Some(other) => {
                return Err(TaskFailure::fatal(format!(
                    "dirty_rate: `{other}` is not a number"
                )));
            }
        };
        let rows = inputs.rows.unwrap_or(100_000);
        let path = match &inputs.path {
            Some(p) => ctx.resolve_path(p),
            None => ctx.resolve_path(&format!(
                "data/{kind}_tripdata_{month}.{}",
                format.extension()
            )),
        };
        if inputs.keep_existing.unwrap_or(false) && path.exists() {
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            ctx.log
                .info(format!("{} exists; kept as it is", path.display()));
            return Ok(json!({
                "path": path.display().to_string(),
                "origin": "existing",
                "bytes": bytes,
                "summary": format!("kept {}", path.display()),
            }));
        }

        if let Some(url) = &inputs.url
            && let Some(bytes) = download(ctx, url, &path).await?
        {
            return Ok(json!({
                "path": path.display().to_string(),
                "origin": "download",
                "url": url,
                "bytes": bytes,
                "summary": format!("downloaded {url} ({bytes} bytes)"),
            }));
        }

        self.env.emit(TaskEvent::Generating {
            kind: kind.to_string(),
            month: month.to_string(),
            rows,
            path: path.clone(),
        });
        ctx.log.info(format!(
            "generating {rows} {kind} trips for {month} -> {}",
            path.display()
        ));
        let seed = inputs.seed.unwrap_or(42);
        let target = path.clone();
        let report = tokio::task::spawn_blocking(move || {
            generate(kind, month, rows, format, &target, seed, dirty_rate)
        })
        .await
        .map_err(|e| TaskFailure::fatal(format!("datagen thread: {e}")))??;
        Ok(json!({
            "path": report.path.display().to_string(),
            "origin": "datagen",
            "rows": report.rows,
            "dirty_rows": report.dirty_rows,
            "bytes": report.bytes,
            "summary": format!("generated {} {kind} rows for {month} ({} bytes)", report.rows, report.bytes),
        }))
    }
}

/// Writes the file under a temporary name in the same directory, then renames it into place.
fn generate(
    kind: TripKind,
    month: YearMonth,
    rows: u64,
    format: OutputFormat,
    path: &Path,
    seed: u64,
    dirty_rate: f64,
) -> Result<tripline_datagen::DatagenReport, TaskFailure> {
    let partial = partial_path(path);
    let mut report =
        crate::datagen::generate(kind, month, rows, format, &partial, seed, dirty_rate)
            .map_err(super::task_failure)?;
    std::fs::rename(&partial, path).map_err(|e| {
        TaskFailure::retryable(format!(
            "renaming {} to {}: {e}",
            partial.display(),
            path.display()
        ))
    })?;
    report.path = path.to_path_buf();
    Ok(report)
}

fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// Downloads with the engine's `download` task type when the server can be reached at all; `Ok(None)` when it
/// cannot (no DNS answer, no TCP connection within [`REACH_TIMEOUT`]), so the caller generates the month instead.
async fn download(ctx: &TaskContext, url: &str, path: &Path) -> Result<Option<u64>, TaskFailure> {
    let Some(host) = host_and_port(url) else {
        return Err(TaskFailure::fatal(format!("`{url}` is not an http(s) URL")));
    };
    let probe = host.clone();
    let reachable = tokio::task::spawn_blocking(move || reach(&probe))
        .await
        .map_err(|e| TaskFailure::fatal(format!("probe thread: {e}")))?;
    if let Err(why) = reachable {
        ctx.log.info(format!(
            "{host} cannot be reached ({why}); generating the month instead"
        ));
        return Ok(None);
    }
    let out = DownloadTask
        .run(ctx, json!({"url": url, "path": path.display().to_string()}))
        .await?;
    Ok(Some(out["bytes"].as_u64().unwrap_or(0)))
}

/// `host:port` of an http(s) URL.
fn host_and_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    Some(if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    })
}

/// Resolves the host and opens (then closes) one TCP connection.
fn reach(host_port: &str) -> Result<(), String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let addrs: Vec<_> = host_port
        .to_socket_addrs()
        .map_err(|e| format!("no address: {e}"))?
        .collect();
    let mut last = "no address".to_string();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, REACH_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}
