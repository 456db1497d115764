//! The engine: runs a flow's DAG with bounded concurrency, retries, timeouts, caching and cancellation, recording
//! every state change in the state store; resumes crashed or failed runs without redoing completed tasks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{FlowError, Result};
use crate::model::{Flow, FlowSpec, Project};
use crate::params::Params;
use crate::store::{
    AttemptRecord, BackfillRecord, FlowRunRecord, LogRecord, Owner, QueuedWrite, RunFilter, State,
    StateStore, TaskRunRecord, new_id, now_ms, pid_alive,
};
use crate::task::{TaskContext, TaskFailure, TaskLog, TaskRegistry};
use crate::template::render_inputs;

/// Tuning of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Tasks of one run executing at once, unless the flow sets `concurrency`.
    pub max_concurrency: usize,
    /// How often a running flow run writes its heartbeat (and notices a cancel requested elsewhere).
    pub heartbeat_interval: Duration,
    /// A run whose owner is on another host is declared Crashed when its heartbeat is older than this.
    pub stale_after: Duration,
    /// Root of the task work directories (default `<project>/.tripline/work`).
    pub work_dir: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_concurrency: 4,
            heartbeat_interval: Duration::from_secs(2),
            stale_after: Duration::from_secs(60),
            work_dir: None,
        }
    }
}

/// The outcome of one flow run: its final state and every task's record.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Run id.
    pub run_id: String,
    /// Flow name.
    pub flow: String,
    /// Final state of the run.
    pub state: State,
    /// Why, when not Completed.
    pub reason: Option<String>,
    /// Task runs, in flow order.
    pub tasks: Vec<TaskRunRecord>,
}

impl RunReport {
    /// The record of one task.
    pub fn task(&self, id: &str) -> Option<&TaskRunRecord> {
        self.tasks.iter().find(|t| t.task_id == id)
    }

    /// Shorthand: the state of one task (panics on an unknown id; for tests and scripts).
    pub fn state_of(&self, id: &str) -> State {
        self.task(id)
            .map(|t| t.state)
            .unwrap_or_else(|| panic!("no task `{id}` in run {}", self.run_id))
    }
}

/// Everything recorded about one run, for `flow show`.
#[derive(Debug, Clone)]
pub struct RunDetail {
    /// The flow run.
    pub run: FlowRunRecord,
    /// Its task runs.
    pub tasks: Vec<TaskRunRecord>,
    /// Every attempt of every task.
    pub attempts: Vec<AttemptRecord>,
    /// Captured log lines.
    pub logs: Vec<LogRecord>,
}

/// The runs a backfill queued.
#[derive(Debug, Clone)]
pub struct BackfillReport {
    /// Backfill id.
    pub id: String,
    /// One queued run per value, in value order.
    pub run_ids: Vec<String>,
}

impl FlowRunRecord {
    /// Wall time from first start to end (or to now while it runs).
    pub fn duration(&self) -> Option<Duration> {
        let start = self.started_ms?;
        let end = self.ended_ms.unwrap_or_else(now_ms);
        Some(Duration::from_millis((end - start).max(0) as u64))
    }
}

/// Runs flows of one project against one state store. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    project: Project,
    registry: TaskRegistry,
    store: Arc<dyn StateStore>,
    owner: Owner,
    options: EngineOptions,
    local: Mutex<HashMap<String, CancellationToken>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("project", &self.inner.project.dir())
            .field("owner", &self.inner.owner)
            .finish()
    }
}

impl Engine {
    /// An engine over a loaded project, its task registry and a store, with default options.
    pub fn new(project: Project, registry: TaskRegistry, store: Arc<dyn StateStore>) -> Self {
        Self::with_options(project, registry, store, EngineOptions::default())
    }

    /// An engine with explicit options.
    pub fn with_options(
        project: Project,
        registry: TaskRegistry,
        store: Arc<dyn StateStore>,
        options: EngineOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                project,
                registry,
                store,
                owner: Owner::this_process(),
                options,
                local: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.inner.project
    }

    /// The state store.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.inner.store
    }

    /// The task registry.
    pub fn registry(&self) -> &TaskRegistry {
        &self.inner.registry
    }

    /// The owner identity this engine claims runs as.
    pub fn owner(&self) -> &Owner {
        &self.inner.owner
    }

    /// Runs a flow now, in this process, and waits for it.
    pub async fn run(&self, flow: &str, params: Params) -> Result<RunReport> {
        self.run_with_cancel(flow, params, CancellationToken::new())
            .await
    }

    /// Runs a flow now; cancelling `cancel` stops it (running tasks end Cancelled).
    pub async fn run_with_cancel(
        &self,
        flow: &str,
        params: Params,
        cancel: CancellationToken,
    ) -> Result<RunReport> {
        let flow = self.inner.project.flow(flow)?.clone();
        self.start(flow, params, None, cancel).await
    }

    /// Runs a flow built in Rust (it need not be part of the project).
    pub async fn run_flow(
        &self,
        flow: &Flow,
        params: Params,
        cancel: CancellationToken,
    ) -> Result<RunReport> {
        self.start(flow.clone(), params, None, cancel).await
    }

    pub(crate) async fn run_child(
        &self,
        flow: &str,
        params: Params,
        parent: &str,
        cancel: CancellationToken,
    ) -> Result<RunReport> {
        let flow = self.inner.project.flow(flow)?.clone();
        self.start(flow, params, Some(parent.to_string()), cancel)
            .await
    }

    async fn start(
        &self,
        flow: Flow,
        params: Params,
        parent: Option<String>,
        cancel: CancellationToken,
    ) -> Result<RunReport> {
        let params = flow.resolve_params(&params)?;
        let now = now_ms();
        let mut record = new_run_record(&flow, params, now)?;
        record.parent_id = parent;
        record.state = State::Pending;
        record.owner = Some(self.inner.owner.clone());
        record.heartbeat_ms = Some(now);
        record.started_ms = Some(now);
        self.inner.store.insert_flow_run(&record).await?;
        info!(run = %record.id, flow = %record.flow, "flow run started");
        self.execute(record, flow, cancel).await
    }

    /// Queues a run for a worker (state `Scheduled`), optionally not before a time. Returns the run id.
    pub async fn submit(
        &self,
        flow: &str,
        params: Params,
        not_before: Option<DateTime<Utc>>,
    ) -> Result<String> {
        let flow = self.inner.project.flow(flow)?;
        let params = flow.resolve_params(&params)?;
        let mut record = new_run_record(flow, params, now_ms())?;
        if let Some(t) = not_before {
            record.not_before_ms = t.timestamp_millis();
        }
        self.inner.store.insert_flow_run(&record).await?;
        Ok(record.id)
    }

    /// Queues one run per value of `param` in `range` (`2019-01..2020-12`, `1..10`, or `a,b,c`), the other
    /// parameters from `base`; workers run at most `max_active` of them at once.
    pub async fn backfill(
        &self,
        flow: &str,
        base: Params,
        param: &str,
        range: &str,
        max_active: u32,
    ) -> Result<BackfillReport> {
        let flow_def = self.inner.project.flow(flow)?;
        let spec = flow_def.spec().params.get(param).ok_or_else(|| {
            FlowError::param(param, format!("flow `{flow}` has no such parameter"))
        })?;
        let values = spec.expand(param, range)?;
        let backfill = BackfillRecord {
            id: new_id(),
            flow: flow.to_string(),
            max_active: max_active.max(1),
            created_ms: now_ms(),
        };
        let mut runs = Vec::with_capacity(values.len());
        for (i, v) in values.into_iter().enumerate() {
            let mut p = base.clone();
            p.insert(param.to_string(), v);
            let p = flow_def.resolve_params(&p)?;
            // created_ms increases with the value so workers take them in order.
            let mut r = new_run_record(flow_def, p, backfill.created_ms + i as i64)?;
            r.backfill_id = Some(backfill.id.clone());
            r.not_before_ms = backfill.created_ms;
            runs.push(r);
        }
        self.inner.store.insert_backfill(&backfill, &runs).await?;
        Ok(BackfillReport {
            id: backfill.id,
            run_ids: runs.into_iter().map(|r| r.id).collect(),
        })
    }

    /// Claims the next queued run (if any) and runs it to the end in this process.
    pub async fn run_next_queued(&self, cancel: CancellationToken) -> Result<Option<RunReport>> {
        let Some((record, flow)) = self.claim_next_queued().await? else {
            return Ok(None);
        };
        self.execute(record, flow, cancel).await.map(Some)
    }

    pub(crate) async fn claim_next_queued(&self) -> Result<Option<(FlowRunRecord, Flow)>> {
        let Some(record) = self
            .inner
            .store
            .claim_next(&self.inner.owner, now_ms())
            .await?
        else {
            return Ok(None);
        };
        match self.flow_from_snapshot(&record) {
            Ok(flow) => Ok(Some((record, flow))),
            Err(e) => {
                self.inner
                    .store
                    .set_run_state(&record.id, State::Failed, Some(&e.to_string()), now_ms())
                    .await?;
                Err(e)
            }
        }
    }

    pub(crate) async fn execute_claimed(
        &self,
        record: FlowRunRecord,
        flow: Flow,
        cancel: CancellationToken,
    ) -> Result<RunReport> {
        self.execute(record, flow, cancel).await
    }

    /// Finishes a Crashed, Failed or Cancelled run (or starts a queued one): tasks that completed are kept, the rest
    /// run again. A Completed run is returned as it is.
    pub async fn resume(&self, run_id: &str) -> Result<RunReport> {
        self.resume_with_cancel(run_id, CancellationToken::new())
            .await
    }

    /// [`Engine::resume`] with a cancellation token.
    pub async fn resume_with_cancel(
        &self,
        run_id: &str,
        cancel: CancellationToken,
    ) -> Result<RunReport> {
        self.detect_crashed().await?;
        let from = [
            State::Crashed,
            State::Failed,
            State::Cancelled,
            State::Scheduled,
        ];
        match self
            .inner
            .store
            .claim_run(run_id, &from, &self.inner.owner, now_ms())
            .await?
        {
            Some(record) => {
                info!(run = %run_id, "resuming flow run");
                let flow = self.flow_from_snapshot(&record)?;
                self.execute(record, flow, cancel).await
            }
            None => {
                let run = self
                    .inner
                    .store
                    .flow_run(run_id)
                    .await?
                    .ok_or_else(|| FlowError::UnknownRun(run_id.to_string()))?;
                if run.state == State::Completed {
                    return self.report(&run).await;
                }
                Err(FlowError::RunState {
                    id: run_id.to_string(),
                    action: "resumed",
                    state: run.state.to_string(),
                })
            }
        }
    }

    /// Requests cancellation of a run (in this process at once, elsewhere at the owner's next heartbeat).
    /// Returns the run's state after the request.
    pub async fn cancel(&self, run_id: &str) -> Result<State> {
        if let Some(token) = self
            .inner
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(run_id)
        {
            token.cancel();
        }
        self.inner.store.request_cancel(run_id, now_ms()).await
    }

    /// Declares Crashed every active run whose owner is gone: a dead process on this host, or a heartbeat older
    /// than `stale_after`. Returns their ids. Called by `resume`, `list_runs`, `show_run` and workers.
    pub async fn detect_crashed(&self) -> Result<Vec<String>> {
        let active = self
            .inner
            .store
            .list_flow_runs(&RunFilter {
                states: vec![State::Pending, State::Running],
                ..RunFilter::default()
            })
            .await?;
        let now = now_ms();
        let stale_ms = self.inner.options.stale_after.as_millis() as i64;
        let mut crashed = Vec::new();
        for run in active {
            if self
                .inner
                .local
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&run.id)
            {
                continue;
            }
            let reason = match &run.owner {
                None => Some("active run without an owner".to_string()),
                Some(o) if o.host == self.inner.owner.host && !pid_alive(o.pid) => Some(format!(
                    "process {} on {} died while running it",
                    o.pid, o.host
                )),
                Some(o) if run.heartbeat_ms.map(|h| now - h > stale_ms).unwrap_or(true) => {
                    Some(format!(
                        "no heartbeat from process {} on {} for over {}s",
                        o.pid,
                        o.host,
                        stale_ms / 1000
                    ))
                }
                _ => None,
            };
            if let Some(reason) = reason
                && self
                    .inner
                    .store
                    .mark_crashed(&run.id, run.heartbeat_ms, &reason, now)
                    .await?
            {
                warn!(run = %run.id, %reason, "flow run crashed");
                crashed.push(run.id);
            }
        }
        Ok(crashed)
    }

    /// Flow runs, newest first (after crash detection).
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<FlowRunRecord>> {
        self.detect_crashed().await?;
        self.inner.store.list_flow_runs(filter).await
    }

    /// Everything about one run: task states, attempts, timings and logs.
    pub async fn show_run(&self, run_id: &str) -> Result<RunDetail> {
        self.detect_crashed().await?;
        let store = &self.inner.store;
        let run = store
            .flow_run(run_id)
            .await?
            .ok_or_else(|| FlowError::UnknownRun(run_id.to_string()))?;
        Ok(RunDetail {
            tasks: store.task_runs(run_id).await?,
            attempts: store.attempts(run_id).await?,
            logs: store.logs(run_id, None).await?,
            run,
        })
    }

    fn flow_from_snapshot(&self, record: &FlowRunRecord) -> Result<Flow> {
        let spec: FlowSpec = serde_json::from_str(&record.flow_snapshot)
            .map_err(|e| FlowError::Corrupt(format!("flow snapshot of run {}: {e}", record.id)))?;
        Flow::new(spec, &self.inner.registry)
    }

    async fn report(&self, run: &FlowRunRecord) -> Result<RunReport> {
        let mut tasks = self.inner.store.task_runs(&run.id).await?;
        if let Ok(flow) = self.flow_from_snapshot(run) {
            let order: HashMap<&str, usize> = flow
                .spec()
                .tasks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id.as_str(), i))
                .collect();
            tasks.sort_by_key(|t| order.get(t.task_id.as_str()).copied().unwrap_or(usize::MAX));
        }
        Ok(RunReport {
            run_id: run.id.clone(),
            flow: run.flow.clone(),
            state: run.state,
            reason: run.reason.clone(),
            tasks,
        })
    }

    /// Executes a run this engine owns until every task is final.
    async fn execute(
        &self,
        record: FlowRunRecord,
        flow: Flow,
        cancel: CancellationToken,
    ) -> Result<RunReport> {
        let store = self.inner.store.clone();
        let run_id = record.id.clone();
        self.inner
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run_id.clone(), cancel.clone());
        let result = self.execute_inner(&record, &flow, cancel.clone()).await;
        self.inner
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&run_id);
        match result {
            Ok((state, reason)) => {
                store
                    .set_run_state(&run_id, state, reason.as_deref(), now_ms())
                    .await?;
                info!(run = %run_id, %state, "flow run finished");
                let run = store
                    .flow_run(&run_id)
                    .await?
                    .ok_or_else(|| FlowError::UnknownRun(run_id.clone()))?;
                self.report(&run).await
            }
            Err(e) => {
                // Leave a consistent record: the run failed for an engine-side reason.
                let _ = store
                    .set_run_state(&run_id, State::Failed, Some(&e.to_string()), now_ms())
                    .await;
                Err(e)
            }
        }
    }

    async fn execute_inner(
        &self,
        record: &FlowRunRecord,
        flow: &Flow,
        cancel: CancellationToken,
    ) -> Result<(State, Option<String>)> {
        let store = self.inner.store.clone();
        let run_id = record.id.clone();
        store
            .set_run_state(&run_id, State::Running, None, now_ms())
            .await?;

        let heartbeat_stop = CancellationToken::new();
        let heartbeat = {
            let (store, run_id, owner_id, cancel, stop) = (
                store.clone(),
                run_id.clone(),
                self.inner.owner.id.clone(),
                cancel.clone(),
                heartbeat_stop.clone(),
            );
            let every = self.inner.options.heartbeat_interval;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                    match store.heartbeat(&run_id, &owner_id, now_ms()).await {
                        Ok(true) => cancel.cancel(),
                        Ok(false) => {}
                        Err(e) => warn!(run = %run_id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };

        let tasks = &flow.spec().tasks;
        let n = tasks.len();
        let existing: HashMap<String, TaskRunRecord> = store
            .task_runs(&run_id)
            .await?
            .into_iter()
            .map(|t| (t.task_id.clone(), t))
            .collect();
        let mut records: Vec<TaskRunRecord> = Vec::with_capacity(n);
        let mut pending = Vec::new();
        for t in tasks {
            let rec = match existing.get(&t.id) {
                Some(prev) if prev.state.is_success() => prev.clone(),
                Some(prev) => {
                    let mut r = TaskRunRecord::new(&run_id, &t.id, &t.kind, State::Pending);
                    r.attempts = prev.attempts;
                    r.started_ms = prev.started_ms;
                    pending.push(r.clone());
                    r
                }
                None => {
                    let r = TaskRunRecord::new(&run_id, &t.id, &t.kind, State::Pending);
                    pending.push(r.clone());
                    r
                }
            };
            records.push(rec);
        }
        store.put_task_runs(&pending).await?;
        drop(pending);

        // The DAG as counts: each task waits for its upstream tasks that have not succeeded yet, and a finished task
        // visits only its own dependents, so a run costs O(tasks + edges) however many tasks it has.
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut waiting_on = vec![0usize; n];
        for (i, waiting) in waiting_on.iter_mut().enumerate() {
            for &d in flow.deps_of(i) {
                dependents[d].push(i);
                if !records[d].state.is_success() {
                    *waiting += 1;
                }
            }
        }
        let mut ready: VecDeque<usize> = (0..n)
            .filter(|&i| !records[i].state.is_final() && waiting_on[i] == 0)
            .collect();

        let limit = flow
            .spec()
            .concurrency
            .unwrap_or(self.inner.options.max_concurrency)
            .max(1);
        let mut started = vec![false; n];
        let mut cancelled_rest = false;
        let mut running: JoinSet<(usize, TaskRunRecord)> = JoinSet::new();
        let params = record.params.clone();

        loop {
            if cancel.is_cancelled() {
                if !cancelled_rest {
                    cancelled_rest = true;
                    let now = now_ms();
                    let mut changed = Vec::new();
                    for (i, r) in records.iter_mut().enumerate() {
                        if !started[i] && !r.state.is_final() {
                            r.state = State::Cancelled;
                            r.reason = Some("flow run cancelled before the task started".into());
                            r.ended_ms = Some(now);
                            changed.push(r.clone());
                        }
                    }
                    store.put_task_runs(&changed).await?;
                    ready.clear();
                }
            } else {
                while running.len() < limit {
                    let Some(i) = ready.pop_front() else { break };
                    if started[i] || records[i].state.is_final() {
                        continue;
                    }
                    started[i] = true;
                    // A task's templates can only name its upstream tasks (the flow adds every `tasks.<id>` it
                    // references to its dependencies), so the context holds just those.
                    let mut upstream = serde_json::Map::new();
                    let mut dep_outputs = BTreeMap::new();
                    for &d in flow.deps_of(i) {
                        let output = records[d].output.clone().unwrap_or(Json::Null);
                        upstream.insert(
                            tasks[d].id.clone(),
                            json!({"output": output.clone(), "state": records[d].state.as_str()}),
                        );
                        dep_outputs.insert(tasks[d].id.clone(), output);
                    }
                    let context = json!({
                        "params": params,
                        "tasks": upstream,
                        "flow": {"name": flow.name()},
                        "run": {"id": run_id},
                    });
                    let job = TaskJob {
                        engine: self.clone(),
                        flow: flow.clone(),
                        index: i,
                        record: records[i].clone(),
                        context,
                        dep_outputs,
                        cancel: cancel.clone(),
                    };
                    running.spawn(async move { (i, job.run().await) });
                }
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (i, rec) = match joined {
                Ok(done) => done,
                Err(e) => {
                    heartbeat_stop.cancel();
                    return Err(FlowError::Internal(format!("a task panicked: {e}")));
                }
            };
            let succeeded = rec.state.is_success();
            records[i] = rec;
            if succeeded {
                for &j in &dependents[i] {
                    waiting_on[j] -= 1;
                    if waiting_on[j] == 0 && !started[j] && !records[j].state.is_final() {
                        ready.push_back(j);
                    }
                }
            } else if !cancel.is_cancelled() {
                // Downstream of anything that did not succeed never runs; each says which upstream task stopped it.
                // (When the run is cancelled, everything not started ends Cancelled instead.)
                let now = now_ms();
                let mut changed = Vec::new();
                let mut stack = vec![i];
                while let Some(u) = stack.pop() {
                    for &j in &dependents[u] {
                        if started[j] || records[j].state.is_final() {
                            continue;
                        }
                        let reason = format!(
                            "upstream task `{}` {}",
                            tasks[u].id,
                            records[u].state.to_string().to_lowercase()
                        );
                        let r = &mut records[j];
                        r.state = State::NotRun;
                        r.reason = Some(reason);
                        r.ended_ms = Some(now);
                        changed.push(r.clone());
                        stack.push(j);
                    }
                }
                store.put_task_runs(&changed).await?;
            }
        }
        heartbeat_stop.cancel();
        let _ = heartbeat.await;

        if records.iter().all(|r| r.state.is_success()) {
            return Ok((State::Completed, None));
        }
        if cancel.is_cancelled() {
            return Ok((State::Cancelled, Some("cancelled".into())));
        }
        let first = records
            .iter()
            .find(|r| matches!(r.state, State::Failed | State::Crashed | State::Cancelled))
            .or_else(|| records.iter().find(|r| !r.state.is_success()));
        let reason = first.map(|r| {
            format!(
                "task `{}` {}: {}",
                r.task_id,
                r.state.to_string().to_lowercase(),
                r.reason.clone().unwrap_or_default()
            )
        });
        Ok((State::Failed, reason))
    }
}

fn new_run_record(flow: &Flow, params: Params, now: i64) -> Result<FlowRunRecord> {
    Ok(FlowRunRecord {
        id: new_id(),
        flow: flow.name().to_string(),
        params,
        state: State::Scheduled,
        reason: None,
        parent_id: None,
        backfill_id: None,
        idempotency_key: None,
        flow_snapshot: serde_json::to_string(flow.spec())
            .map_err(|e| FlowError::Internal(format!("flow snapshot: {e}")))?,
        created_ms: now,
        not_before_ms: now,
        started_ms: None,
        ended_ms: None,
        owner: None,
        heartbeat_ms: None,
        cancel_requested: false,
    })
}

pub(crate) fn new_scheduled_record(
    flow: &Flow,
    params: Params,
    due: DateTime<Utc>,
    key: String,
) -> Result<FlowRunRecord> {
    let mut r = new_run_record(flow, params, now_ms())?;
    r.not_before_ms = due.timestamp_millis();
    r.idempotency_key = Some(key);
    Ok(r)
}

/// One task of one run, executed on the runtime.
struct TaskJob {
    engine: Engine,
    flow: Flow,
    index: usize,
    record: TaskRunRecord,
    context: Json,
    dep_outputs: BTreeMap<String, Json>,
    cancel: CancellationToken,
}

enum Outcome {
    Done(Json),
    Failed(TaskFailure),
    Cancelled,
}

impl TaskJob {
    async fn run(self) -> TaskRunRecord {
        let mut record = self.record.clone();
        match self.run_inner(&mut record).await {
            Ok(()) => record,
            Err(e) => {
                // A store error mid-task: report the task as failed; the run's record is fixed by the caller.
                record.state = State::Failed;
                record.reason = Some(format!("state store error: {e}"));
                record
            }
        }
    }

    async fn run_inner(&self, record: &mut TaskRunRecord) -> Result<()> {
        if self.cancel.is_cancelled() {
            return self
                .finish(
                    record,
                    State::Cancelled,
                    Some("flow run cancelled before the task started".into()),
                    None,
                )
                .await;
        }
        let inner = &self.engine.inner;
        let store = &inner.store;
        let spec = &self.flow.spec().tasks[self.index];
        let Some(kind) = inner.registry.get(&spec.kind) else {
            return self
                .finish(
                    record,
                    State::Failed,
                    Some(format!("unknown task type `{}`", spec.kind)),
                    None,
                )
                .await;
        };
        let inputs =
            match render_inputs(&spec.id, &Json::Object(spec.inputs.clone()), &self.context) {
                Ok(v) => v,
                Err(e) => {
                    return self
                        .finish(record, State::Failed, Some(e.to_string()), None)
                        .await;
                }
            };
        if let Some(policy) = &spec.cache {
            let material =
                json!({"type": spec.kind, "inputs": inputs, "upstream": self.dep_outputs});
            let key = format!(
                "{:032x}",
                xxhash_rust::xxh3::xxh3_128(material.to_string().as_bytes())
            );
            record.cache_key = Some(key.clone());
            let min_ended = policy
                .expire
                .map(|e| now_ms() - e.as_millis() as i64)
                .unwrap_or(i64::MIN);
            if let Some(output) = store.find_cached(&key, min_ended).await? {
                debug!(task = %spec.id, %key, "cache hit");
                return self
                    .finish(
                        record,
                        State::Cached,
                        Some(format!("cache hit (key {key})")),
                        Some(output),
                    )
                    .await;
            }
        }

        let run_id = record.run_id.clone();
        let work_root = inner
            .options
            .work_dir
            .clone()
            .unwrap_or_else(|| inner.project.dir().join(".tripline").join("work"));
        let mut retries_used = 0u32;
        loop {
            record.attempts += 1;
            let attempt_no = record.attempts;
            let started = now_ms();
            record.state = State::Running;
            record.reason = None;
            record.started_ms.get_or_insert(started);
            let mut attempt = AttemptRecord {
                run_id: run_id.clone(),
                task_id: spec.id.clone(),
                attempt: attempt_no,
                state: State::Running,
                started_ms: started,
                ended_ms: None,
                error: None,
            };
            // A store that applies writes in order takes the start now and the end whenever the task ends; others
            // commit the start before the task runs.
            let mut queued_start =
                store.queue_attempt_with_task(attempt.clone(), Vec::new(), record.clone());
            if queued_start.is_none() {
                store.put_attempt_with_task(&attempt, &[], record).await?;
            }

            let attempt_cancel = self.cancel.child_token();
            let ctx = TaskContext {
                flow_name: self.flow.name().to_string(),
                run_id: run_id.clone(),
                task_id: spec.id.clone(),
                attempt: attempt_no,
                project_dir: inner.project.dir().to_path_buf(),
                work_dir: work_root.join(&run_id).join(&spec.id),
                log: TaskLog::default(),
                cancel: attempt_cancel.clone(),
                engine: self.engine.clone(),
            };
            let fut = kind.run(&ctx, inputs.clone());
            let outcome = tokio::select! {
                r = with_timeout(fut, spec.timeout) => match r {
                    Ok(out) => Outcome::Done(out),
                    Err(f) => Outcome::Failed(f),
                },
                _ = self.cancel.cancelled() => Outcome::Cancelled,
            };
            attempt_cancel.cancel();
            let lines: Vec<LogRecord> = ctx
                .log
                .drain()
                .into_iter()
                .map(|(ts, stream, line)| LogRecord {
                    run_id: run_id.clone(),
                    task_id: spec.id.clone(),
                    attempt: attempt_no,
                    ts_ms: ts,
                    stream: stream.as_str().into(),
                    line,
                })
                .collect();
            attempt.ended_ms = Some(now_ms());
            // None: the task run is settled; Some(delay): it is retried after `delay`.
            let retry_in = match outcome {
                Outcome::Done(output) => {
                    attempt.state = State::Completed;
                    settle(record, State::Completed, None, Some(output));
                    None
                }
                Outcome::Cancelled => {
                    attempt.state = State::Cancelled;
                    attempt.error = Some("cancelled".into());
                    settle(
                        record,
                        State::Cancelled,
                        Some("cancelled while running".into()),
                        None,
                    );
                    None
                }
                Outcome::Failed(failure) => {
                    attempt.state = State::Failed;
                    attempt.error = Some(failure.message.clone());
                    if !failure.retryable || retries_used >= spec.retries {
                        let msg = if retries_used > 0 {
                            format!("{} (after {} attempts)", failure.message, retries_used + 1)
                        } else {
                            failure.message
                        };
                        settle(record, State::Failed, Some(msg), None);
                        None
                    } else {
                        retries_used += 1;
                        let delay = spec
                            .retry_delay
                            .as_ref()
                            .map(|d| d.before_retry(retries_used))
                            .unwrap_or_default();
                        record.state = State::Retrying;
                        record.reason = Some(format!(
                            "attempt {attempt_no} failed: {}; retrying in {}",
                            failure.message,
                            crate::duration::format_duration(delay)
                        ));
                        Some(delay)
                    }
                }
            };
            // The attempt's end, its log and the task run's new state are one write.
            write_attempt_end(
                store.as_ref(),
                queued_start.take(),
                &attempt,
                &lines,
                record,
            )
            .await?;
            let Some(delay) = retry_in else {
                return Ok(());
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.cancel.cancelled() => {
                    return self.finish(record, State::Cancelled, Some("cancelled while waiting to retry".into()), None).await;
                }
            }
        }
    }

    async fn finish(
        &self,
        record: &mut TaskRunRecord,
        state: State,
        reason: Option<String>,
        output: Option<Json>,
    ) -> Result<()> {
        settle(record, state, reason, output);
        self.engine.inner.store.put_task_run(record).await
    }
}

/// Puts a task run in its final state (not yet written).
fn settle(record: &mut TaskRunRecord, state: State, reason: Option<String>, output: Option<Json>) {
    record.state = state;
    record.reason = reason;
    record.output = output;
    record.ended_ms = Some(now_ms());
}

async fn with_timeout<F>(fut: F, timeout: Option<Duration>) -> Result<Json, TaskFailure>
where
    F: std::future::Future<Output = Result<Json, TaskFailure>>,
{
    match timeout {
        None => fut.await,
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => Err(TaskFailure::retryable(format!(
                "timed out after {}",
                crate::duration::format_duration(t)
            ))),
        },
    }
}

/// Cancels `token` when the process receives Ctrl-C (SIGINT), so a foreground run ends with running tasks
/// Cancelled and a consistent record.
pub fn cancel_on_ctrl_c(token: CancellationToken) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            token.cancel();
        }
    });
}

/// Writes the end of an attempt. When its start was queued (not yet committed, see
/// [`StateStore::queue_attempt_with_task`]) the end is queued behind it before waiting, so both usually commit in one
/// transaction; the start's error, if any, comes first.
async fn write_attempt_end(
    store: &dyn StateStore,
    queued_start: Option<QueuedWrite>,
    attempt: &AttemptRecord,
    lines: &[LogRecord],
    record: &TaskRunRecord,
) -> Result<()> {
    let Some(start) = queued_start else {
        return store.put_attempt_with_task(attempt, lines, record).await;
    };
    let end = store.queue_attempt_with_task(attempt.clone(), lines.to_vec(), record.clone());
    let started = start.await;
    let ended = match end {
        Some(end) => end.await,
        None => store.put_attempt_with_task(attempt, lines, record).await,
    };
    started.and(ended)
}
