//! `type: echo` — returns its inputs as its output, doing nothing else. For wiring flows together (a join point
//! whose output collects upstream values) and for measuring the engine's own overhead per task, which a `shell`
//! task cannot show because starting a process costs far more than the engine does.

use async_trait::async_trait;
use serde_json::Value as Json;
use tripline_flow::{Task, TaskContext, TaskFailure};

/// The `echo` task type.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoTask;

#[async_trait]
impl Task for EchoTask {
    fn type_name(&self) -> &str {
        "echo"
    }

    async fn run(&self, _ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        Ok(inputs)
    }
}
