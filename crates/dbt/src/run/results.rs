//! What a run did, node by node: the statuses dbt reports, the console lines dbt prints (for the CLI to print),
//! and `target/run_results.json`.

use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use crate::error::{DbtError, Result};
use crate::node::{Node, ResourceType};

/// The status of one node, as dbt names it in `run_results.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// A model, seed or snapshot was built.
    Success,
    /// A node failed to build, or a test failed to run.
    Error,
    /// Not run because an upstream node failed (or `--fail-fast` stopped the run).
    Skipped,
    /// A test found no failing rows (or fewer than its thresholds).
    Pass,
    /// A test of severity error crossed `error_if`.
    Fail,
    /// A test crossed `warn_if` (or `error_if` with severity warn).
    Warn,
}

impl NodeStatus {
    /// The name in `run_results.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Skipped => "skipped",
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Warn => "warn",
        }
    }

    /// Whether the node's children must be skipped.
    pub fn blocks_children(self) -> bool {
        matches!(self, Self::Error | Self::Fail | Self::Skipped)
    }

    /// Whether the run fails (exit code 1) because of this node.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Error | Self::Fail)
    }
}

/// The result of one node.
#[derive(Debug, Clone)]
pub struct NodeResult {
    /// The node.
    pub unique_id: String,
    /// What happened.
    pub status: NodeStatus,
    /// dbt's `message`: the database's response (`SELECT 5`), the error, or the number of failing rows.
    pub message: String,
    /// Failing rows of a test.
    pub failures: Option<u64>,
    /// Rows the database reported for the main statement.
    pub rows_affected: Option<u64>,
    /// Seconds from start to end.
    pub execution_time: f64,
    /// `Thread-N`.
    pub thread_id: String,
    /// When compilation started and ended, when execution started and ended (RFC 3339).
    pub timing: Vec<(String, String, String)>,
    /// The compiled SQL.
    pub compiled_code: Option<String>,
    /// The relation as SQL.
    pub relation_name: Option<String>,
}

impl NodeResult {
    /// A result with only a status and message (skips, failures before any timing).
    pub fn bare(unique_id: &str, status: NodeStatus, message: impl Into<String>) -> Self {
        Self {
            unique_id: unique_id.to_string(),
            status,
            message: message.into(),
            failures: None,
            rows_affected: None,
            execution_time: 0.0,
            thread_id: "Thread-1".into(),
            timing: Vec::new(),
            compiled_code: None,
            relation_name: None,
        }
    }
}

/// Everything a run did.
#[derive(Debug, Clone, Default)]
pub struct RunResults {
    /// One entry per node, in completion order.
    pub results: Vec<NodeResult>,
    /// Seconds for the whole run.
    pub elapsed: f64,
}

impl RunResults {
    /// Whether any node failed (dbt exits with 1).
    pub fn failed(&self) -> bool {
        self.results.iter().any(|r| r.status.is_failure())
    }

    /// Count of results with a status.
    pub fn count(&self, status: NodeStatus) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }

    /// `Done. PASS=.. WARN=.. ERROR=.. SKIP=.. NO-OP=0 TOTAL=..`
    pub fn summary_line(&self) -> String {
        let pass = self.count(NodeStatus::Success) + self.count(NodeStatus::Pass);
        let error = self.count(NodeStatus::Error) + self.count(NodeStatus::Fail);
        format!(
            "Done. PASS={pass} WARN={} ERROR={error} SKIP={} NO-OP=0 TOTAL={}",
            self.count(NodeStatus::Warn),
            self.count(NodeStatus::Skipped),
            self.results.len()
        )
    }

    /// `target/run_results.json` as dbt writes it (schema v6).
    pub fn to_json(
        &self,
        invocation_id: &str,
        args: Json,
        nodes: &std::collections::BTreeMap<String, Node>,
    ) -> Json {
        let results: Vec<Json> = self
            .results
            .iter()
            .map(|r| {
                let timing: Vec<Json> = r
                    .timing
                    .iter()
                    .map(|(name, start, end)| json!({"name": name, "started_at": start, "completed_at": end}))
                    .collect();
                let code = r.message.split_whitespace().next().unwrap_or_default().to_string();
                let is_test = nodes
                    .get(&r.unique_id)
                    .is_some_and(|n| n.resource_type == ResourceType::Test);
                json!({
                    "status": r.status.as_str(),
                    "timing": timing,
                    "thread_id": r.thread_id,
                    "execution_time": r.execution_time,
                    "adapter_response": if r.status == NodeStatus::Skipped || r.status == NodeStatus::Error {
                        json!({})
                    } else {
                        json!({"_message": r.message, "code": code, "rows_affected": r.rows_affected.unwrap_or(0)})
                    },
                    "message": if is_test && r.status != NodeStatus::Error { Json::Null } else { Json::String(r.message.clone()) },
                    "failures": r.failures,
                    "unique_id": r.unique_id,
                    "compiled": r.compiled_code.is_some(),
                    "compiled_code": r.compiled_code,
                    "relation_name": r.relation_name,
                    "batch_results": Json::Null,
                })
            })
            .collect();
        json!({
            "metadata": {
                "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
                "dbt_version": "1.10.0",
                "generated_at": now_rfc3339(),
                "invocation_id": invocation_id,
                "env": {},
            },
            "results": results,
            "elapsed_time": self.elapsed,
            "args": args,
        })
    }

    /// Write `run_results.json` into the target directory.
    pub fn write(
        &self,
        target_dir: &Path,
        invocation_id: &str,
        args: Json,
        nodes: &std::collections::BTreeMap<String, Node>,
    ) -> Result<PathBuf> {
        let path = target_dir.join("run_results.json");
        let text = serde_json::to_string_pretty(&self.to_json(invocation_id, args, nodes))
            .map_err(|e| DbtError::Internal(format!("run_results serialisation: {e}")))?;
        crate::compile::write_file(&path, &text)?;
        Ok(path)
    }
}

/// The current time as dbt writes it in artifacts.
pub fn now_rfc3339() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// How dbt names a node in its console lines: `sql view model dbt.stg_trips`, `seed file dbt.zones`, `test
/// not_null_x`, `snapshot snapshots.s`.
pub fn describe_node(node: &Node) -> String {
    let rel = format!("{}.{}", node.relation.schema, node.relation.identifier);
    match node.resource_type {
        ResourceType::Model => format!("sql {} model {rel}", node.config.materialized),
        ResourceType::Seed => format!("seed file {rel}"),
        ResourceType::Snapshot => format!("snapshot {rel}"),
        ResourceType::Test => format!("test {}", node.name),
        other => format!("{} {rel}", other.as_str()),
    }
}

/// One of dbt's console lines: `N of M MESSAGE ....... [STATUS]`, dotted to 80 columns.
pub fn fancy_line(index: usize, total: usize, message: &str, status: &str) -> String {
    let prefix = format!("{index} of {total} {message} ");
    let width = 80usize;
    let dots = width.saturating_sub(prefix.chars().count());
    format!("{prefix}{} [{status}]", ".".repeat(dots))
}

/// The START line of a node.
pub fn start_line(index: usize, total: usize, node: &Node) -> String {
    fancy_line(
        index,
        total,
        &format!("START {}", describe_node(node)),
        "RUN",
    )
}

/// The line that says how a node ended.
pub fn result_line(index: usize, total: usize, node: &Node, result: &NodeResult) -> String {
    let t = result.execution_time;
    let what = describe_node(node);
    let (message, status) = match (node.resource_type, result.status) {
        (_, NodeStatus::Skipped) => {
            let what = if node.resource_type == ResourceType::Test {
                what
            } else {
                format!(
                    "relation {}.{}",
                    node.relation.schema, node.relation.identifier
                )
            };
            (format!("SKIP {what}"), "SKIP".to_string())
        }
        (ResourceType::Test, NodeStatus::Pass) => {
            (format!("PASS {}", node.name), format!("PASS in {t:.2}s"))
        }
        (ResourceType::Test, NodeStatus::Fail) => {
            let n = result.failures.unwrap_or(0);
            (
                format!("FAIL {n} {}", node.name),
                format!("FAIL {n} in {t:.2}s"),
            )
        }
        (ResourceType::Test, NodeStatus::Warn) => {
            let n = result.failures.unwrap_or(0);
            (
                format!("WARN {n} {}", node.name),
                format!("WARN {n} in {t:.2}s"),
            )
        }
        (ResourceType::Test, _) => (format!("ERROR {}", node.name), format!("ERROR in {t:.2}s")),
        (_, NodeStatus::Error) => (
            format!("ERROR creating {what}"),
            format!("ERROR in {t:.2}s"),
        ),
        (ResourceType::Seed, _) => (
            format!("OK loaded {what}"),
            format!("{} in {t:.2}s", result.message),
        ),
        (ResourceType::Snapshot, _) => (
            format!(
                "OK snapshotted {}.{}",
                node.relation.schema, node.relation.identifier
            ),
            format!("{} in {t:.2}s", result.message),
        ),
        _ => (
            format!("OK created {what}"),
            format!("{} in {t:.2}s", result.message),
        ),
    };
    fancy_line(index, total, &message, &status)
}

/// `Finished running 3 view models, 1 seed, 10 data tests in 0 hours 0 minutes and 2.34 seconds (2.34s).`
pub fn finished_line(
    results: &RunResults,
    nodes: &std::collections::BTreeMap<String, Node>,
) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for r in &results.results {
        if let Some(n) = nodes.get(&r.unique_id) {
            let key = match n.resource_type {
                ResourceType::Model => format!("{} model", n.config.materialized),
                ResourceType::Test => "data test".into(),
                ResourceType::Seed => "seed".into(),
                ResourceType::Snapshot => "snapshot".into(),
                other => other.as_str().into(),
            };
            *counts.entry(key).or_default() += 1;
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, n)| format!("{n} {k}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    let secs = results.elapsed;
    let whole = secs as u64;
    format!(
        "Finished running {} in {} hours {} minutes and {:.2} seconds ({secs:.2}s).",
        if parts.is_empty() {
            "0 nodes".to_string()
        } else {
            parts.join(", ")
        },
        whole / 3600,
        (whole % 3600) / 60,
        secs - (whole / 60 * 60) as f64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_dotted_to_eighty_columns() {
        let line = fancy_line(1, 5, "START sql view model s.x", "RUN");
        assert!(line.starts_with("1 of 5 START sql view model s.x ...."));
        assert_eq!(line.chars().count(), 80 + " [RUN]".len());
    }
}

/// The `HH:MM:SS` dbt puts in front of each console line.
pub fn clock() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}
