//! `tripline flow ...` and `tripline worker`: run the project's flows (`flows/*.yaml`) with the orchestrator in
//! `tripline-flow`, list and inspect runs, resume, cancel and backfill them, and serve schedules and queued runs.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc::UnboundedSender;
use tripline_core::ErrorDomain;
use tripline_flow::params::parse_assignments;
use tripline_flow::store::{StateStore, open_store};
use tripline_flow::{
    CancellationToken, Engine, FlowError, FlowRunRecord, Params, Project, RunFilter, RunReport,
    State, TaskRunRecord, Worker, WorkerOptions, cancel_on_ctrl_c,
};

use crate::output::Output;
use crate::tasks::{self, TaskEnv, TaskEvent};
use crate::{Context, Failure};

/// Run and inspect the project's flows.
#[derive(Debug, Args)]
#[command(
    after_help = "Flows are YAML files in <project>/flows/ (see crates/flow/README.md for the format).\n\n\
Examples:\n  \
tripline flow ls\n  \
tripline flow run web_to_lake --param service=green --param month=2021-03\n  \
tripline flow runs\n  \
tripline flow show 3f2a9c0d1e4b5a67\n  \
tripline flow resume 3f2a9c0d1e4b5a67\n  \
tripline flow backfill web_to_lake --param month=2019-01..2020-12 --max-active 2\n  \
tripline worker --state postgres://postgres@localhost/tripline"
)]
pub struct FlowArgs {
    #[command(subcommand)]
    command: FlowCommand,
    /// The state store: postgres://... (shared by workers) or sqlite:<path>. Default: [flow] state_url in
    /// tripline.toml (TRIPLINE_FLOW_STATE_URL), else SQLite in <project>/.tripline/state.db.
    #[arg(long, global = true, value_name = "URL")]
    state: Option<String>,
}

#[derive(Debug, Subcommand)]
enum FlowCommand {
    /// Run a flow now and wait for it; prints each task as it finishes.
    Run {
        /// The flow's name.
        flow: String,
        /// A parameter value, NAME=VALUE (repeatable).
        #[arg(short, long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// List the project's flows with their parameters and schedules.
    Ls,
    /// List flow runs, newest first.
    Runs {
        /// Only runs of this flow.
        #[arg(long)]
        flow: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Include subflow runs.
        #[arg(long)]
        all: bool,
    },
    /// Show one run: its tasks' states, attempts, timings and logs.
    Show {
        /// The run id.
        run: String,
    },
    /// Finish a crashed, failed or cancelled run: completed tasks are kept, the rest run again.
    Resume {
        /// The run id.
        run: String,
    },
    /// Cancel a run: a queued run at once, a running one at its owner's next heartbeat.
    Cancel {
        /// The run id.
        run: String,
    },
    /// Queue one run per value of a parameter range and (unless --no-wait) run them here until the queue is empty.
    Backfill {
        /// The flow's name.
        flow: String,
        /// Parameter values, NAME=VALUE; exactly one takes a range: month=2019-01..2020-12, n=1..10 or a,b,c.
        #[arg(short, long = "param", value_name = "NAME=VALUE", required = true)]
        params: Vec<String>,
        /// At most this many runs of the backfill at once, across all workers.
        #[arg(long, default_value_t = 1)]
        max_active: u32,
        /// Only queue the runs; `tripline worker` runs them.
        #[arg(long)]
        no_wait: bool,
    },
}

/// Run due schedules and queued runs until Ctrl-C.
#[derive(Debug, Args)]
#[command(
    after_help = "Several workers may share one PostgreSQL state store (--state postgres://...): each run is \
claimed by exactly one of them. Ctrl-C stops the worker; runs it was executing end Cancelled and can be resumed."
)]
pub struct WorkerArgs {
    /// The state store: postgres://... or sqlite:<path> (default as for `tripline flow`).
    #[arg(long, value_name = "URL")]
    state: Option<String>,
    /// Flow runs executed at once by this worker.
    #[arg(long, default_value_t = 2)]
    max_runs: usize,
    /// Do not turn schedules into runs (only execute queued runs).
    #[arg(long)]
    no_schedules: bool,
    /// Stop when nothing is queued or running (instead of waiting for more).
    #[arg(long)]
    until_idle: bool,
    /// How often to look for queued runs when idle (e.g. 500ms, 2s).
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    poll: String,
}

/// `tripline flow ...`.
pub async fn run(ctx: &Context, args: FlowArgs) -> Result<(), Failure> {
    let state = args.state.as_deref();
    match args.command {
        FlowCommand::Ls => list_flows(ctx),
        FlowCommand::Run { flow, params } => {
            let engine = open_engine(ctx, state, None).await?;
            let params = parse_assignments(&params).map_err(flow_failure)?;
            engine.project().flow(&flow).map_err(flow_failure)?;
            let cancel = CancellationToken::new();
            cancel_on_ctrl_c(cancel.clone());
            let fut = {
                let (engine, flow) = (engine.clone(), flow.clone());
                async move { engine.run_with_cancel(&flow, params, cancel).await }
            };
            let report = watch_run(ctx, &engine, RunToWatch::New(flow), fut).await?;
            finish_run(ctx, &report)
        }
        FlowCommand::Runs { flow, limit, all } => {
            let engine = open_engine(ctx, state, None).await?;
            let runs = engine
                .list_runs(&RunFilter {
                    flow,
                    top_level_only: !all,
                    limit,
                    ..RunFilter::default()
                })
                .await
                .map_err(flow_failure)?;
            print_runs(&ctx.out, &runs);
            Ok(())
        }
        FlowCommand::Show { run } => {
            let engine = open_engine(ctx, state, None).await?;
            show_run(ctx, &engine, &run).await
        }
        FlowCommand::Resume { run } => {
            let engine = open_engine(ctx, state, None).await?;
            let before = engine
                .store()
                .flow_run(&run)
                .await
                .map_err(flow_failure)?
                .ok_or_else(|| flow_failure(FlowError::UnknownRun(run.clone())))?;
            ctx.out.say(format!(
                "resuming run {} of flow {} (it is {})",
                before.id, before.flow, before.state
            ));
            let cancel = CancellationToken::new();
            cancel_on_ctrl_c(cancel.clone());
            let fut = {
                let (engine, id) = (engine.clone(), run.clone());
                async move { engine.resume_with_cancel(&id, cancel).await }
            };
            let report = watch_run(ctx, &engine, RunToWatch::Known(run), fut).await?;
            finish_run(ctx, &report)
        }
        FlowCommand::Cancel { run } => {
            let engine = open_engine(ctx, state, None).await?;
            let before = engine
                .store()
                .flow_run(&run)
                .await
                .map_err(flow_failure)?
                .ok_or_else(|| flow_failure(FlowError::UnknownRun(run.clone())))?;
            if before.state.is_final() {
                return Err(flow_failure(FlowError::RunState {
                    id: run,
                    action: "cancelled",
                    state: before.state.to_string(),
                }));
            }
            let after = engine.cancel(&run).await.map_err(flow_failure)?;
            ctx.out
                .json(&json!({"run_id": run, "state": after.as_str()}));
            if after == State::Cancelled {
                ctx.out.say(format!("run {run} cancelled"));
            } else {
                ctx.out.say(format!(
                    "run {run} ({after}): cancel requested; its owner stops it at its next heartbeat"
                ));
            }
            Ok(())
        }
        FlowCommand::Backfill {
            flow,
            params,
            max_active,
            no_wait,
        } => backfill(ctx, state, &flow, &params, max_active, no_wait).await,
    }
}

/// `tripline worker`.
pub async fn worker(ctx: &Context, args: WorkerArgs) -> Result<(), Failure> {
    let poll = tripline_flow::duration::parse_duration(&args.poll)
        .map_err(|e| Failure::usage(format!("--poll: {e}")))?;
    let engine = open_engine(ctx, args.state.as_deref(), None).await?;
    let cancel = CancellationToken::new();
    cancel_on_ctrl_c(cancel.clone());
    let worker = Worker::new(
        engine.clone(),
        WorkerOptions {
            poll_interval: poll,
            max_runs: args.max_runs.max(1),
            schedules: !args.no_schedules,
            ..WorkerOptions::default()
        },
    );
    let owner = engine.owner().clone();
    ctx.out.say(format!(
        "worker {} (pid {}) on {}: {} flows, {} schedules; {}",
        owner.id,
        owner.pid,
        store_name(ctx, args.state.as_deref()),
        engine.project().flows().count(),
        if args.no_schedules {
            "schedules off".to_string()
        } else {
            engine
                .project()
                .flows()
                .map(|f| f.spec().schedules.iter().filter(|s| s.enabled).count())
                .sum::<usize>()
                .to_string()
        },
        if args.until_idle {
            "stops when idle"
        } else {
            "Ctrl-C stops"
        }
    ));
    let fut = {
        let cancel = cancel.clone();
        async move {
            if args.until_idle {
                worker.run_until_idle(cancel).await
            } else {
                worker.run(cancel).await
            }
        }
    };
    let stats = watch_worker(ctx, &engine, fut)
        .await
        .map_err(flow_failure)?;
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in &stats.runs {
        *by_state.entry(s.as_str()).or_default() += 1;
    }
    ctx.out.json(&json!({
        "worker": owner.id,
        "runs": stats.runs.iter().map(|(id, s)| json!({"run_id": id, "state": s.as_str()})).collect::<Vec<_>>(),
        "scheduled": stats.scheduled,
    }));
    ctx.out.say(format!(
        "worker stopped: ran {} runs ({}), queued {} from schedules",
        stats.runs.len(),
        if by_state.is_empty() {
            "none".to_string()
        } else {
            by_state
                .iter()
                .map(|(s, n)| format!("{n} {}", s.to_lowercase()))
                .collect::<Vec<_>>()
                .join(", ")
        },
        stats.scheduled.len()
    ));
    Ok(())
}

/// The engine of the project: its flows loaded with tripline's task types, and the state store.
pub async fn open_engine(
    ctx: &Context,
    state: Option<&str>,
    events: Option<UnboundedSender<TaskEvent>>,
) -> Result<Engine, Failure> {
    let registry = tasks::registry(task_env(ctx, events, quiet()));
    let project = Project::load(&ctx.project_dir, &registry).map_err(flow_failure)?;
    let store = open_state(ctx, state).await?;
    Ok(Engine::new(project, registry, store))
}

/// What the tasks of this process work with.
pub fn task_env(ctx: &Context, events: Option<UnboundedSender<TaskEvent>>, out: Output) -> TaskEnv {
    TaskEnv {
        project_dir: ctx.project_dir.clone(),
        config: ctx.config.clone(),
        events,
        out,
    }
}

/// Output for tasks running inside flows: several may run at once, so no progress bars.
fn quiet() -> Output {
    Output {
        quiet: true,
        json: false,
    }
}

/// The state store selected by `--state`, else `[flow] state_url`, else SQLite in the project.
pub async fn open_state(
    ctx: &Context,
    state: Option<&str>,
) -> Result<std::sync::Arc<dyn StateStore>, Failure> {
    let url = state
        .map(str::to_string)
        .or_else(|| ctx.config.flow.state_url.clone());
    open_store(&ctx.project_dir, url.as_deref())
        .await
        .map_err(flow_failure)
}

fn store_name(ctx: &Context, state: Option<&str>) -> String {
    match state
        .map(str::to_string)
        .or_else(|| ctx.config.flow.state_url.clone())
    {
        Some(url) => redact(&url),
        None => ctx
            .project_dir
            .join(".tripline/state.db")
            .display()
            .to_string(),
    }
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

/// Flow errors for people: a bad flow file, parameter or run id is a usage error (exit 2).
pub fn flow_failure(e: FlowError) -> Failure {
    match e {
        FlowError::FlowFile { .. }
        | FlowError::InvalidFlow { .. }
        | FlowError::Param { .. }
        | FlowError::UnknownFlow(..)
        | FlowError::UnknownRun(_)
        | FlowError::RunState { .. }
        | FlowError::Template { .. }
        | FlowError::Schedule(_)
        | FlowError::NotSupported(_) => Failure::usage(e.to_string()),
        other => Failure::from_error(other),
    }
}

/// Which run a command waits for.
pub enum RunToWatch {
    /// A run this process is about to start: found by flow name and this engine's owner id.
    New(String),
    /// A run with a known id (resume).
    Known(String),
}

/// Waits for `fut` (a run in this process), printing each task of the run as it finishes, then what is left.
pub async fn watch_run<F>(
    ctx: &Context,
    engine: &Engine,
    which: RunToWatch,
    fut: F,
) -> Result<RunReport, Failure>
where
    F: Future<Output = tripline_flow::Result<RunReport>> + Send + 'static,
{
    let mut handle = tokio::spawn(fut);
    let mut printer = TaskPrinter::new(ctx.out);
    let mut run_id = match &which {
        RunToWatch::Known(id) => Some(id.clone()),
        RunToWatch::New(_) => None,
    };
    let watching = !ctx.out.quiet && !ctx.out.json;
    let report = loop {
        tokio::select! {
            joined = &mut handle => {
                break joined.map_err(|e| Failure::from_error(FlowError::Internal(format!("flow run panicked: {e}"))))?
                    .map_err(flow_failure)?;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)), if watching => {
                if run_id.is_none() && let RunToWatch::New(flow) = &which {
                    run_id = find_own_run(engine, flow).await;
                    if let Some(id) = &run_id {
                        printer.header(engine, id).await;
                    }
                }
                if let Some(id) = &run_id && let Ok(tasks) = engine.store().task_runs(id).await {
                    printer.print_finished(&tasks);
                }
            }
        }
    };
    if run_id.is_none() && watching {
        printer.header(engine, &report.run_id).await;
    }
    printer.print_finished(&report.tasks);
    Ok(report)
}

async fn find_own_run(engine: &Engine, flow: &str) -> Option<String> {
    let runs = engine
        .store()
        .list_flow_runs(&RunFilter {
            flow: Some(flow.to_string()),
            top_level_only: true,
            limit: 20,
            ..RunFilter::default()
        })
        .await
        .ok()?;
    runs.into_iter()
        .find(|r| r.owner.as_ref().map(|o| &o.id) == Some(&engine.owner().id))
        .map(|r| r.id)
}

/// Prints task lines once each, as tasks reach a final state.
struct TaskPrinter {
    out: Output,
    printed: HashSet<String>,
    width: usize,
}

impl TaskPrinter {
    fn new(out: Output) -> Self {
        Self {
            out,
            printed: HashSet::new(),
            width: 12,
        }
    }

    async fn header(&mut self, engine: &Engine, run_id: &str) {
        if let Ok(Some(run)) = engine.store().flow_run(run_id).await {
            if let Ok(flow) = engine.project().flow(&run.flow) {
                self.width = flow
                    .spec()
                    .tasks
                    .iter()
                    .map(|t| t.id.len())
                    .max()
                    .unwrap_or(12)
                    .max(4);
            }
            self.out.say(format!(
                "run {} of flow {}{}",
                run.id,
                run.flow,
                match params_text(&run.params) {
                    p if p.is_empty() => String::new(),
                    p => format!(" ({p})"),
                }
            ));
        }
    }

    fn print_finished(&mut self, tasks: &[TaskRunRecord]) {
        for t in tasks {
            if t.state.is_final() && self.printed.insert(t.task_id.clone()) {
                self.out.say(format!("  {}", task_line(t, self.width)));
            }
        }
    }
}

fn task_line(t: &TaskRunRecord, width: usize) -> String {
    let duration = match (t.started_ms, t.ended_ms) {
        (Some(s), Some(e)) if t.state != State::Cached => seconds((e - s).max(0)),
        _ => "-".into(),
    };
    let detail = if t.state.is_success() {
        t.output
            .as_ref()
            .and_then(|o| o.get("summary"))
            .and_then(Json::as_str)
            .map(str::to_string)
            .unwrap_or_default()
    } else {
        t.reason.clone().unwrap_or_default()
    };
    let attempts = if t.attempts > 1 {
        format!("  ({} attempts)", t.attempts)
    } else {
        String::new()
    };
    format!(
        "{:<width$}  {:<9}  {:>7}  {detail}{attempts}",
        t.task_id,
        t.state.as_str(),
        duration
    )
    .trim_end()
    .to_string()
}

/// The summary line and exit status of a finished run.
fn finish_run(ctx: &Context, report: &RunReport) -> Result<(), Failure> {
    ctx.out.json(&report_json(report));
    let mut counts: std::collections::HashMap<State, usize> = std::collections::HashMap::new();
    for t in &report.tasks {
        *counts.entry(t.state).or_default() += 1;
    }
    let count = |s: State| counts.get(&s).copied().unwrap_or(0);
    let duration = report
        .tasks
        .iter()
        .filter_map(|t| t.started_ms)
        .min()
        .zip(report.tasks.iter().filter_map(|t| t.ended_ms).max())
        .map(|(s, e)| seconds((e - s).max(0)))
        .unwrap_or_else(|| "-".into());
    let mut line = format!(
        "{} run {} {} in {duration}: {} completed, {} cached, {} failed, {} not run",
        report.flow,
        report.run_id,
        report.state,
        count(State::Completed),
        count(State::Cached),
        count(State::Failed),
        count(State::NotRun)
    );
    let cancelled = count(State::Cancelled);
    if cancelled > 0 {
        line.push_str(&format!(", {cancelled} cancelled"));
    }
    ctx.out.say(line);
    if report.state == State::Completed {
        return Ok(());
    }
    Err(Failure::reported(
        format!(
            "flow run {} {}: {}",
            report.run_id,
            report.state.as_str().to_lowercase(),
            report.reason.clone().unwrap_or_default()
        ),
        ErrorDomain::User,
    ))
}

fn report_json(report: &RunReport) -> Json {
    json!({
        "run_id": report.run_id,
        "flow": report.flow,
        "state": report.state.as_str(),
        "reason": report.reason,
        "tasks": report.tasks,
    })
}

fn list_flows(ctx: &Context) -> Result<(), Failure> {
    let registry = tasks::registry(task_env(ctx, None, quiet()));
    let project = Project::load(&ctx.project_dir, &registry).map_err(flow_failure)?;
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for flow in project.flows() {
        let spec = flow.spec();
        let params: Vec<String> = spec
            .params
            .iter()
            .map(|(name, p)| {
                let kind = if p.values.is_empty() {
                    p.kind.name().to_string()
                } else {
                    p.values.join("|")
                };
                match &p.default {
                    Some(d) => format!("{name}: {kind} = {}", json_text(d)),
                    None => format!("{name}: {kind} (required)"),
                }
            })
            .collect();
        let schedules: Vec<String> = spec
            .schedules
            .iter()
            .map(|s| {
                format!(
                    "{} {}{}",
                    s.cron,
                    s.timezone.as_deref().unwrap_or("UTC"),
                    if s.enabled { "" } else { " (disabled)" }
                )
            })
            .collect();
        let file = flow
            .source()
            .map(|p| {
                p.strip_prefix(&ctx.project_dir)
                    .unwrap_or(p)
                    .display()
                    .to_string()
            })
            .unwrap_or_default();
        out.push(json!({
            "name": spec.name,
            "description": spec.description,
            "params": spec.params,
            "schedules": spec.schedules,
            "tasks": spec.tasks.iter().map(|t| json!({"id": t.id, "type": t.kind})).collect::<Vec<_>>(),
            "file": file,
        }));
        rows.push(vec![
            spec.name.clone(),
            spec.tasks.len().to_string(),
            params.join(", "),
            schedules.join("; "),
            file,
        ]);
    }
    ctx.out.json(&out);
    if rows.is_empty() {
        ctx.out.say(format!(
            "no flows in {} (add YAML files there)",
            ctx.project_dir.join("flows").display()
        ));
        return Ok(());
    }
    ctx.out.say(table(
        &["FLOW", "TASKS", "PARAMS", "SCHEDULES", "FILE"],
        &rows,
    ));
    Ok(())
}

fn print_runs(out: &Output, runs: &[FlowRunRecord]) {
    out.json(&runs.iter().map(run_json).collect::<Vec<_>>());
    if runs.is_empty() {
        out.say("no flow runs yet");
        return;
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.flow.clone(),
                params_text(&r.params),
                r.state.to_string(),
                r.started_ms.map(time_text).unwrap_or_else(|| "-".into()),
                r.duration()
                    .map(|d| seconds(d.as_millis() as i64))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.say(table(
        &["ID", "FLOW", "PARAMS", "STATE", "STARTED (UTC)", "DURATION"],
        &rows,
    ));
}

fn run_json(r: &FlowRunRecord) -> Json {
    json!({
        "id": r.id,
        "flow": r.flow,
        "params": r.params,
        "state": r.state.as_str(),
        "reason": r.reason,
        "parent_id": r.parent_id,
        "backfill_id": r.backfill_id,
        "created_ms": r.created_ms,
        "started_ms": r.started_ms,
        "ended_ms": r.ended_ms,
        "duration_ms": r.duration().map(|d| d.as_millis() as u64),
        "owner": r.owner,
    })
}

async fn show_run(ctx: &Context, engine: &Engine, id: &str) -> Result<(), Failure> {
    let detail = engine.show_run(id).await.map_err(flow_failure)?;
    let run = &detail.run;
    let mut tasks = detail.tasks.clone();
    if let Ok(spec) = serde_json::from_str::<tripline_flow::FlowSpec>(&run.flow_snapshot) {
        let order: BTreeMap<&str, usize> = spec
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        tasks.sort_by_key(|t| order.get(t.task_id.as_str()).copied().unwrap_or(usize::MAX));
    }
    ctx.out.json(&json!({
        "run": run_json(run),
        "tasks": tasks,
        "attempts": detail.attempts,
        "logs": detail.logs,
    }));
    if ctx.out.quiet || ctx.out.json {
        return Ok(());
    }
    outln!("run {}  flow {}  {}", run.id, run.flow, run.state);
    if !run.params.is_empty() {
        outln!("params:   {}", params_text(&run.params));
    }
    outln!(
        "started:  {}   ended: {}   duration: {}",
        run.started_ms.map(time_text).unwrap_or_else(|| "-".into()),
        run.ended_ms.map(time_text).unwrap_or_else(|| "-".into()),
        run.duration()
            .map(|d| seconds(d.as_millis() as i64))
            .unwrap_or_else(|| "-".into())
    );
    if let Some(o) = &run.owner {
        outln!("owner:    pid {} on {} (engine {})", o.pid, o.host, o.id);
    }
    if let Some(b) = &run.backfill_id {
        outln!("backfill: {b}");
    }
    if let Some(p) = &run.parent_id {
        outln!("parent:   {p}");
    }
    if let Some(r) = &run.reason {
        outln!("reason:   {r}");
    }
    outln!();
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let detail = if t.state.is_success() {
                t.output
                    .as_ref()
                    .and_then(|o| o.get("summary"))
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .unwrap_or_default()
            } else {
                t.reason.clone().unwrap_or_default()
            };
            vec![
                t.task_id.clone(),
                t.task_type.clone(),
                t.state.to_string(),
                t.attempts.to_string(),
                t.started_ms.map(time_text).unwrap_or_else(|| "-".into()),
                match (t.started_ms, t.ended_ms) {
                    (Some(s), Some(e)) if t.state != State::Cached => seconds((e - s).max(0)),
                    _ => "-".into(),
                },
                detail,
            ]
        })
        .collect();
    outln!(
        "{}",
        table(
            &[
                "TASK", "TYPE", "STATE", "ATTEMPTS", "STARTED", "DURATION", "DETAIL"
            ],
            &rows
        )
    );
    if !detail.attempts.is_empty() {
        outln!("\nattempts:");
        for a in &detail.attempts {
            outln!(
                "  {} #{}  {:<9}  {}  {}{}",
                a.task_id,
                a.attempt,
                a.state.as_str(),
                time_text(a.started_ms),
                a.ended_ms
                    .map(|e| seconds((e - a.started_ms).max(0)))
                    .unwrap_or_else(|| "-".into()),
                a.error
                    .as_ref()
                    .map(|e| format!("  {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if !detail.logs.is_empty() {
        outln!("\nlogs:");
        for l in &detail.logs {
            outln!("  [{} #{} {}] {}", l.task_id, l.attempt, l.stream, l.line);
        }
    }
    Ok(())
}

async fn backfill(
    ctx: &Context,
    state: Option<&str>,
    flow: &str,
    params: &[String],
    max_active: u32,
    no_wait: bool,
) -> Result<(), Failure> {
    let engine = open_engine(ctx, state, None).await?;
    let mut base = Params::new();
    let mut range: Option<(String, String)> = None;
    for item in params {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--param {item}: expected NAME=VALUE")))?;
        if v.contains("..") || v.contains(',') {
            if let Some((other, _)) = &range {
                return Err(Failure::usage(format!(
                    "only one parameter takes a range: both `{other}` and `{k}` do"
                )));
            }
            range = Some((k.trim().to_string(), v.to_string()));
        } else {
            base.insert(k.trim().to_string(), Json::String(v.to_string()));
        }
    }
    let Some((param, values)) = range else {
        return Err(Failure::usage(
            "a backfill needs one parameter with a range, e.g. --param month=2019-01..2020-12 or --param service=yellow,green",
        ));
    };
    let report = engine
        .backfill(flow, base, &param, &values, max_active)
        .await
        .map_err(flow_failure)?;
    ctx.out.say(format!(
        "backfill {}: queued {} runs of {flow} for {param}={values}, at most {} at once",
        report.id,
        report.run_ids.len(),
        max_active.max(1)
    ));
    if no_wait {
        ctx.out
            .json(&json!({"backfill_id": report.id, "run_ids": report.run_ids}));
        ctx.out
            .say("not waiting: `tripline worker` runs them (`tripline flow runs` shows them)");
        return Ok(());
    }
    let cancel = CancellationToken::new();
    cancel_on_ctrl_c(cancel.clone());
    let worker = Worker::new(
        engine.clone(),
        WorkerOptions {
            poll_interval: Duration::from_millis(200),
            max_runs: max_active.max(1) as usize,
            schedules: false,
            ..WorkerOptions::default()
        },
    );
    let fut = async move { worker.run_until_idle(cancel).await };
    watch_worker(ctx, &engine, fut)
        .await
        .map_err(flow_failure)?;
    let runs = engine
        .store()
        .list_flow_runs(&RunFilter {
            backfill_id: Some(report.id.clone()),
            ..RunFilter::default()
        })
        .await
        .map_err(flow_failure)?;
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &runs {
        *by_state.entry(r.state.as_str()).or_default() += 1;
    }
    ctx.out.json(&json!({
        "backfill_id": report.id,
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
    }));
    ctx.out.say(format!(
        "backfill {}: {} runs: {}",
        report.id,
        runs.len(),
        by_state
            .iter()
            .map(|(s, n)| format!("{n} {}", s.to_lowercase()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let unfinished = runs.iter().filter(|r| r.state != State::Completed).count();
    if unfinished > 0 {
        return Err(Failure::reported(
            format!(
                "{unfinished} of {} backfill runs did not complete (tripline flow show <id>, then flow resume <id>)",
                runs.len()
            ),
            ErrorDomain::User,
        ));
    }
    Ok(())
}

/// Waits for a worker loop, printing each run it finishes.
async fn watch_worker<F>(
    ctx: &Context,
    engine: &Engine,
    fut: F,
) -> tripline_flow::Result<tripline_flow::WorkerStats>
where
    F: Future<Output = tripline_flow::Result<tripline_flow::WorkerStats>> + Send + 'static,
{
    let mut handle = tokio::spawn(fut);
    let mut printed: HashSet<String> = HashSet::new();
    let watching = !ctx.out.quiet && !ctx.out.json;
    let mine = engine.owner().id.clone();
    let print_new = |runs: Vec<FlowRunRecord>, printed: &mut HashSet<String>| {
        let mut finished: Vec<&FlowRunRecord> = runs
            .iter()
            .filter(|r| {
                r.state.is_final()
                    && r.parent_id.is_none()
                    && r.owner.as_ref().map(|o| &o.id) == Some(&mine)
            })
            .collect();
        finished.sort_by_key(|r| r.ended_ms);
        for r in finished {
            if printed.insert(r.id.clone()) {
                ctx.out.say(format!(
                    "  {}  {}  {}  {:<9}  {}{}",
                    r.id,
                    r.flow,
                    params_text(&r.params),
                    r.state.as_str(),
                    r.duration()
                        .map(|d| seconds(d.as_millis() as i64))
                        .unwrap_or_else(|| "-".into()),
                    r.reason
                        .as_ref()
                        .map(|x| format!("  {x}"))
                        .unwrap_or_default()
                ));
            }
        }
    };
    let recent = RunFilter {
        limit: 200,
        ..RunFilter::default()
    };
    let result = loop {
        tokio::select! {
            joined = &mut handle => {
                break joined.map_err(|e| FlowError::Internal(format!("worker panicked: {e}")))?;
            }
            _ = tokio::time::sleep(Duration::from_millis(500)), if watching => {
                if let Ok(runs) = engine.store().list_flow_runs(&recent).await {
                    print_new(runs, &mut printed);
                }
            }
        }
    };
    if watching && let Ok(runs) = engine.store().list_flow_runs(&recent).await {
        print_new(runs, &mut printed);
    }
    result
}

/// `month=2021-01, service=yellow`.
fn params_text(params: &Params) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", json_text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Milliseconds as `0.42 s`, `12.3 s` or `4m05s`.
fn seconds(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// A stored timestamp (ms since the epoch) as `2026-11-24 09:00:01` UTC.
fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Left-aligned columns separated by two spaces.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}
