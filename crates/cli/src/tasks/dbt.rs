//! `type: dbt` — will run the project's dbt models with tripline's dbt runner. Until that runner lands the task
//! fails with a plain "not available yet" error, so a pipeline reports everything before it truthfully.

use async_trait::async_trait;
use serde_json::Value as Json;
use tripline_flow::{Task, TaskContext, TaskFailure};

/// The `dbt` task type (not available yet).
#[derive(Debug, Clone, Copy, Default)]
pub struct DbtTask;

/// The error every `dbt` task ends with until the runner lands.
pub const NOT_AVAILABLE: &str = "not available yet: the dbt runner (issue 4) has not landed";

#[async_trait]
impl Task for DbtTask {
    fn type_name(&self) -> &str {
        "dbt"
    }

    async fn run(&self, ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        ctx.log.info(format!("dbt inputs: {inputs}"));
        Err(TaskFailure::fatal(NOT_AVAILABLE))
    }
}
