//! The worker loop: turns due cron schedules into queued runs and executes queued runs (submitted, scheduled or
//! backfilled), claiming each from the state store so several workers never run the same one twice.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::engine::{Engine, RunReport, new_scheduled_record};
use crate::error::{FlowError, Result};
use crate::store::{RunFilter, State, now_ms};

/// Tuning of a [`Worker`].
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Pause between polls of the queue when idle.
    pub poll_interval: Duration,
    /// Flow runs this worker executes at once.
    pub max_runs: usize,
    /// Whether this worker also turns schedules into queued runs.
    pub schedules: bool,
    /// At most this many missed occurrences of one schedule are queued per tick (the earliest first).
    pub catch_up_limit: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            max_runs: 2,
            schedules: true,
            catch_up_limit: 100,
        }
    }
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// Runs it executed, with their final states.
    pub runs: Vec<(String, State)>,
    /// Runs it queued from schedules.
    pub scheduled: Vec<String>,
}

/// A worker over one engine (and so one project and one store).
#[derive(Debug, Clone)]
pub struct Worker {
    engine: Engine,
    options: WorkerOptions,
}

impl Worker {
    /// A worker with the given options.
    pub fn new(engine: Engine, options: WorkerOptions) -> Self {
        Self { engine, options }
    }

    /// Runs until `cancel` is cancelled (Ctrl-C / shutdown); active runs are cancelled and recorded so.
    pub async fn run(&self, cancel: CancellationToken) -> Result<WorkerStats> {
        self.run_loop(cancel, false).await
    }

    /// Runs until the queue is empty and nothing is running (for backfills, tests and `--once`).
    pub async fn run_until_idle(&self, cancel: CancellationToken) -> Result<WorkerStats> {
        self.run_loop(cancel, true).await
    }

    async fn run_loop(
        &self,
        cancel: CancellationToken,
        stop_when_idle: bool,
    ) -> Result<WorkerStats> {
        let mut stats = WorkerStats::default();
        let mut running: JoinSet<Result<RunReport>> = JoinSet::new();
        let mut last_crash_check = 0i64;
        info!(owner = %self.engine.owner().id, "worker started");
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let now = now_ms();
            if now - last_crash_check > 5_000 {
                self.engine.detect_crashed().await?;
                last_crash_check = now;
            }
            if self.options.schedules {
                stats.scheduled.extend(self.enqueue_due(Utc::now()).await?);
            }
            let mut claimed_any = false;
            while running.len() < self.options.max_runs.max(1) {
                let Some((record, flow)) = self.engine.claim_next_queued().await? else {
                    break;
                };
                claimed_any = true;
                info!(run = %record.id, flow = %record.flow, "worker claimed run");
                let (engine, token) = (self.engine.clone(), cancel.child_token());
                running.spawn(async move { engine.execute_claimed(record, flow, token).await });
            }
            if stop_when_idle && running.is_empty() && !claimed_any {
                let queued = self
                    .engine
                    .store()
                    .list_flow_runs(&RunFilter {
                        states: vec![State::Scheduled],
                        limit: 1,
                        ..RunFilter::default()
                    })
                    .await?;
                let due_soon = queued
                    .first()
                    .map(|r| r.not_before_ms <= now_ms())
                    .unwrap_or(false);
                if !due_soon {
                    break;
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                Some(done) = running.join_next(), if !running.is_empty() => record(&mut stats, done),
                _ = tokio::time::sleep(self.options.poll_interval) => {}
            }
        }
        while let Some(done) = running.join_next().await {
            record(&mut stats, done);
        }
        Ok(stats)
    }

    /// Queues a run for every schedule occurrence due since the last tick (a schedule seen for the first time
    /// starts from `now`, without catching up). Returns the ids of runs queued by this call; occurrences another
    /// worker already queued are skipped through the run's idempotency key.
    pub async fn enqueue_due(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        let store = self.engine.store().clone();
        let mut queued = Vec::new();
        for flow in self.engine.project().flows() {
            for (i, schedule) in flow.spec().schedules.iter().enumerate() {
                if !schedule.enabled {
                    continue;
                }
                let Some(cursor) = store.schedule_cursor(flow.name(), i).await? else {
                    store
                        .set_schedule_cursor(flow.name(), i, now.timestamp_millis())
                        .await?;
                    continue;
                };
                let after = Utc
                    .timestamp_millis_opt(cursor)
                    .single()
                    .ok_or_else(|| FlowError::Corrupt(format!("schedule cursor {cursor}")))?;
                let due = schedule.due_between(after, now, self.options.catch_up_limit)?;
                for t in &due {
                    let params = flow.resolve_params(&schedule.params)?;
                    let key = format!("schedule:{}:{i}:{}", flow.name(), t.timestamp_millis());
                    let record = new_scheduled_record(flow, params, *t, key)?;
                    if store.insert_flow_run(&record).await? {
                        info!(flow = flow.name(), at = %t, run = %record.id, "scheduled run queued");
                        queued.push(record.id);
                    }
                }
                let until = if due.len() >= self.options.catch_up_limit {
                    due.last().map(|t| t.timestamp_millis())
                } else {
                    None
                };
                store
                    .set_schedule_cursor(flow.name(), i, until.unwrap_or(now.timestamp_millis()))
                    .await?;
            }
        }
        Ok(queued)
    }
}

fn record(
    stats: &mut WorkerStats,
    done: std::result::Result<Result<RunReport>, tokio::task::JoinError>,
) {
    match done {
        Ok(Ok(report)) => stats.runs.push((report.run_id, report.state)),
        Ok(Err(e)) => warn!(error = %e, "flow run ended with an engine error"),
        Err(e) => warn!(error = %e, "flow run task panicked"),
    }
}
