//! `type: ingest` — loads TLC files into the lake or PostgreSQL with the same code as `tripline ingest`.
//!
//! Inputs: `source` or `sources` (files, globs or http(s) URLs; relative to the project), `kind`, `month`
//! (optional, YYYY-MM), `to` (`lake` (default), a lake root, `postgres` for the configured server, or a
//! `postgres://` URL), `table` and `mode` (`append` | `replace` | `merge`; PostgreSQL only). Output: the row account
//! per source and in total: `{kind, target, read, written, quarantined, failed, sources: [...], summary}`. A source
//! that fails fails the task, after the others were loaded: retryable when an outside system failed, not when the
//! data or the inputs are wrong.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tripline_core::{TripKind, YearMonth};
use tripline_flow::task::parse_inputs;
use tripline_flow::{Task, TaskContext, TaskFailure};
use tripline_ingest::SourceLocation;
use tripline_ingest::sink::postgres::LoadMode;

use super::{TaskEnv, TaskEvent, check_keys, one_or_many, task_failure};
use crate::ingest::{Target, load};

/// The `ingest` task type.
#[derive(Debug, Clone)]
pub struct IngestTask {
    env: Arc<TaskEnv>,
}

impl IngestTask {
    /// The task type over a project.
    pub fn new(env: Arc<TaskEnv>) -> Self {
        Self { env }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestInputs {
    #[serde(default, deserialize_with = "one_or_many")]
    source: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    sources: Vec<String>,
    kind: String,
    #[serde(default)]
    month: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    mode: Option<String>,
}

const KEYS: &[&str] = &["source", "sources", "kind", "month", "to", "table", "mode"];

#[async_trait]
impl Task for IngestTask {
    fn type_name(&self) -> &str {
        "ingest"
    }

    fn check(&self, inputs: &Json) -> Result<(), String> {
        check_keys(inputs, KEYS, &["source|sources", "kind"])
    }

    async fn run(&self, ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        let inputs: IngestInputs = parse_inputs(&inputs).map_err(TaskFailure::fatal)?;
        let kind: TripKind = inputs
            .kind
            .parse()
            .map_err(|e| TaskFailure::fatal(format!("kind: {e}")))?;
        let month: Option<YearMonth> = match inputs.month.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(m) => Some(
                m.parse()
                    .map_err(|e| TaskFailure::fatal(format!("month: {e}")))?,
            ),
        };
        let mode: LoadMode = match inputs.mode.as_deref() {
            None => LoadMode::Append,
            Some(m) => m
                .parse()
                .map_err(|e| TaskFailure::fatal(format!("mode: {e}")))?,
        };
        let cli = self.env.context();
        let target = match inputs.to.as_deref() {
            None | Some("lake") => Target::resolve(&cli, None),
            Some(to) => Target::resolve(&cli, Some(to)),
        }
        .map_err(task_failure)?;
        let mut sources = Vec::new();
        for spec in inputs.source.iter().chain(&inputs.sources) {
            let spec = if spec.contains("://") {
                spec.clone()
            } else {
                ctx.resolve_path(spec).display().to_string()
            };
            sources.extend(
                SourceLocation::resolve(&spec)
                    .map_err(|e| task_failure(crate::Failure::from_error(e)))?,
            );
        }
        if sources.is_empty() {
            return Err(TaskFailure::fatal("no source given"));
        }
        let target_name = match &target {
            Target::Lake(root) => format!("the lake ({root})"),
            Target::Postgres(url) => format!("PostgreSQL {}", redact(url)),
        };
        ctx.log.info(format!(
            "loading {} source(s) of kind {kind} into {target_name}",
            sources.len()
        ));
        self.env.emit(TaskEvent::Loading {
            kind: kind.to_string(),
            target: match &target {
                Target::Lake(_) => "the lake".into(),
                Target::Postgres(_) => "PostgreSQL".into(),
            },
        });
        let report = load(
            &cli,
            kind,
            &sources,
            &target,
            inputs.table.as_deref(),
            mode,
            month,
        )
        .await
        .map_err(task_failure)?;
        let mut per_source = Vec::new();
        for s in &report.sources {
            ctx.log.info(match (&s.committed, &s.error) {
                (Some(c), _) => format!("{}: {} -> {}", s.source, s.account, c.target),
                (None, Some(e)) => format!("{}: FAILED: {e}", s.source),
                (None, None) => format!("{}: {}", s.source, s.account),
            });
            per_source.push(json!({
                "source": s.source,
                "read": s.account.read,
                "written": s.account.written,
                "quarantined": s.account.quarantined,
                "target": s.committed.as_ref().map(|c| c.target.clone()),
                "merged_new": s.committed.as_ref().and_then(|c| c.merged_new),
                "merged_existing": s.committed.as_ref().and_then(|c| c.merged_existing),
                "quarantine_file": s.quarantine_file.as_ref().map(|p| p.display().to_string()),
                "error": s.error,
            }));
        }
        let summary = format!(
            "{}  ({} source{}, {} failed)",
            report.total,
            report.sources.len(),
            if report.sources.len() == 1 { "" } else { "s" },
            report.failed
        );
        let output = json!({
            "kind": kind.to_string(),
            "target": target_name,
            "read": report.total.read,
            "written": report.total.written,
            "quarantined": report.total.quarantined,
            "failed": report.failed,
            "sources": per_source,
            "summary": summary,
        });
        let finished = crate::ingest::finish(&report);
        self.env.emit(TaskEvent::Loaded(Box::new(report)));
        finished.map_err(task_failure)?;
        Ok(output)
    }
}

/// A PostgreSQL URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
