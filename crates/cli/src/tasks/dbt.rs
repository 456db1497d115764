//! `type: dbt` — runs a dbt command on the project's dbt project with tripline's dbt runner, in-process: the same
//! code as `tripline dbt build` ([`crate::dbt::run_nodes`]), so the flow's step and the command behave alike.
//!
//! Inputs: `command` (`build` (default), `run`, `test`, `seed`, `snapshot`), `select` and `exclude` (one selector
//! or a list, dbt's syntax), `vars` (a mapping, or YAML text as for `--vars`), `target`, `full_refresh`,
//! `fail_fast`, `threads`, `store_failures`, `project_dir` (the dbt project, relative to the tripline project;
//! default: the tripline project when it holds `dbt_project.yml`, else its `dbt/` folder) and `profiles_dir`
//! (default: `DBT_PROFILES_DIR`, else the dbt project's). Every console line dbt prints (one `START` and one
//! `OK`/`ERROR`/`PASS`/`FAIL` per node, then the summary) goes to the task's log. Output: the counts of the run
//! `{command, target, schema, pass, warn, error, skip, total, elapsed, failed: [...], nodes: [{name, resource_type, status,
//! message}], summary}`. When dbt would exit non-zero the task fails naming the failed nodes; a run with failed
//! nodes may be retried (the database may have been the cause), a wrong project or selector may not.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tripline_dbt::run::results::describe_node;
use tripline_dbt::run::{NodeStatus, RunCommand};
use tripline_flow::task::parse_inputs;
use tripline_flow::{Task, TaskContext, TaskFailure};

use super::{TaskEnv, TaskEvent, bool_or_string, check_keys, int_or_string};
use crate::Failure;
use crate::dbt::{DbtInvocation, DbtLine, DbtProjectSpec, LineSink, run_nodes};

/// The `dbt` task type.
#[derive(Debug, Clone)]
pub struct DbtTask {
    env: Arc<TaskEnv>,
}

impl DbtTask {
    /// The task type over a project.
    pub fn new(env: Arc<TaskEnv>) -> Self {
        Self { env }
    }
}

const KEYS: &[&str] = &[
    "command",
    "select",
    "exclude",
    "vars",
    "target",
    "full_refresh",
    "fail_fast",
    "threads",
    "store_failures",
    "project_dir",
    "profiles_dir",
];

/// Failed nodes named in the task's error message; the rest are counted.
const NAMED_FAILURES: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DbtInputs {
    #[serde(default)]
    command: Option<String>,
    #[serde(default, deserialize_with = "selectors")]
    select: Vec<String>,
    #[serde(default, deserialize_with = "selectors")]
    exclude: Vec<String>,
    #[serde(default)]
    vars: Option<Json>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    full_refresh: Option<bool>,
    #[serde(default, deserialize_with = "bool_or_string")]
    fail_fast: Option<bool>,
    #[serde(default, deserialize_with = "int_or_string")]
    threads: Option<u64>,
    #[serde(default, deserialize_with = "bool_or_string")]
    store_failures: Option<bool>,
    #[serde(default)]
    project_dir: Option<String>,
    #[serde(default)]
    profiles_dir: Option<String>,
}

/// A selector list: one string (split on spaces, as dbt's `-s "a b"`) or a list of strings.
fn selectors<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(super::one_or_many(d)?
        .iter()
        .flat_map(|s| s.split_whitespace().map(str::to_string))
        .collect())
}

fn command(name: Option<&str>) -> Result<RunCommand, TaskFailure> {
    Ok(match name.map(str::trim).unwrap_or("build") {
        "build" => RunCommand::Build,
        "run" => RunCommand::Run,
        "test" => RunCommand::Test,
        "seed" => RunCommand::Seed,
        "snapshot" => RunCommand::Snapshot,
        other => {
            return Err(TaskFailure::fatal(format!(
                "command: `{other}` (use build, run, test, seed or snapshot)"
            )));
        }
    })
}

impl DbtInputs {
    fn invocation(self) -> Result<DbtInvocation, TaskFailure> {
        let vars = match self.vars {
            None | Some(Json::Null) => None,
            Some(Json::String(text)) if text.trim().is_empty() => None,
            Some(Json::String(text)) => Some(text),
            // JSON is YAML: a mapping from the flow file goes to dbt's --vars parser as it is.
            Some(map @ Json::Object(_)) => Some(map.to_string()),
            Some(other) => {
                return Err(TaskFailure::fatal(format!(
                    "vars: expected a mapping, got {other}"
                )));
            }
        };
        let profiles_dir = self
            .profiles_dir
            .or_else(|| std::env::var("DBT_PROFILES_DIR").ok())
            .filter(|d| !d.trim().is_empty())
            .map(PathBuf::from);
        let mut invocation = DbtInvocation::new(command(self.command.as_deref())?);
        invocation.project = DbtProjectSpec {
            dir: self
                .project_dir
                .filter(|d| !d.trim().is_empty())
                .map(PathBuf::from),
            profiles_dir,
            target: self.target.filter(|t| !t.trim().is_empty()),
            vars,
        };
        invocation.select = self.select;
        invocation.exclude = self.exclude;
        invocation.threads = self.threads.map(|n| n as usize);
        invocation.full_refresh = self.full_refresh.unwrap_or(false);
        invocation.fail_fast = self.fail_fast.unwrap_or(false);
        invocation.store_failures = self.store_failures.unwrap_or(false);
        Ok(invocation)
    }
}

/// A failure before any node ran (the project, profile or selector is wrong; the database refused): retried only
/// when an outside system failed.
fn setup_failure(f: Failure) -> TaskFailure {
    if f.domain == tripline_core::ErrorDomain::External {
        TaskFailure::retryable(f.message)
    } else {
        TaskFailure::fatal(f.message)
    }
}

#[async_trait]
impl Task for DbtTask {
    fn type_name(&self) -> &str {
        "dbt"
    }

    fn check(&self, inputs: &Json) -> Result<(), String> {
        check_keys(inputs, KEYS, &[])?;
        if let Some(name) = inputs.get("command").and_then(Json::as_str)
            && !name.contains("{{")
        {
            command(Some(name)).map_err(|f| f.message)?;
        }
        Ok(())
    }

    async fn run(&self, ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        let inputs: DbtInputs = parse_inputs(&inputs).map_err(TaskFailure::fatal)?;
        let invocation = inputs.invocation()?;
        let cli = self.env.context();
        self.env.emit(TaskEvent::DbtStarting {
            command: invocation.command.as_str().to_string(),
            project: invocation.project.dir(&cli),
        });
        let log = ctx.log.clone();
        let env = self.env.clone();
        let lines: LineSink = Arc::new(move |line: DbtLine<'_>| {
            if !line.text.is_empty() {
                log.info(line.text);
            }
            if let (Some(node), Some(result)) = (line.node, line.result) {
                env.emit(TaskEvent::DbtNode {
                    resource_type: node.resource_type.as_str().to_string(),
                    description: describe_node(node),
                    status: result.status.as_str().to_string(),
                    message: result.message.clone(),
                    seconds: result.execution_time,
                });
            }
        });
        let done = tokio::select! {
            done = run_nodes(&cli, &invocation, lines) => done.map_err(setup_failure)?,
            () = ctx.cancel.cancelled() => {
                return Err(TaskFailure::fatal(format!(
                    "dbt {} cancelled (nodes already built stay built)",
                    invocation.command.as_str()
                )));
            }
        };
        for line in done.summary_lines() {
            if !line.is_empty() {
                ctx.log.info(line);
            }
        }
        let results = &done.results;
        let nodes: Vec<Json> = results
            .results
            .iter()
            .map(|r| {
                let node = done.project.manifest.nodes.get(&r.unique_id);
                json!({
                    "unique_id": r.unique_id,
                    "name": node.map(|n| n.name.clone()),
                    "resource_type": node.map(|n| n.resource_type.as_str()),
                    "status": r.status.as_str(),
                    "message": r.message,
                    "rows_affected": r.rows_affected,
                    "failures": r.failures,
                    "execution_time": r.execution_time,
                })
            })
            .collect();
        let failed = done.failures();
        let summary = results.summary_line();
        self.env.emit(TaskEvent::DbtDone {
            summary: summary.clone(),
        });
        if results.failed() {
            let mut named = failed
                .iter()
                .take(NAMED_FAILURES)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            if failed.len() > NAMED_FAILURES {
                named.push_str(&format!("; and {} more", failed.len() - NAMED_FAILURES));
            }
            return Err(TaskFailure::retryable(format!(
                "dbt {} failed: {named} ({summary})",
                invocation.command.as_str()
            )));
        }
        Ok(json!({
            "command": invocation.command.as_str(),
            "target": done.project.target.name,
            "schema": done.project.target.schema,
            "pass": results.count(NodeStatus::Success) + results.count(NodeStatus::Pass),
            "warn": results.count(NodeStatus::Warn),
            "error": results.count(NodeStatus::Error) + results.count(NodeStatus::Fail),
            "skip": results.count(NodeStatus::Skipped),
            "total": results.results.len(),
            "elapsed": results.elapsed,
            "failed": failed,
            "nodes": nodes,
            "summary": summary,
        }))
    }
}
