//! The `Task` trait every task type implements, the registry that maps `type:` names to implementations, and the
//! context a task attempt runs with (log, cancellation, work directory, subflows).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, RunReport};
use crate::error::Result;
use crate::params::Params;

/// Why one attempt of a task failed, and whether another attempt may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// What went wrong, for the task run's record and the user.
    pub message: String,
    /// False when retrying cannot help (bad inputs): the engine then skips remaining retries.
    pub retryable: bool,
}

impl TaskFailure {
    /// A failure another attempt may fix (network error, non-zero exit).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry can fix (bad inputs after templating).
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// Which stream a captured log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// A command's standard output.
    Stdout,
    /// A command's standard error.
    Stderr,
    /// A message from the task type or engine itself.
    Info,
}

impl LogStream {
    /// Name stored in the state store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Info => "info",
        }
    }
}

/// The log of one task attempt: lines are buffered here and written to the state store by the engine.
#[derive(Debug, Clone, Default)]
pub struct TaskLog {
    lines: Arc<Mutex<Vec<(i64, LogStream, String)>>>,
}

impl TaskLog {
    /// Appends one line.
    pub fn line(&self, stream: LogStream, text: impl Into<String>) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.push((crate::store::now_ms(), stream, text.into()));
    }

    /// Appends an informational line.
    pub fn info(&self, text: impl Into<String>) {
        self.line(LogStream::Info, text);
    }

    pub(crate) fn drain(&self) -> Vec<(i64, LogStream, String)> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What a task attempt gets besides its rendered inputs.
#[derive(Clone)]
pub struct TaskContext {
    /// Name of the flow being run.
    pub flow_name: String,
    /// Id of the flow run.
    pub run_id: String,
    /// Id of the task within the flow.
    pub task_id: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The project directory (relative paths in inputs are resolved against it).
    pub project_dir: PathBuf,
    /// A directory owned by this task run for its files (`<project>/.tripline/work/<run>/<task>`), created lazily
    /// by the task.
    pub work_dir: PathBuf,
    /// The attempt's log.
    pub log: TaskLog,
    /// Cancelled when the flow run is cancelled or the attempt times out; long tasks should watch it.
    pub cancel: CancellationToken,
    pub(crate) engine: Engine,
}

impl TaskContext {
    /// Runs another flow of the project as a child of this run and waits for it.
    pub async fn run_subflow(&self, flow: &str, params: Params) -> Result<RunReport> {
        self.engine
            .run_child(flow, params, &self.run_id, self.cancel.clone())
            .await
    }

    /// Resolves a path from the inputs against the project directory, as an absolute path: a task's output path
    /// is often another task's input, which would otherwise be resolved against the project a second time when the
    /// project directory itself is relative (`tripline -C examples/nyc-taxi ...`).
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        let p = if p.is_absolute() {
            p
        } else {
            self.project_dir.join(p)
        };
        std::path::absolute(&p).unwrap_or(p)
    }
}

/// One task type (`shell`, `download`, `flow`, and the ones callers add: `ingest`, `sql`, `dbt`, ...).
///
/// A task receives its inputs (the task's keys in the flow file other than the engine's own `id`, `type`,
/// `depends_on`, `retries`, `retry_delay`, `timeout`, `cache`, `description`) with every template already rendered,
/// and returns a JSON output that downstream tasks reach as `{{ tasks.<id>.output... }}`.
#[async_trait]
pub trait Task: Send + Sync {
    /// The `type:` name in flow files.
    fn type_name(&self) -> &str;

    /// Checks the inputs when the flow is loaded (before templating): unknown or missing keys. The message is shown
    /// with the flow file and the task's line.
    fn check(&self, inputs: &Json) -> Result<(), String> {
        let _ = inputs;
        Ok(())
    }

    /// Runs one attempt.
    async fn run(&self, ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure>;
}

/// Decodes task inputs into a typed struct (use `#[serde(deny_unknown_fields)]` so typos are reported).
pub fn parse_inputs<T: DeserializeOwned>(inputs: &Json) -> Result<T, String> {
    serde_json::from_value(inputs.clone()).map_err(|e| e.to_string())
}

/// Task types by `type:` name.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    types: BTreeMap<String, Arc<dyn Task>>,
}

impl TaskRegistry {
    /// A registry with no task types.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with the built-in types: `shell`, `download` and `flow`.
    pub fn with_builtins() -> Self {
        let mut r = Self::empty();
        r.register(crate::tasks::shell::ShellTask);
        r.register(crate::tasks::download::DownloadTask);
        r.register(crate::tasks::subflow::SubflowTask);
        r
    }

    /// Adds (or replaces) a task type under its `type_name()`.
    pub fn register(&mut self, task: impl Task + 'static) -> &mut Self {
        self.types
            .insert(task.type_name().to_string(), Arc::new(task));
        self
    }

    /// The task type of that name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Task>> {
        self.types.get(name).cloned()
    }

    /// Names of the registered types, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }
}

impl std::fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRegistry")
            .field("types", &self.names())
            .finish()
    }
}
