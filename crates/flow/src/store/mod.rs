//! The state store: flow runs, task runs, attempts, logs, backfills and schedule cursors, behind one trait with
//! a SQLite implementation (default, `<project>/.tripline/state.db`) and a PostgreSQL one (shared by workers).

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{FlowError, Result};
use crate::params::Params;

pub mod postgres;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Milliseconds since the Unix epoch, the time unit of every stored timestamp.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// State of a flow run or a task run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// Queued, waiting for a worker (flow runs) or for its turn (task runs of a queued flow run).
    Scheduled,
    /// Claimed / waiting for upstream tasks.
    Pending,
    /// Executing now.
    Running,
    /// An attempt failed; waiting for the retry delay.
    Retrying,
    /// Finished successfully.
    Completed,
    /// Skipped because a valid cached result was reused.
    Cached,
    /// Finished unsuccessfully after all attempts.
    Failed,
    /// The process running it died (detected through owner pid/host and heartbeat).
    Crashed,
    /// Cancelled by the user.
    Cancelled,
    /// Never started because an upstream task did not succeed (the reason names it).
    NotRun,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 10] = [
        State::Scheduled,
        State::Pending,
        State::Running,
        State::Retrying,
        State::Completed,
        State::Cached,
        State::Failed,
        State::Crashed,
        State::Cancelled,
        State::NotRun,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "Scheduled",
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Retrying => "Retrying",
            Self::Completed => "Completed",
            Self::Cached => "Cached",
            Self::Failed => "Failed",
            Self::Crashed => "Crashed",
            Self::Cancelled => "Cancelled",
            Self::NotRun => "NotRun",
        }
    }

    /// Whether nothing more will happen without a resume.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Cached
                | Self::Failed
                | Self::Crashed
                | Self::Cancelled
                | Self::NotRun
        )
    }

    /// Completed or Cached: the output is usable downstream.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Completed | Self::Cached)
    }

    /// Pending, Running or Retrying: someone owns it right now.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Running | Self::Retrying)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = FlowError;
    fn from_str(s: &str) -> Result<Self> {
        State::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| FlowError::Corrupt(format!("unknown state `{s}`")))
    }
}

/// Who runs a flow run: one per engine/worker instance; pid and host let another process tell it died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Unique per engine instance.
    pub id: String,
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
}

impl Owner {
    /// An owner for this process with a fresh id.
    pub fn this_process() -> Self {
        Self {
            id: new_id(),
            pid: std::process::id(),
            host: host_name(),
        }
    }
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether a process with this id exists on this machine (Linux: /proc).
pub fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        // A zombie (killed but not yet reaped) counts as dead.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false),
            Err(_) => false,
        }
    } else {
        true
    }
}

/// A new random id (16 hex digits), used for runs, owners and backfills.
pub fn new_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// One flow run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRunRecord {
    /// Run id.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Resolved parameter values.
    pub params: Params,
    /// Current state.
    pub state: State,
    /// Why it is in that state (first failure, crash, cancellation).
    pub reason: Option<String>,
    /// The parent run when this is a subflow run.
    pub parent_id: Option<String>,
    /// The backfill that queued it.
    pub backfill_id: Option<String>,
    /// De-duplication key (scheduled runs: `schedule:<flow>:<n>:<time>`); unique in the store.
    pub idempotency_key: Option<String>,
    /// The validated flow as JSON at submission, so a resume runs the same definition.
    pub flow_snapshot: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Earliest time a worker may start it (ms).
    pub not_before_ms: i64,
    /// First start (ms).
    pub started_ms: Option<i64>,
    /// End (ms).
    pub ended_ms: Option<i64>,
    /// Current owner when active.
    pub owner: Option<Owner>,
    /// Last heartbeat of the owner (ms).
    pub heartbeat_ms: Option<i64>,
    /// A cancel was requested; the owner stops at its next heartbeat.
    pub cancel_requested: bool,
}

/// One task of one flow run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRunRecord {
    /// Flow run id.
    pub run_id: String,
    /// Task id within the flow.
    pub task_id: String,
    /// Task type name.
    pub task_type: String,
    /// Current state.
    pub state: State,
    /// Failure message, or why it did not run.
    pub reason: Option<String>,
    /// Attempts started so far.
    pub attempts: u32,
    /// First start (ms).
    pub started_ms: Option<i64>,
    /// End (ms).
    pub ended_ms: Option<i64>,
    /// The task's output (Completed/Cached).
    pub output: Option<Json>,
    /// The cache key, for cached tasks.
    pub cache_key: Option<String>,
}

impl TaskRunRecord {
    /// A fresh record in `state`.
    pub fn new(run_id: &str, task_id: &str, task_type: &str, state: State) -> Self {
        Self {
            run_id: run_id.into(),
            task_id: task_id.into(),
            task_type: task_type.into(),
            state,
            reason: None,
            attempts: 0,
            started_ms: None,
            ended_ms: None,
            output: None,
            cache_key: None,
        }
    }
}

/// One attempt of a task run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Flow run id.
    pub run_id: String,
    /// Task id.
    pub task_id: String,
    /// 1-based attempt number (continues across resumes).
    pub attempt: u32,
    /// Running, Completed, Failed, Cancelled or Crashed.
    pub state: State,
    /// Start (ms).
    pub started_ms: i64,
    /// End (ms).
    pub ended_ms: Option<i64>,
    /// Failure message.
    pub error: Option<String>,
}

/// One captured log line of a task attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Flow run id.
    pub run_id: String,
    /// Task id.
    pub task_id: String,
    /// Attempt number.
    pub attempt: u32,
    /// Time (ms).
    pub ts_ms: i64,
    /// `stdout`, `stderr` or `info`.
    pub stream: String,
    /// The line, without its newline.
    pub line: String,
}

/// A backfill: a set of queued runs of one flow sharing a concurrency limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillRecord {
    /// Backfill id.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// At most this many of its runs active at once, across all workers.
    pub max_active: u32,
    /// Creation time (ms).
    pub created_ms: i64,
}

/// Which runs `list_flow_runs` returns.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only these states.
    pub states: Vec<State>,
    /// Only runs of this backfill.
    pub backfill_id: Option<String>,
    /// Only top-level runs (no subflow runs).
    pub top_level_only: bool,
    /// At most this many, newest first (0 = no limit).
    pub limit: usize,
}

/// The wait for a write a store has queued (see [`StateStore::queue_attempt_with_task`]).
pub type QueuedWrite = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// Persistence of flow runs and everything under them. Implementations must make `claim_*` atomic across
/// processes: a run is handed to exactly one owner.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Inserts a new flow run. Returns false (and inserts nothing) when its idempotency key already exists.
    async fn insert_flow_run(&self, run: &FlowRunRecord) -> Result<bool>;
    /// Inserts a backfill and its queued runs in one transaction.
    async fn insert_backfill(
        &self,
        backfill: &BackfillRecord,
        runs: &[FlowRunRecord],
    ) -> Result<()>;
    /// A flow run by id.
    async fn flow_run(&self, id: &str) -> Result<Option<FlowRunRecord>>;
    /// Flow runs, newest first.
    async fn list_flow_runs(&self, filter: &RunFilter) -> Result<Vec<FlowRunRecord>>;
    /// Claims the oldest `Scheduled` run that is due (and whose backfill is below its limit) for `owner`, moving it
    /// to `Pending`. Never hands the same run to two owners.
    async fn claim_next(&self, owner: &Owner, now_ms: i64) -> Result<Option<FlowRunRecord>>;
    /// Claims one run for `owner` if it is in one of `from` states (resume of Crashed/Failed/Cancelled, or a
    /// Scheduled run started directly), moving it to `Pending`; None if another owner got it or it is not in those
    /// states.
    async fn claim_run(
        &self,
        id: &str,
        from: &[State],
        owner: &Owner,
        now_ms: i64,
    ) -> Result<Option<FlowRunRecord>>;
    /// Sets a run's state and reason, ending it (`ended_ms`) when the state is final.
    async fn set_run_state(
        &self,
        id: &str,
        state: State,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<()>;
    /// Records the owner's heartbeat; returns whether a cancel was requested.
    async fn heartbeat(&self, id: &str, owner_id: &str, now_ms: i64) -> Result<bool>;
    /// Requests cancellation: a `Scheduled` run becomes `Cancelled` at once, an active one is flagged for its owner.
    /// Returns the run's state after the call.
    async fn request_cancel(&self, id: &str, now_ms: i64) -> Result<State>;
    /// Marks an active run Crashed (and its Running/Retrying task runs and Running attempts; Pending tasks stay
    /// Pending), unless its heartbeat moved past
    /// `seen_heartbeat_ms` meanwhile. Returns whether it was marked.
    async fn mark_crashed(
        &self,
        id: &str,
        seen_heartbeat_ms: Option<i64>,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool>;
    /// Writes a task run (insert or replace).
    async fn put_task_run(&self, task: &TaskRunRecord) -> Result<()>;
    /// Writes several task runs in one transaction (a run's tasks as it starts, the tasks a failure leaves NotRun).
    async fn put_task_runs(&self, tasks: &[TaskRunRecord]) -> Result<()> {
        for t in tasks {
            self.put_task_run(t).await?;
        }
        Ok(())
    }
    /// Writes an attempt, its log lines and its task run in one transaction: an attempt starting (task Running) or
    /// ending (attempt final; task Completed, Failed, Retrying, ...), so the two records never disagree.
    async fn put_attempt_with_task(
        &self,
        attempt: &AttemptRecord,
        logs: &[LogRecord],
        task: &TaskRunRecord,
    ) -> Result<()> {
        self.put_attempt(attempt).await?;
        self.append_logs(logs).await?;
        self.put_task_run(task).await
    }
    /// Queues the same write as [`StateStore::put_attempt_with_task`] at once and returns the wait for its commit.
    /// Only a store that applies its writes in the order they were queued offers it (`None` otherwise): the engine
    /// then queues an attempt's end before its start has committed, so a short task does not wait for two commits
    /// one after the other.
    fn queue_attempt_with_task(
        &self,
        _attempt: AttemptRecord,
        _logs: Vec<LogRecord>,
        _task: TaskRunRecord,
    ) -> Option<QueuedWrite> {
        None
    }
    /// Task runs of a flow run.
    async fn task_runs(&self, run_id: &str) -> Result<Vec<TaskRunRecord>>;
    /// Writes an attempt (insert or replace).
    async fn put_attempt(&self, attempt: &AttemptRecord) -> Result<()>;
    /// Attempts of a flow run, by task and number.
    async fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>>;
    /// Appends log lines.
    async fn append_logs(&self, lines: &[LogRecord]) -> Result<()>;
    /// Log lines of a flow run (optionally one task), in order.
    async fn logs(&self, run_id: &str, task_id: Option<&str>) -> Result<Vec<LogRecord>>;
    /// The output of the newest successful task run with this cache key that ended at or after `min_ended_ms`.
    async fn find_cached(&self, cache_key: &str, min_ended_ms: i64) -> Result<Option<Json>>;
    /// The last time a schedule was evaluated up to (ms), per flow and schedule number.
    async fn schedule_cursor(&self, flow: &str, schedule: usize) -> Result<Option<i64>>;
    /// Moves a schedule's cursor forward (never backward).
    async fn set_schedule_cursor(&self, flow: &str, schedule: usize, until_ms: i64) -> Result<()>;
}

/// Opens the store a project uses: `url` when given (`postgres://...` or `sqlite:<path>`), else SQLite at
/// `<project>/.tripline/state.db`.
pub async fn open_store(project_dir: &Path, url: Option<&str>) -> Result<Arc<dyn StateStore>> {
    match url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::connect(u).await?))
        }
        Some(u) if u.starts_with("sqlite:") => Ok(Arc::new(SqliteStore::open(
            u.trim_start_matches("sqlite:").trim_start_matches("//"),
        )?)),
        Some(u) => Err(FlowError::NotSupported(format!(
            "state store URL `{u}` (use postgres://... or sqlite:<path>)"
        ))),
        None => Ok(Arc::new(SqliteStore::open_in_project(project_dir)?)),
    }
}

pub(crate) fn params_to_text(p: &Params) -> String {
    serde_json::to_string(p).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn params_from_text(s: &str) -> Result<Params> {
    serde_json::from_str(s).map_err(|e| FlowError::Corrupt(format!("params: {e}")))
}

pub(crate) fn json_from_text(s: Option<String>) -> Result<Option<Json>> {
    s.map(|s| serde_json::from_str(&s).map_err(|e| FlowError::Corrupt(format!("output: {e}"))))
        .transpose()
}
