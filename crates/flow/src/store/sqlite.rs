//! SQLite state store: one file (default `<project>/.tripline/state.db`) in WAL mode. Claims run in
//! `BEGIN IMMEDIATE` transactions, so several processes on one machine can share it safely; the per-task writes of
//! a running flow are group-committed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Type, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, TransactionBehavior, params};
use serde_json::Value as Json;

use super::{
    AttemptRecord, BackfillRecord, FlowRunRecord, LogRecord, Owner, RunFilter, State, StateStore,
    TaskRunRecord,
};
use crate::error::{FlowError, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flow_runs (
    id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    parent_id TEXT,
    backfill_id TEXT,
    idempotency_key TEXT UNIQUE,
    flow_snapshot TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    not_before_ms INTEGER NOT NULL,
    started_ms INTEGER,
    ended_ms INTEGER,
    owner_id TEXT,
    owner_pid INTEGER,
    owner_host TEXT,
    heartbeat_ms INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS flow_runs_queue ON flow_runs (state, not_before_ms);
CREATE INDEX IF NOT EXISTS flow_runs_flow ON flow_runs (flow, created_ms);
CREATE TABLE IF NOT EXISTS task_runs (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    task_type TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL,
    started_ms INTEGER,
    ended_ms INTEGER,
    output TEXT,
    cache_key TEXT,
    PRIMARY KEY (run_id, task_id)
);
CREATE INDEX IF NOT EXISTS task_runs_cache ON task_runs (cache_key, ended_ms);
CREATE TABLE IF NOT EXISTS task_attempts (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    error TEXT,
    PRIMARY KEY (run_id, task_id, attempt)
);
CREATE TABLE IF NOT EXISTS task_logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_logs_run ON task_logs (run_id, task_id, seq);
CREATE TABLE IF NOT EXISTS backfills (
    id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    max_active INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_cursors (
    flow TEXT NOT NULL,
    schedule INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (flow, schedule)
);
";

const RUN_COLS: &str = "id, flow, params, state, reason, parent_id, backfill_id, idempotency_key, flow_snapshot, created_ms, \
    not_before_ms, started_ms, ended_ms, owner_id, owner_pid, owner_host, heartbeat_ms, cancel_requested";

impl FromSql for State {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        s.parse()
            .map_err(|e: FlowError| FromSqlError::Other(Box::new(e)))
    }
}

impl ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

fn json_col<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    idx: usize,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
    })
    .transpose()
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<FlowRunRecord> {
    let owner_id: Option<String> = row.get(13)?;
    Ok(FlowRunRecord {
        id: row.get(0)?,
        flow: row.get(1)?,
        params: json_col(row, 2)?.unwrap_or_default(),
        state: row.get(3)?,
        reason: row.get(4)?,
        parent_id: row.get(5)?,
        backfill_id: row.get(6)?,
        idempotency_key: row.get(7)?,
        flow_snapshot: row.get(8)?,
        created_ms: row.get(9)?,
        not_before_ms: row.get(10)?,
        started_ms: row.get(11)?,
        ended_ms: row.get(12)?,
        owner: match owner_id {
            Some(id) => Some(Owner {
                id,
                pid: row.get::<_, Option<i64>>(14)?.unwrap_or(0) as u32,
                host: row.get::<_, Option<String>>(15)?.unwrap_or_default(),
            }),
            None => None,
        },
        heartbeat_ms: row.get(16)?,
        cancel_requested: row.get::<_, i64>(17)? != 0,
    })
}

fn insert_run(conn: &Connection, r: &FlowRunRecord) -> rusqlite::Result<usize> {
    conn.execute(
        &format!("INSERT OR IGNORE INTO flow_runs ({RUN_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)"),
        params![
            r.id,
            r.flow,
            super::params_to_text(&r.params),
            r.state,
            r.reason,
            r.parent_id,
            r.backfill_id,
            r.idempotency_key,
            r.flow_snapshot,
            r.created_ms,
            r.not_before_ms,
            r.started_ms,
            r.ended_ms,
            r.owner.as_ref().map(|o| o.id.clone()),
            r.owner.as_ref().map(|o| o.pid as i64),
            r.owner.as_ref().map(|o| o.host.clone()),
            r.heartbeat_ms,
            r.cancel_requested as i64,
        ],
    )
}

fn get_run(conn: &Connection, id: &str) -> rusqlite::Result<Option<FlowRunRecord>> {
    conn.query_row(
        &format!("SELECT {RUN_COLS} FROM flow_runs WHERE id = ?1"),
        [id],
        run_from_row,
    )
    .optional()
}

fn take_ownership(conn: &Connection, id: &str, owner: &Owner, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE flow_runs SET state = 'Pending', reason = NULL, owner_id = ?2, owner_pid = ?3, owner_host = ?4, heartbeat_ms = ?5, \
         cancel_requested = 0, ended_ms = NULL, started_ms = COALESCE(started_ms, ?5) WHERE id = ?1",
        params![id, owner.id, owner.pid as i64, owner.host, now],
    )?;
    Ok(())
}

fn write_task_run(conn: &Connection, t: &TaskRunRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO task_runs (run_id, task_id, task_type, state, reason, attempts, started_ms, ended_ms, output, cache_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        t.run_id,
        t.task_id,
        t.task_type,
        t.state,
        t.reason,
        t.attempts,
        t.started_ms,
        t.ended_ms,
        t.output.as_ref().map(Json::to_string),
        t.cache_key
    ])?;
    Ok(())
}

fn write_attempt(conn: &Connection, a: &AttemptRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO task_attempts (run_id, task_id, attempt, state, started_ms, ended_ms, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![a.run_id, a.task_id, a.attempt, a.state, a.started_ms, a.ended_ms, a.error])?;
    Ok(())
}

fn write_logs(conn: &Connection, lines: &[LogRecord]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO task_logs (run_id, task_id, attempt, ts_ms, stream, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for l in lines {
        stmt.execute(params![
            l.run_id, l.task_id, l.attempt, l.ts_ms, l.stream, l.line
        ])?;
    }
    Ok(())
}

/// The SQLite implementation of [`StateStore`].
///
/// One thread owns the connection and runs every call in order. The engine's per-task writes (task runs,
/// attempts, logs) are group-committed: the writes queued while the previous transaction ran go into the next one
/// together, so a flow with many short tasks pays a fraction of a commit per write instead of one each. A write is
/// acknowledged only after its transaction committed.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: std::sync::mpsc::Sender<Job>,
    path: PathBuf,
}

/// A write to run inside a shared transaction.
type TransactionWork = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

/// Work for the connection's thread.
enum Job {
    /// Runs alone, with the connection to itself (reads, and writes that open their own transaction).
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
    /// A write run inside a shared transaction; told the outcome once that transaction committed.
    Batched {
        work: TransactionWork,
        done: tokio::sync::oneshot::Sender<rusqlite::Result<()>>,
    },
}

/// Writes of one group commit at most (so one transaction stays short).
const MAX_BATCH: usize = 256;

fn connection_thread(mut conn: Connection, jobs: std::sync::mpsc::Receiver<Job>) {
    let mut next = jobs.recv().ok();
    while let Some(job) = next.take() {
        match job {
            Job::Alone(f) => f(&mut conn),
            Job::Batched { work, done } => {
                let mut batch = vec![(work, done)];
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(Job::Batched { work, done }) => batch.push((work, done)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                run_batch(&mut conn, batch);
            }
        }
        if next.is_none() {
            next = jobs.recv().ok();
        }
    }
}

/// A write of a group commit and where its outcome goes.
type BatchedWrite = (
    TransactionWork,
    tokio::sync::oneshot::Sender<rusqlite::Result<()>>,
);

fn run_batch(conn: &mut Connection, batch: Vec<BatchedWrite>) {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            for (_, done) in batch {
                let _ = done.send(Err(same_error(&e)));
            }
            return;
        }
    };
    // Each write in a savepoint, so one that fails is undone alone and reported to its caller only.
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut tx = tx;
    for (work, done) in batch {
        let outcome = match tx.savepoint() {
            Ok(mut sp) => match work(&sp) {
                Ok(()) => sp.commit(),
                Err(e) => {
                    let _ = sp.rollback();
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        outcomes.push((outcome, done));
    }
    match tx.commit() {
        Ok(()) => {
            for (outcome, done) in outcomes {
                let _ = done.send(outcome);
            }
        }
        Err(e) => {
            for (_, done) in outcomes {
                let _ = done.send(Err(same_error(&e)));
            }
        }
    }
}

/// The same SQLite error again, for each write of a batch whose commit failed (`rusqlite::Error` is not `Clone`).
fn same_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store of a project: `<project>/.tripline/state.db`.
    pub fn open_in_project(project_dir: &Path) -> Result<Self> {
        let dir = project_dir.join(".tripline");
        std::fs::create_dir_all(&dir).map_err(|e| FlowError::io(&dir, e))?;
        Self::open(dir.join("state.db"))
    }

    /// Opens (creating if needed) a store file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let err = |source| FlowError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let (jobs, queue) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("tripline-sqlite".into())
            .spawn(move || connection_thread(conn, queue))
            .map_err(|e| FlowError::io(&path, e))?;
        Ok(Self { jobs, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn gone(&self) -> FlowError {
        FlowError::Internal(format!(
            "the SQLite thread of {} has stopped",
            self.path.display()
        ))
    }

    /// Runs `f` on the connection's thread, alone.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Alone(Box::new(move |c| {
                let _ = tx.send(f(c));
            })))
            .map_err(|_| self.gone())?;
        self.answer(rx).await
    }

    /// The answer of a job sent to the connection's thread.
    async fn answer<T>(
        &self,
        rx: tokio::sync::oneshot::Receiver<rusqlite::Result<T>>,
    ) -> Result<T> {
        rx.await
            .map_err(|_| self.gone())?
            .map_err(|source| FlowError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    /// Runs the write `f` in the next group commit and returns once that committed.
    async fn write<F>(&self, f: F) -> Result<()>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Batched {
                work: Box::new(f),
                done,
            })
            .map_err(|_| self.gone())?;
        self.answer(rx).await
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn insert_flow_run(&self, run: &FlowRunRecord) -> Result<bool> {
        let run = run.clone();
        self.call(move |c| Ok(insert_run(c, &run)? == 1)).await
    }

    async fn insert_backfill(
        &self,
        backfill: &BackfillRecord,
        runs: &[FlowRunRecord],
    ) -> Result<()> {
        let (b, runs) = (backfill.clone(), runs.to_vec());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO backfills (id, flow, max_active, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![b.id, b.flow, b.max_active, b.created_ms],
            )?;
            for r in &runs {
                insert_run(&tx, r)?;
            }
            tx.commit()
        })
        .await
    }

    async fn flow_run(&self, id: &str) -> Result<Option<FlowRunRecord>> {
        let id = id.to_string();
        self.call(move |c| get_run(c, &id)).await
    }

    async fn list_flow_runs(&self, filter: &RunFilter) -> Result<Vec<FlowRunRecord>> {
        let f = filter.clone();
        self.call(move |c| {
            let mut sql = format!("SELECT {RUN_COLS} FROM flow_runs WHERE 1=1");
            let mut args: Vec<Box<dyn ToSql>> = Vec::new();
            if let Some(flow) = &f.flow {
                args.push(Box::new(flow.clone()));
                sql.push_str(&format!(" AND flow = ?{}", args.len()));
            }
            if let Some(b) = &f.backfill_id {
                args.push(Box::new(b.clone()));
                sql.push_str(&format!(" AND backfill_id = ?{}", args.len()));
            }
            if !f.states.is_empty() {
                let list: Vec<String> = f
                    .states
                    .iter()
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect();
                sql.push_str(&format!(" AND state IN ({})", list.join(",")));
            }
            if f.top_level_only {
                sql.push_str(" AND parent_id IS NULL");
            }
            sql.push_str(" ORDER BY created_ms DESC, id DESC");
            if f.limit > 0 {
                sql.push_str(&format!(" LIMIT {}", f.limit));
            }
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(
                rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())),
                run_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    async fn claim_next(&self, owner: &Owner, now_ms: i64) -> Result<Option<FlowRunRecord>> {
        let owner = owner.clone();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id: Option<String> = tx
                .query_row(
                    "SELECT f.id FROM flow_runs f WHERE f.state = 'Scheduled' AND f.not_before_ms <= ?1 AND f.cancel_requested = 0 \
                     AND (f.backfill_id IS NULL OR (SELECT COUNT(*) FROM flow_runs a WHERE a.backfill_id = f.backfill_id \
                          AND a.state IN ('Pending', 'Running')) < COALESCE((SELECT max_active FROM backfills b WHERE b.id = f.backfill_id), 1000000)) \
                     ORDER BY f.not_before_ms, f.created_ms, f.id LIMIT 1",
                    [now_ms],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = id else { return Ok(None) };
            take_ownership(&tx, &id, &owner, now_ms)?;
            let run = get_run(&tx, &id)?;
            tx.commit()?;
            Ok(run)
        })
        .await
    }

    async fn claim_run(
        &self,
        id: &str,
        from: &[State],
        owner: &Owner,
        now_ms: i64,
    ) -> Result<Option<FlowRunRecord>> {
        let (id, from, owner) = (id.to_string(), from.to_vec(), owner.clone());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(run) = get_run(&tx, &id)? else {
                return Ok(None);
            };
            if !from.contains(&run.state) {
                return Ok(None);
            }
            take_ownership(&tx, &id, &owner, now_ms)?;
            let run = get_run(&tx, &id)?;
            tx.commit()?;
            Ok(run)
        })
        .await
    }

    async fn set_run_state(
        &self,
        id: &str,
        state: State,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        let (id, reason) = (id.to_string(), reason.map(str::to_string));
        self.call(move |c| {
            let ended = state.is_final().then_some(now_ms);
            c.execute(
                "UPDATE flow_runs SET state = ?2, reason = ?3, ended_ms = ?4, \
                 started_ms = CASE WHEN ?2 = 'Running' THEN COALESCE(started_ms, ?5) ELSE started_ms END WHERE id = ?1",
                params![id, state, reason, ended, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn heartbeat(&self, id: &str, owner_id: &str, now_ms: i64) -> Result<bool> {
        let (id, owner_id) = (id.to_string(), owner_id.to_string());
        self.call(move |c| {
            c.execute(
                "UPDATE flow_runs SET heartbeat_ms = ?3 WHERE id = ?1 AND owner_id = ?2",
                params![id, owner_id, now_ms],
            )?;
            let flag: Option<i64> = c
                .query_row(
                    "SELECT cancel_requested FROM flow_runs WHERE id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(flag.unwrap_or(0) != 0)
        })
        .await
    }

    async fn request_cancel(&self, id: &str, now_ms: i64) -> Result<State> {
        let id = id.to_string();
        let wanted = id.clone();
        let state = self
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let state: Option<State> = tx.query_row("SELECT state FROM flow_runs WHERE id = ?1", [&id], |r| r.get(0)).optional()?;
                let out = match state {
                    Some(State::Scheduled) => {
                        tx.execute("UPDATE flow_runs SET state = 'Cancelled', reason = 'cancelled before it started', ended_ms = ?2 WHERE id = ?1", params![id, now_ms])?;
                        Some(State::Cancelled)
                    }
                    Some(s) if s.is_active() => {
                        tx.execute("UPDATE flow_runs SET cancel_requested = 1 WHERE id = ?1", [&id])?;
                        Some(s)
                    }
                    other => other,
                };
                tx.commit()?;
                Ok(out)
            })
            .await?;
        state.ok_or(FlowError::UnknownRun(wanted))
    }

    async fn mark_crashed(
        &self,
        id: &str,
        seen_heartbeat_ms: Option<i64>,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let (id, reason) = (id.to_string(), reason.to_string());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE flow_runs SET state = 'Crashed', reason = ?2, ended_ms = ?3 WHERE id = ?1 AND state IN ('Pending', 'Running') \
                 AND heartbeat_ms IS ?4",
                params![id, reason, now_ms, seen_heartbeat_ms],
            )?;
            if n == 1 {
                tx.execute(
                    "UPDATE task_runs SET state = 'Crashed', reason = ?2, ended_ms = ?3 WHERE run_id = ?1 AND state IN ('Running', 'Retrying')",
                    params![id, reason, now_ms],
                )?;
                tx.execute(
                    "UPDATE task_attempts SET state = 'Crashed', error = ?2, ended_ms = ?3 WHERE run_id = ?1 AND state = 'Running'",
                    params![id, reason, now_ms],
                )?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
        .await
    }

    async fn put_task_run(&self, t: &TaskRunRecord) -> Result<()> {
        let t = t.clone();
        self.write(move |c| write_task_run(c, &t)).await
    }

    async fn put_task_runs(&self, tasks: &[TaskRunRecord]) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let tasks = tasks.to_vec();
        self.write(move |c| tasks.iter().try_for_each(|t| write_task_run(c, t)))
            .await
    }

    async fn put_attempt_with_task(
        &self,
        attempt: &AttemptRecord,
        logs: &[LogRecord],
        task: &TaskRunRecord,
    ) -> Result<()> {
        let (a, lines, t) = (attempt.clone(), logs.to_vec(), task.clone());
        self.write(move |c| {
            write_attempt(c, &a)?;
            write_logs(c, &lines)?;
            write_task_run(c, &t)
        })
        .await
    }

    async fn task_runs(&self, run_id: &str) -> Result<Vec<TaskRunRecord>> {
        let run_id = run_id.to_string();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT run_id, task_id, task_type, state, reason, attempts, started_ms, ended_ms, output, cache_key \
                 FROM task_runs WHERE run_id = ?1 ORDER BY COALESCE(started_ms, 9223372036854775807), task_id",
            )?;
            let rows = stmt.query_map([&run_id], |r| {
                Ok(TaskRunRecord {
                    run_id: r.get(0)?,
                    task_id: r.get(1)?,
                    task_type: r.get(2)?,
                    state: r.get(3)?,
                    reason: r.get(4)?,
                    attempts: r.get(5)?,
                    started_ms: r.get(6)?,
                    ended_ms: r.get(7)?,
                    output: json_col(r, 8)?,
                    cache_key: r.get(9)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn put_attempt(&self, a: &AttemptRecord) -> Result<()> {
        let a = a.clone();
        self.write(move |c| write_attempt(c, &a)).await
    }

    fn queue_attempt_with_task(
        &self,
        attempt: AttemptRecord,
        logs: Vec<LogRecord>,
        task: TaskRunRecord,
    ) -> Option<super::QueuedWrite> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let queued = self
            .jobs
            .send(Job::Batched {
                work: Box::new(move |c| {
                    write_attempt(c, &attempt)?;
                    write_logs(c, &logs)?;
                    write_task_run(c, &task)
                }),
                done,
            })
            .is_ok();
        let path = self.path.clone();
        Some(Box::pin(async move {
            let gone = || {
                FlowError::Internal(format!(
                    "the SQLite thread of {} has stopped",
                    path.display()
                ))
            };
            if !queued {
                return Err(gone());
            }
            rx.await
                .map_err(|_| gone())?
                .map_err(|source| FlowError::Sqlite {
                    path: path.clone(),
                    source,
                })
        }))
    }

    async fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>> {
        let run_id = run_id.to_string();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT run_id, task_id, attempt, state, started_ms, ended_ms, error FROM task_attempts WHERE run_id = ?1 ORDER BY task_id, attempt",
            )?;
            let rows = stmt.query_map([&run_id], |r| {
                Ok(AttemptRecord {
                    run_id: r.get(0)?,
                    task_id: r.get(1)?,
                    attempt: r.get(2)?,
                    state: r.get(3)?,
                    started_ms: r.get(4)?,
                    ended_ms: r.get(5)?,
                    error: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn append_logs(&self, lines: &[LogRecord]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let lines = lines.to_vec();
        self.write(move |c| write_logs(c, &lines)).await
    }

    async fn logs(&self, run_id: &str, task_id: Option<&str>) -> Result<Vec<LogRecord>> {
        let (run_id, task_id) = (run_id.to_string(), task_id.map(str::to_string));
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT run_id, task_id, attempt, ts_ms, stream, line FROM task_logs WHERE run_id = ?1 AND (?2 IS NULL OR task_id = ?2) ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![run_id, task_id], |r| {
                Ok(LogRecord { run_id: r.get(0)?, task_id: r.get(1)?, attempt: r.get(2)?, ts_ms: r.get(3)?, stream: r.get(4)?, line: r.get(5)? })
            })?;
            rows.collect()
        })
        .await
    }

    async fn find_cached(&self, cache_key: &str, min_ended_ms: i64) -> Result<Option<Json>> {
        let key = cache_key.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT output FROM task_runs WHERE cache_key = ?1 AND state = 'Completed' AND ended_ms >= ?2 AND output IS NOT NULL \
                 ORDER BY ended_ms DESC LIMIT 1",
                params![key, min_ended_ms],
                |r| json_col::<Json>(r, 0),
            )
            .optional()
            .map(Option::flatten)
        })
        .await
    }

    async fn schedule_cursor(&self, flow: &str, schedule: usize) -> Result<Option<i64>> {
        let flow = flow.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT until_ms FROM schedule_cursors WHERE flow = ?1 AND schedule = ?2",
                params![flow, schedule as i64],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn set_schedule_cursor(&self, flow: &str, schedule: usize, until_ms: i64) -> Result<()> {
        let flow = flow.to_string();
        self.call(move |c| {
            c.execute(
                "INSERT INTO schedule_cursors (flow, schedule, until_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (flow, schedule) DO UPDATE SET until_ms = MAX(until_ms, excluded.until_ms)",
                params![flow, schedule as i64, until_ms],
            )?;
            Ok(())
        })
        .await
    }
}
