//! What one task costs the engine must not grow with the size of the flow: a task is recorded with a constant
//! number of state store transactions (the attempt's start, and its end with the log and the task's new state),
//! and wide and deep flows of trivial tasks complete with every output passed along.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::{Value as Json, json};
use tripline_flow::store::{AttemptRecord, BackfillRecord, LogRecord, Owner, SqliteStore};
use tripline_flow::{
    Engine, FlowRunRecord, Params, Project, Result, RunFilter, State, StateStore, Task,
    TaskContext, TaskFailure, TaskRegistry, TaskRunRecord,
};

/// Returns its inputs.
struct Noop;

#[async_trait]
impl Task for Noop {
    fn type_name(&self) -> &str {
        "noop"
    }

    async fn run(&self, _ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        Ok(inputs)
    }
}

/// A SQLite store that counts the calls that write (each is one transaction).
struct CountingStore {
    inner: SqliteStore,
    writes: AtomicUsize,
}

impl CountingStore {
    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl StateStore for CountingStore {
    async fn insert_flow_run(&self, run: &FlowRunRecord) -> Result<bool> {
        self.wrote();
        self.inner.insert_flow_run(run).await
    }
    async fn insert_backfill(&self, b: &BackfillRecord, runs: &[FlowRunRecord]) -> Result<()> {
        self.wrote();
        self.inner.insert_backfill(b, runs).await
    }
    async fn flow_run(&self, id: &str) -> Result<Option<FlowRunRecord>> {
        self.inner.flow_run(id).await
    }
    async fn list_flow_runs(&self, filter: &RunFilter) -> Result<Vec<FlowRunRecord>> {
        self.inner.list_flow_runs(filter).await
    }
    async fn claim_next(&self, owner: &Owner, now_ms: i64) -> Result<Option<FlowRunRecord>> {
        self.wrote();
        self.inner.claim_next(owner, now_ms).await
    }
    async fn claim_run(
        &self,
        id: &str,
        from: &[State],
        owner: &Owner,
        now_ms: i64,
    ) -> Result<Option<FlowRunRecord>> {
        self.wrote();
        self.inner.claim_run(id, from, owner, now_ms).await
    }
    async fn set_run_state(
        &self,
        id: &str,
        state: State,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        self.wrote();
        self.inner.set_run_state(id, state, reason, now_ms).await
    }
    async fn heartbeat(&self, id: &str, owner_id: &str, now_ms: i64) -> Result<bool> {
        // Time-driven, not per task: not counted.
        self.inner.heartbeat(id, owner_id, now_ms).await
    }
    async fn request_cancel(&self, id: &str, now_ms: i64) -> Result<State> {
        self.wrote();
        self.inner.request_cancel(id, now_ms).await
    }
    async fn mark_crashed(
        &self,
        id: &str,
        seen: Option<i64>,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool> {
        self.wrote();
        self.inner.mark_crashed(id, seen, reason, now_ms).await
    }
    async fn put_task_run(&self, task: &TaskRunRecord) -> Result<()> {
        self.wrote();
        self.inner.put_task_run(task).await
    }
    async fn put_task_runs(&self, tasks: &[TaskRunRecord]) -> Result<()> {
        self.wrote();
        self.inner.put_task_runs(tasks).await
    }
    async fn put_attempt_with_task(
        &self,
        attempt: &AttemptRecord,
        logs: &[LogRecord],
        task: &TaskRunRecord,
    ) -> Result<()> {
        self.wrote();
        self.inner.put_attempt_with_task(attempt, logs, task).await
    }
    async fn task_runs(&self, run_id: &str) -> Result<Vec<TaskRunRecord>> {
        self.inner.task_runs(run_id).await
    }
    async fn put_attempt(&self, attempt: &AttemptRecord) -> Result<()> {
        self.wrote();
        self.inner.put_attempt(attempt).await
    }
    async fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>> {
        self.inner.attempts(run_id).await
    }
    async fn append_logs(&self, lines: &[LogRecord]) -> Result<()> {
        self.wrote();
        self.inner.append_logs(lines).await
    }
    async fn logs(&self, run_id: &str, task_id: Option<&str>) -> Result<Vec<LogRecord>> {
        self.inner.logs(run_id, task_id).await
    }
    async fn find_cached(&self, key: &str, min_ended_ms: i64) -> Result<Option<Json>> {
        self.inner.find_cached(key, min_ended_ms).await
    }
    async fn schedule_cursor(&self, flow: &str, schedule: usize) -> Result<Option<i64>> {
        self.inner.schedule_cursor(flow, schedule).await
    }
    async fn set_schedule_cursor(&self, flow: &str, schedule: usize, until_ms: i64) -> Result<()> {
        self.wrote();
        self.inner
            .set_schedule_cursor(flow, schedule, until_ms)
            .await
    }
}

/// `n` independent noop tasks, then a `total` task over all of them.
fn wide_flow(n: usize) -> String {
    let mut yaml = format!("name: wide_{n}\ntasks:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - id: t{i}\n    type: noop\n    value: {i}\n"));
    }
    yaml.push_str("  - id: total\n    type: noop\n    depends_on: [");
    yaml.push_str(
        &(0..n)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    yaml.push_str("]\n    first: \"{{ tasks.t0.output.value }}\"\n");
    yaml
}

/// A chain of `n` noop tasks, each adding one to its upstream's value.
fn chain_flow(n: usize) -> String {
    let mut yaml = format!("name: chain_{n}\ntasks:\n  - id: c0\n    type: noop\n    value: 0\n");
    for i in 1..n {
        yaml.push_str(&format!(
            "  - id: c{i}\n    type: noop\n    value: \"{{{{ tasks.c{}.output.value | int + 1 }}}}\"\n",
            i - 1
        ));
    }
    yaml
}

/// Runs one flow on a fresh counting store; (store writes, report).
async fn run_counted(name: &str, yaml: &str) -> (usize, tripline_flow::RunReport) {
    let p = common::TestProject::new(&[(name, yaml)]);
    let mut registry = TaskRegistry::with_builtins();
    registry.register(Noop);
    let project = Project::load(p.path(), &registry).expect("project loads");
    let store = Arc::new(CountingStore {
        inner: SqliteStore::open_in_project(p.path()).expect("store opens"),
        writes: AtomicUsize::new(0),
    });
    let engine = Engine::with_options(project, registry, store.clone(), common::fast_options());
    let report = engine.run(name, Params::new()).await.expect("run");
    (store.writes.load(Ordering::Relaxed), report)
}

#[tokio::test]
async fn each_task_costs_two_store_transactions_however_wide_the_flow() {
    let (small, report) = run_counted("wide_100", &wide_flow(100)).await;
    assert_eq!(report.state, State::Completed, "{:?}", report.reason);
    let (large, report) = run_counted("wide_1000", &wide_flow(1000)).await;
    assert_eq!(report.state, State::Completed, "{:?}", report.reason);
    assert_eq!(report.tasks.len(), 1001);
    assert!(report.tasks.iter().all(|t| t.state == State::Completed));
    assert_eq!(
        report.task("total").unwrap().output,
        Some(json!({"first": "0"}))
    );
    // The extra 900 tasks cost 2 transactions each: the attempt's start and its end (with log and task state).
    assert_eq!(
        large - small,
        2 * 900,
        "{small} writes for 101 tasks, {large} for 1001"
    );
}

#[tokio::test]
async fn a_long_chain_passes_each_output_to_the_next_task() {
    let (writes, report) = run_counted("chain_300", &chain_flow(300)).await;
    assert_eq!(report.state, State::Completed, "{:?}", report.reason);
    assert_eq!(
        report.task("c299").unwrap().output,
        Some(json!({"value": "299"}))
    );
    assert!(writes <= 2 * 300 + 10, "{writes} writes for 300 tasks");
}
