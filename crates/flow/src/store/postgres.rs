//! PostgreSQL state store for several workers sharing one queue. Queued runs are claimed with
//! `SELECT ... FOR UPDATE SKIP LOCKED`, and a backfill's row is locked while its active runs are counted, so two
//! workers never take the same run and a backfill's concurrency limit holds across workers.

use async_trait::async_trait;
use serde_json::Value as Json;
use tokio::sync::Mutex;
use tokio_postgres::{Client, GenericClient, NoTls, Row};

use super::{
    AttemptRecord, BackfillRecord, FlowRunRecord, LogRecord, Owner, RunFilter, State, StateStore,
    TaskRunRecord,
};
use crate::error::{FlowError, Result};

/// The schema the tables live in unless another is chosen.
pub const DEFAULT_SCHEMA: &str = "tripline_flow";

const SCHEMA_SQL: &str = "
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
    created_ms BIGINT NOT NULL,
    not_before_ms BIGINT NOT NULL,
    started_ms BIGINT,
    ended_ms BIGINT,
    owner_id TEXT,
    owner_pid BIGINT,
    owner_host TEXT,
    heartbeat_ms BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS flow_runs_queue ON flow_runs (state, not_before_ms);
CREATE INDEX IF NOT EXISTS flow_runs_backfill ON flow_runs (backfill_id, state);
CREATE TABLE IF NOT EXISTS task_runs (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    task_type TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL,
    started_ms BIGINT,
    ended_ms BIGINT,
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
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    error TEXT,
    PRIMARY KEY (run_id, task_id, attempt)
);
CREATE TABLE IF NOT EXISTS task_logs (
    seq BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    ts_ms BIGINT NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_logs_run ON task_logs (run_id, task_id, seq);
CREATE TABLE IF NOT EXISTS backfills (
    id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    max_active INTEGER NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_cursors (
    flow TEXT NOT NULL,
    schedule INTEGER NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (flow, schedule)
);
";

const RUN_COLS: &str = "id, flow, params, state, reason, parent_id, backfill_id, idempotency_key, flow_snapshot, created_ms, \
    not_before_ms, started_ms, ended_ms, owner_id, owner_pid, owner_host, heartbeat_ms, cancel_requested";

fn state(row: &Row, idx: usize) -> Result<State> {
    row.try_get::<_, String>(idx)?.parse()
}

fn run_from_row(row: &Row) -> Result<FlowRunRecord> {
    let owner_id: Option<String> = row.try_get(13)?;
    Ok(FlowRunRecord {
        id: row.try_get(0)?,
        flow: row.try_get(1)?,
        params: super::params_from_text(&row.try_get::<_, String>(2)?)?,
        state: state(row, 3)?,
        reason: row.try_get(4)?,
        parent_id: row.try_get(5)?,
        backfill_id: row.try_get(6)?,
        idempotency_key: row.try_get(7)?,
        flow_snapshot: row.try_get(8)?,
        created_ms: row.try_get(9)?,
        not_before_ms: row.try_get(10)?,
        started_ms: row.try_get(11)?,
        ended_ms: row.try_get(12)?,
        owner: match owner_id {
            Some(id) => Some(Owner {
                id,
                pid: row.try_get::<_, Option<i64>>(14)?.unwrap_or(0) as u32,
                host: row.try_get::<_, Option<String>>(15)?.unwrap_or_default(),
            }),
            None => None,
        },
        heartbeat_ms: row.try_get(16)?,
        cancel_requested: row.try_get(17)?,
    })
}

fn task_from_row(r: &Row) -> Result<TaskRunRecord> {
    Ok(TaskRunRecord {
        run_id: r.try_get(0)?,
        task_id: r.try_get(1)?,
        task_type: r.try_get(2)?,
        state: state(r, 3)?,
        reason: r.try_get(4)?,
        attempts: r.try_get::<_, i32>(5)? as u32,
        started_ms: r.try_get(6)?,
        ended_ms: r.try_get(7)?,
        output: super::json_from_text(r.try_get(8)?)?,
        cache_key: r.try_get(9)?,
    })
}

async fn insert_run(c: &impl tokio_postgres::GenericClient, r: &FlowRunRecord) -> Result<bool> {
    let n = c
        .execute(
            &format!(
                "INSERT INTO flow_runs ({RUN_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) ON CONFLICT DO NOTHING"
            ),
            &[
                &r.id,
                &r.flow,
                &super::params_to_text(&r.params),
                &r.state.as_str(),
                &r.reason,
                &r.parent_id,
                &r.backfill_id,
                &r.idempotency_key,
                &r.flow_snapshot,
                &r.created_ms,
                &r.not_before_ms,
                &r.started_ms,
                &r.ended_ms,
                &r.owner.as_ref().map(|o| o.id.clone()),
                &r.owner.as_ref().map(|o| o.pid as i64),
                &r.owner.as_ref().map(|o| o.host.clone()),
                &r.heartbeat_ms,
                &r.cancel_requested,
            ],
        )
        .await?;
    Ok(n == 1)
}

async fn take_ownership(
    c: &impl tokio_postgres::GenericClient,
    id: &str,
    owner: &Owner,
    now: i64,
) -> Result<Option<FlowRunRecord>> {
    let row = c
        .query_opt(
            &format!(
                "UPDATE flow_runs SET state = 'Pending', reason = NULL, owner_id = $2, owner_pid = $3, owner_host = $4, heartbeat_ms = $5, \
                 cancel_requested = FALSE, ended_ms = NULL, started_ms = COALESCE(started_ms, $5) WHERE id = $1 RETURNING {RUN_COLS}"
            ),
            &[&id, &owner.id, &(owner.pid as i64), &owner.host, &now],
        )
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

/// The PostgreSQL implementation of [`StateStore`].
pub struct PostgresStore {
    client: Mutex<Client>,
    schema: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish()
    }
}

impl PostgresStore {
    /// Connects and creates the tables (schema `tripline_flow`) if missing.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_schema(url, DEFAULT_SCHEMA).await
    }

    /// Connects using the tables in `schema` (created if missing); separate schemas are separate stores.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(FlowError::NotSupported(format!(
                "schema name `{schema}` (use letters, digits and `_`)"
            )));
        }
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL state store connection closed");
            }
        });
        // Serialise concurrent first-time setup by several workers.
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(7273747576); CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}; {SCHEMA_SQL} COMMIT;"
            ))
            .await?;
        client
            .batch_execute(&format!("SET search_path TO {schema}"))
            .await?;
        Ok(Self {
            client: Mutex::new(client),
            schema: schema.to_string(),
        })
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

async fn write_task_run(c: &impl GenericClient, t: &TaskRunRecord) -> Result<()> {
    c.execute(
        "INSERT INTO task_runs (run_id, task_id, task_type, state, reason, attempts, started_ms, ended_ms, output, cache_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (run_id, task_id) DO UPDATE SET task_type = EXCLUDED.task_type, \
         state = EXCLUDED.state, reason = EXCLUDED.reason, attempts = EXCLUDED.attempts, started_ms = EXCLUDED.started_ms, \
         ended_ms = EXCLUDED.ended_ms, output = EXCLUDED.output, cache_key = EXCLUDED.cache_key",
        &[
            &t.run_id,
            &t.task_id,
            &t.task_type,
            &t.state.as_str(),
            &t.reason,
            &(t.attempts as i32),
            &t.started_ms,
            &t.ended_ms,
            &t.output.as_ref().map(Json::to_string),
            &t.cache_key,
        ],
    )
    .await?;
    Ok(())
}

async fn write_attempt(c: &impl GenericClient, a: &AttemptRecord) -> Result<()> {
    c.execute(
        "INSERT INTO task_attempts (run_id, task_id, attempt, state, started_ms, ended_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET state = EXCLUDED.state, started_ms = EXCLUDED.started_ms, \
         ended_ms = EXCLUDED.ended_ms, error = EXCLUDED.error",
        &[&a.run_id, &a.task_id, &(a.attempt as i32), &a.state.as_str(), &a.started_ms, &a.ended_ms, &a.error],
    )
    .await?;
    Ok(())
}

async fn write_logs(c: &impl GenericClient, lines: &[LogRecord]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let stmt = c
        .prepare("INSERT INTO task_logs (run_id, task_id, attempt, ts_ms, stream, line) VALUES ($1, $2, $3, $4, $5, $6)")
        .await?;
    for l in lines {
        c.execute(
            &stmt,
            &[
                &l.run_id,
                &l.task_id,
                &(l.attempt as i32),
                &l.ts_ms,
                &l.stream,
                &l.line,
            ],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl StateStore for PostgresStore {
    async fn insert_flow_run(&self, run: &FlowRunRecord) -> Result<bool> {
        let c = self.client.lock().await;
        insert_run(&*c, run).await
    }

    async fn insert_backfill(&self, b: &BackfillRecord, runs: &[FlowRunRecord]) -> Result<()> {
        let mut c = self.client.lock().await;
        let tx = c.transaction().await?;
        tx.execute(
            "INSERT INTO backfills (id, flow, max_active, created_ms) VALUES ($1, $2, $3, $4)",
            &[&b.id, &b.flow, &(b.max_active as i32), &b.created_ms],
        )
        .await?;
        for r in runs {
            insert_run(&tx, r).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn flow_run(&self, id: &str) -> Result<Option<FlowRunRecord>> {
        let c = self.client.lock().await;
        let row = c
            .query_opt(
                &format!("SELECT {RUN_COLS} FROM flow_runs WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn list_flow_runs(&self, f: &RunFilter) -> Result<Vec<FlowRunRecord>> {
        let mut sql = format!("SELECT {RUN_COLS} FROM flow_runs WHERE TRUE");
        let mut args: Vec<String> = Vec::new();
        if let Some(flow) = &f.flow {
            args.push(flow.clone());
            sql.push_str(&format!(" AND flow = ${}", args.len()));
        }
        if let Some(b) = &f.backfill_id {
            args.push(b.clone());
            sql.push_str(&format!(" AND backfill_id = ${}", args.len()));
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
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            args.iter().map(|a| a as _).collect();
        let c = self.client.lock().await;
        c.query(&sql, &params)
            .await?
            .iter()
            .map(run_from_row)
            .collect()
    }

    async fn claim_next(&self, owner: &Owner, now_ms: i64) -> Result<Option<FlowRunRecord>> {
        let mut c = self.client.lock().await;
        let tx = c.transaction().await?;
        let candidates = tx
            .query(
                "SELECT id, backfill_id FROM flow_runs WHERE state = 'Scheduled' AND not_before_ms <= $1 AND NOT cancel_requested \
                 ORDER BY not_before_ms, created_ms, id LIMIT 16 FOR UPDATE SKIP LOCKED",
                &[&now_ms],
            )
            .await?;
        let mut full_backfills: Vec<String> = Vec::new();
        for row in candidates {
            let id: String = row.try_get(0)?;
            let backfill: Option<String> = row.try_get(1)?;
            if let Some(b) = &backfill {
                if full_backfills.contains(b) {
                    continue;
                }
                // Locking the backfill row makes the count below exact across workers.
                let limit: Option<i32> = tx
                    .query_opt(
                        "SELECT max_active FROM backfills WHERE id = $1 FOR UPDATE",
                        &[b],
                    )
                    .await?
                    .map(|r| r.get(0));
                let active: i64 = tx
                    .query_one("SELECT COUNT(*) FROM flow_runs WHERE backfill_id = $1 AND state IN ('Pending', 'Running')", &[b])
                    .await?
                    .get(0);
                if let Some(limit) = limit
                    && active >= limit as i64
                {
                    full_backfills.push(b.clone());
                    continue;
                }
            }
            let run = take_ownership(&tx, &id, owner, now_ms).await?;
            tx.commit().await?;
            return Ok(run);
        }
        tx.rollback().await?;
        Ok(None)
    }

    async fn claim_run(
        &self,
        id: &str,
        from: &[State],
        owner: &Owner,
        now_ms: i64,
    ) -> Result<Option<FlowRunRecord>> {
        let mut c = self.client.lock().await;
        let tx = c.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT state FROM flow_runs WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        if !from.contains(&state(&row, 0)?) {
            return Ok(None);
        }
        let run = take_ownership(&tx, id, owner, now_ms).await?;
        tx.commit().await?;
        Ok(run)
    }

    async fn set_run_state(
        &self,
        id: &str,
        st: State,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        let ended = st.is_final().then_some(now_ms);
        let c = self.client.lock().await;
        c.execute(
            "UPDATE flow_runs SET state = $2, reason = $3, ended_ms = $4, \
             started_ms = CASE WHEN $2 = 'Running' THEN COALESCE(started_ms, $5) ELSE started_ms END WHERE id = $1",
            &[&id, &st.as_str(), &reason, &ended, &now_ms],
        )
        .await?;
        Ok(())
    }

    async fn heartbeat(&self, id: &str, owner_id: &str, now_ms: i64) -> Result<bool> {
        let c = self.client.lock().await;
        c.execute(
            "UPDATE flow_runs SET heartbeat_ms = $3 WHERE id = $1 AND owner_id = $2",
            &[&id, &owner_id, &now_ms],
        )
        .await?;
        let row = c
            .query_opt(
                "SELECT cancel_requested FROM flow_runs WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(row.map(|r| r.get::<_, bool>(0)).unwrap_or(false))
    }

    async fn request_cancel(&self, id: &str, now_ms: i64) -> Result<State> {
        let mut c = self.client.lock().await;
        let tx = c.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT state FROM flow_runs WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
        else {
            return Err(FlowError::UnknownRun(id.to_string()));
        };
        let out = match state(&row, 0)? {
            State::Scheduled => {
                tx.execute(
                    "UPDATE flow_runs SET state = 'Cancelled', reason = 'cancelled before it started', ended_ms = $2 WHERE id = $1",
                    &[&id, &now_ms],
                )
                .await?;
                State::Cancelled
            }
            s if s.is_active() => {
                tx.execute(
                    "UPDATE flow_runs SET cancel_requested = TRUE WHERE id = $1",
                    &[&id],
                )
                .await?;
                s
            }
            s => s,
        };
        tx.commit().await?;
        Ok(out)
    }

    async fn mark_crashed(
        &self,
        id: &str,
        seen_heartbeat_ms: Option<i64>,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let mut c = self.client.lock().await;
        let tx = c.transaction().await?;
        let n = tx
            .execute(
                "UPDATE flow_runs SET state = 'Crashed', reason = $2, ended_ms = $3 WHERE id = $1 AND state IN ('Pending', 'Running') \
                 AND heartbeat_ms IS NOT DISTINCT FROM $4",
                &[&id, &reason, &now_ms, &seen_heartbeat_ms],
            )
            .await?;
        if n == 1 {
            tx.execute(
                "UPDATE task_runs SET state = 'Crashed', reason = $2, ended_ms = $3 WHERE run_id = $1 AND state IN ('Running', 'Retrying')",
                &[&id, &reason, &now_ms],
            )
            .await?;
            tx.execute(
                "UPDATE task_attempts SET state = 'Crashed', error = $2, ended_ms = $3 WHERE run_id = $1 AND state = 'Running'",
                &[&id, &reason, &now_ms],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn put_task_run(&self, t: &TaskRunRecord) -> Result<()> {
        let c = self.client.lock().await;
        write_task_run(&*c, t).await
    }

    async fn put_task_runs(&self, tasks: &[TaskRunRecord]) -> Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let mut c = self.client.lock().await;
        let tx = c.transaction().await?;
        for t in tasks {
            write_task_run(&tx, t).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn put_attempt_with_task(
        &self,
        attempt: &AttemptRecord,
        logs: &[LogRecord],
        task: &TaskRunRecord,
    ) -> Result<()> {
        let mut c = self.client.lock().await;
        let tx = c.transaction().await?;
        write_attempt(&tx, attempt).await?;
        write_logs(&tx, logs).await?;
        write_task_run(&tx, task).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn task_runs(&self, run_id: &str) -> Result<Vec<TaskRunRecord>> {
        let c = self.client.lock().await;
        c.query(
            "SELECT run_id, task_id, task_type, state, reason, attempts, started_ms, ended_ms, output, cache_key FROM task_runs \
             WHERE run_id = $1 ORDER BY started_ms NULLS LAST, task_id",
            &[&run_id],
        )
        .await?
        .iter()
        .map(task_from_row)
        .collect()
    }

    async fn put_attempt(&self, a: &AttemptRecord) -> Result<()> {
        let c = self.client.lock().await;
        write_attempt(&*c, a).await
    }

    async fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>> {
        let c = self.client.lock().await;
        c.query(
            "SELECT run_id, task_id, attempt, state, started_ms, ended_ms, error FROM task_attempts WHERE run_id = $1 ORDER BY task_id, attempt",
            &[&run_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(AttemptRecord {
                run_id: r.try_get(0)?,
                task_id: r.try_get(1)?,
                attempt: r.try_get::<_, i32>(2)? as u32,
                state: state(r, 3)?,
                started_ms: r.try_get(4)?,
                ended_ms: r.try_get(5)?,
                error: r.try_get(6)?,
            })
        })
        .collect()
    }

    async fn append_logs(&self, lines: &[LogRecord]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut c = self.client.lock().await;
        let tx = c.transaction().await?;
        write_logs(&tx, lines).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn logs(&self, run_id: &str, task_id: Option<&str>) -> Result<Vec<LogRecord>> {
        let c = self.client.lock().await;
        c.query(
            "SELECT run_id, task_id, attempt, ts_ms, stream, line FROM task_logs WHERE run_id = $1 AND ($2::TEXT IS NULL OR task_id = $2) ORDER BY seq",
            &[&run_id, &task_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(LogRecord {
                run_id: r.try_get(0)?,
                task_id: r.try_get(1)?,
                attempt: r.try_get::<_, i32>(2)? as u32,
                ts_ms: r.try_get(3)?,
                stream: r.try_get(4)?,
                line: r.try_get(5)?,
            })
        })
        .collect()
    }

    async fn find_cached(&self, cache_key: &str, min_ended_ms: i64) -> Result<Option<Json>> {
        let c = self.client.lock().await;
        let row = c
            .query_opt(
                "SELECT output FROM task_runs WHERE cache_key = $1 AND state = 'Completed' AND ended_ms >= $2 AND output IS NOT NULL \
                 ORDER BY ended_ms DESC LIMIT 1",
                &[&cache_key, &min_ended_ms],
            )
            .await?;
        match row {
            Some(r) => super::json_from_text(r.try_get(0)?),
            None => Ok(None),
        }
    }

    async fn schedule_cursor(&self, flow: &str, schedule: usize) -> Result<Option<i64>> {
        let c = self.client.lock().await;
        let row = c
            .query_opt(
                "SELECT until_ms FROM schedule_cursors WHERE flow = $1 AND schedule = $2",
                &[&flow, &(schedule as i32)],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_schedule_cursor(&self, flow: &str, schedule: usize, until_ms: i64) -> Result<()> {
        let c = self.client.lock().await;
        c.execute(
            "INSERT INTO schedule_cursors (flow, schedule, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (flow, schedule) DO UPDATE SET until_ms = GREATEST(schedule_cursors.until_ms, EXCLUDED.until_ms)",
            &[&flow, &(schedule as i32), &until_ms],
        )
        .await?;
        Ok(())
    }
}
