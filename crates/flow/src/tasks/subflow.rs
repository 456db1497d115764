//! `type: flow` — runs another flow of the project as a child run and waits for it.
//!
//! Inputs: `flow` (name), `params` (map; templates allowed). Output: `{run_id, state, outputs: {task: output}}`.
//! A child run that does not complete fails the attempt (retryable: a retry starts a new child run, whose cached
//! tasks are reused).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::params::Params;
use crate::store::State;
use crate::task::{Task, TaskContext, TaskFailure, parse_inputs};

/// The `flow` (subflow) task type.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubflowTask;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubflowInputs {
    flow: String,
    #[serde(default)]
    params: Params,
}

#[async_trait]
impl Task for SubflowTask {
    fn type_name(&self) -> &str {
        "flow"
    }

    fn check(&self, inputs: &Json) -> Result<(), String> {
        parse_inputs::<SubflowInputs>(inputs).map(|_| ())
    }

    async fn run(&self, ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        let inputs: SubflowInputs = parse_inputs(&inputs).map_err(TaskFailure::fatal)?;
        let report = ctx
            .run_subflow(&inputs.flow, inputs.params)
            .await
            .map_err(|e| TaskFailure::fatal(e.to_string()))?;
        ctx.log.info(format!(
            "subflow `{}` run {} ended {}",
            inputs.flow, report.run_id, report.state
        ));
        if report.state != State::Completed {
            return Err(TaskFailure::retryable(format!(
                "subflow `{}` run {} {}: {}",
                inputs.flow,
                report.run_id,
                report.state.to_string().to_lowercase(),
                report.reason.unwrap_or_default()
            )));
        }
        let outputs: serde_json::Map<String, Json> = report
            .tasks
            .iter()
            .map(|t| (t.task_id.clone(), t.output.clone().unwrap_or(Json::Null)))
            .collect();
        Ok(json!({"run_id": report.run_id, "state": report.state.as_str(), "outputs": outputs}))
    }
}
