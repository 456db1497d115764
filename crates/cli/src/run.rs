//! `tripline run`: the project's pipeline on the embedded default, run through the flow engine so it is recorded
//! like any flow run (`tripline flow runs`, `flow show`, `flow resume`): generate a month of yellow and green trips,
//! load them and the zone lookup into the lake, then, when the project has a dbt project (`dbt/dbt_project.yml`),
//! `dbt build` it in the warehouse over the lake; print the row accounts, the dbt models and where everything is.
//! The partitioned warehouse tables of the course belong to the `pipeline` flow (`tripline flow run pipeline`).

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use tokio::sync::mpsc::unbounded_channel;
use tripline_core::{ErrorDomain, TripKind};
use tripline_flow::{CancellationToken, Engine, Flow, FlowSpec, Params, Project, TaskSpec};
use tripline_ingest::IngestReport;

use crate::dbt::DbtProjectSpec;
use crate::flow::{flow_failure, open_state, task_env};
use crate::output::print_ingest_report;
use crate::tasks::{self, TaskEvent};
use crate::{Context, Failure};

/// Run the project's pipeline.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Regenerate the input files even if they exist.
    #[arg(long)]
    regenerate: bool,
    /// Stop after the loads: leave out the dbt build even when the project has a dbt project.
    #[arg(long)]
    no_dbt: bool,
}

#[derive(Serialize)]
struct PipelineReport {
    lake: String,
    flow_run: String,
    loads: Vec<IngestReport>,
    /// The dbt task's output (counts and nodes) when the run built the dbt project.
    dbt: Option<serde_json::Value>,
}

/// What the dbt step printed so far (passing tests are counted, not listed).
#[derive(Default)]
struct DbtProgress {
    tests_passed: usize,
}

/// The flow `tripline run` executes, from `[pipeline]` in tripline.toml: one chain, so the loads print in order,
/// ending with `dbt build` when `dbt_project` is given.
fn pipeline_flow(ctx: &Context, regenerate: bool, dbt_project: Option<&Path>) -> FlowSpec {
    let p = &ctx.config.pipeline;
    let mut spec = FlowSpec::new("run");
    spec.description = Some(
        "tripline run: generate a month of yellow and green trips, load them and the zone lookup into the lake, \
         and build the dbt project in the warehouse"
            .into(),
    );
    spec.concurrency = Some(1);
    let mut previous: Option<String> = None;
    for (kind, rows) in [
        (TripKind::Yellow, p.yellow_rows),
        (TripKind::Green, p.green_rows),
    ] {
        let generate = format!("generate_{kind}");
        let load = format!("load_{kind}");
        let mut task = TaskSpec::new(&generate, "datagen")
            .input("kind", kind.to_string())
            .input("month", p.month.to_string())
            .input("rows", rows)
            .input("format", "csv.gz")
            .input("path", format!("data/{kind}_tripdata_{}.csv.gz", p.month))
            .input("seed", p.seed)
            .input("keep_existing", !regenerate);
        if let Some(prev) = &previous {
            task = task.depends_on([prev.clone()]);
        }
        spec = spec.task(task).task(
            TaskSpec::new(&load, "ingest")
                .input("source", format!("{{{{ tasks.{generate}.output.path }}}}"))
                .input("kind", kind.to_string())
                .input("month", p.month.to_string()),
        );
        previous = Some(load);
    }
    let mut zones = TaskSpec::new("load_zones", "ingest")
        .input("source", p.zones.clone())
        .input("kind", "zones");
    if let Some(prev) = previous {
        zones = zones.depends_on([prev]);
    }
    spec = spec.task(zones);
    if let Some(dir) = dbt_project {
        let mut dbt = TaskSpec::new("dbt_build", "dbt")
            .input("command", "build")
            .depends_on(["load_zones".to_string()]);
        let relative = dir.strip_prefix(&ctx.project_dir).unwrap_or(dir);
        if !relative.as_os_str().is_empty() {
            dbt = dbt.input("project_dir", relative.display().to_string());
        }
        spec = spec.task(dbt);
    }
    spec
}

/// The project's dbt project, when it has one.
fn dbt_project(ctx: &Context) -> Option<PathBuf> {
    let dir = DbtProjectSpec::default().dir(ctx);
    dir.join("dbt_project.yml").is_file().then_some(dir)
}

/// `tripline run`.
pub async fn run(ctx: &Context, args: RunArgs) -> Result<(), Failure> {
    let (tx, mut rx) = unbounded_channel();
    let registry = tasks::registry(task_env(ctx, Some(tx), ctx.out));
    let dbt_dir = if args.no_dbt { None } else { dbt_project(ctx) };
    let flow = Flow::new(
        pipeline_flow(ctx, args.regenerate, dbt_dir.as_deref()),
        &registry,
    )
    .map_err(flow_failure)?;
    let project = Project::from_flows(&ctx.project_dir, [flow.clone()]).map_err(flow_failure)?;
    let store = open_state(ctx, None).await?;
    let engine = Engine::new(project, registry, store);
    let cancel = CancellationToken::new();
    tripline_flow::cancel_on_ctrl_c(cancel.clone());
    let mut handle = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run_flow(&flow, Params::new(), cancel).await })
    };
    let mut loads = Vec::new();
    let mut dbt = DbtProgress::default();
    let report = loop {
        tokio::select! {
            joined = &mut handle => break joined,
            Some(event) = rx.recv() => print_event(ctx, event, &mut loads, &mut dbt),
        }
    };
    while let Ok(event) = rx.try_recv() {
        print_event(ctx, event, &mut loads, &mut dbt);
    }
    let report = report
        .map_err(|e| Failure::from_error(tripline_flow::FlowError::Internal(e.to_string())))?
        .map_err(flow_failure)?;
    if report.state != tripline_flow::State::Completed {
        return Err(Failure::reported(
            format!(
                "{} (flow run {}; `tripline flow show {}` has every task's log, `tripline flow resume {}` \
                 finishes it)",
                report
                    .reason
                    .clone()
                    .unwrap_or_else(|| report.state.to_string()),
                report.run_id,
                report.run_id,
                report.run_id
            ),
            ErrorDomain::External,
        ));
    }

    let root = &ctx.config.lake.root;
    let lake = tripline_lake::Lake::open(root, &ctx.project_dir).map_err(Failure::from_error)?;
    let lake_root = lake
        .local_root()
        .map_or_else(|| lake.url().to_string(), |p| p.display().to_string())
        .trim_end_matches('/')
        .to_string();
    let dbt_output = report.task("dbt_build").and_then(|t| t.output.clone());
    let mut done = format!(
        "\ndone: the lake is at {lake_root}\n  raw/yellow/year=YYYY/month=MM/*.parquet, raw/green/..., raw/zones/\n  \
         query it with any Parquet reader, e.g. python3 -c \"import duckdb; print(duckdb.sql(\\\"select count(*) \
         from '{lake_root}/raw/yellow/*/*/*.parquet'\\\"))\""
    );
    match &dbt_output {
        Some(out) => {
            let schema = out["schema"].as_str().unwrap_or_default();
            let model = out["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["resource_type"] == "model")
                .filter_map(|n| n["name"].as_str())
                .next_back()
                .unwrap_or("<model>");
            let dash_c = if ctx.project_dir == Path::new(".") {
                String::new()
            } else {
                format!("-C {} ", ctx.project_dir.display())
            };
            done.push_str(&format!(
                "\n  the dbt models are warehouse tables in dataset {schema}: \
                 tripline {dash_c}sql -e \"select * from {schema}.{model} limit 10\""
            ));
        }
        None => done.push_str(
            "\n  no dbt step: the project has no dbt/dbt_project.yml (or --no-dbt was given)",
        ),
    }
    done.push_str(&format!(
        "\nrecorded as flow run {id} (tripline flow show {id}); the partitioned warehouse tables are in the \
         `pipeline` flow (tripline flow run pipeline)",
        id = report.run_id
    ));
    ctx.out.say(done);
    ctx.out.json(&PipelineReport {
        lake: lake_root,
        flow_run: report.run_id.clone(),
        loads,
        dbt: dbt_output,
    });
    Ok(())
}

fn print_event(
    ctx: &Context,
    event: TaskEvent,
    loads: &mut Vec<IngestReport>,
    dbt: &mut DbtProgress,
) {
    match event {
        TaskEvent::Generating {
            kind,
            month,
            rows,
            path,
        } => {
            // Shown as the user would type it: relative to where they are.
            let cwd = std::env::current_dir().unwrap_or_default();
            let shown = path.strip_prefix(&cwd).unwrap_or(&path);
            ctx.out.say(format!(
                "generating {rows} {kind} trips for {month} -> {}",
                shown.display()
            ))
        }
        TaskEvent::Loading { kind, target } if kind == "zones" => ctx
            .out
            .say(format!("loading the zone lookup into {target}")),
        TaskEvent::Loading { kind, target } => ctx.out.say(format!("loading {kind} into {target}")),
        TaskEvent::Loaded(report) => {
            print_ingest_report(&ctx.out, &report);
            loads.push(*report);
        }
        TaskEvent::DbtStarting { command, project } => {
            *dbt = DbtProgress::default();
            let shown = project.strip_prefix(&ctx.project_dir).unwrap_or(&project);
            ctx.out.say(format!(
                "dbt {command} of the dbt project {} in the warehouse",
                if shown.as_os_str().is_empty() {
                    ".".to_string()
                } else {
                    format!("{}/", shown.display())
                }
            ));
        }
        TaskEvent::DbtNode {
            resource_type,
            description,
            status,
            message,
            seconds,
        } => {
            let first = message.lines().next().unwrap_or_default();
            let line = match status.as_str() {
                "pass" if resource_type == "test" => {
                    dbt.tests_passed += 1;
                    return;
                }
                "success" => format!("  {description}: {first} ({seconds:.2} s)"),
                "skipped" => format!("  SKIP {description}"),
                _ => format!("  {} {description}: {first}", status.to_uppercase()),
            };
            ctx.out.say(line);
        }
        TaskEvent::DbtDone { summary } => {
            if dbt.tests_passed > 0 {
                ctx.out.say(format!(
                    "  {} data test{} passed",
                    dbt.tests_passed,
                    if dbt.tests_passed == 1 { "" } else { "s" }
                ));
            }
            ctx.out.say(format!("  {summary}"));
        }
    }
}
