//! `tripline run`: the project's pipeline on the embedded default, run through the flow engine so it is recorded
//! like any flow run (`tripline flow runs`, `flow show`, `flow resume`). Today: generate a month of yellow and green
//! trips, load them and the zone lookup into the lake, and print the row accounts and where the files are. The
//! warehouse and dbt steps belong to the `pipeline` flow (`tripline flow run pipeline`); dbt is left out here
//! until its runner lands, so this command keeps succeeding.

use clap::Args;
use serde::Serialize;
use tokio::sync::mpsc::unbounded_channel;
use tripline_core::{ErrorDomain, TripKind};
use tripline_flow::{CancellationToken, Engine, Flow, FlowSpec, Params, Project, TaskSpec};
use tripline_ingest::IngestReport;

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
}

#[derive(Serialize)]
struct PipelineReport {
    lake: String,
    flow_run: String,
    loads: Vec<IngestReport>,
}

/// The flow `tripline run` executes, from `[pipeline]` in tripline.toml: one chain, so the loads print in order.
fn pipeline_flow(ctx: &Context, regenerate: bool) -> FlowSpec {
    let p = &ctx.config.pipeline;
    let mut spec = FlowSpec::new("run");
    spec.description = Some(
        "tripline run: generate a month of yellow and green trips and load them and the zone lookup into the lake"
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
    spec.task(zones)
}

/// `tripline run`.
pub async fn run(ctx: &Context, args: RunArgs) -> Result<(), Failure> {
    let (tx, mut rx) = unbounded_channel();
    let registry = tasks::registry(task_env(ctx, Some(tx), ctx.out));
    let flow = Flow::new(pipeline_flow(ctx, args.regenerate), &registry).map_err(flow_failure)?;
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
    let report = loop {
        tokio::select! {
            joined = &mut handle => break joined,
            Some(event) = rx.recv() => print_event(ctx, event, &mut loads),
        }
    };
    while let Ok(event) = rx.try_recv() {
        print_event(ctx, event, &mut loads);
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
    ctx.out.say(format!(
        "\ndone: the lake is at {lake_root}\n  raw/yellow/year=YYYY/month=MM/*.parquet, raw/green/..., raw/zones/\n  \
         query it with any Parquet reader, e.g. python3 -c \"import duckdb; print(duckdb.sql(\\\"select count(*) \
         from '{lake_root}/raw/yellow/*/*/*.parquet'\\\"))\"\n\
         recorded as flow run {id} (tripline flow show {id}); the warehouse and dbt steps are in the `pipeline` flow \
         (tripline flow run pipeline); dbt is not part of `tripline run`: {}",
        tasks::dbt::NOT_AVAILABLE,
        id = report.run_id,
    ));
    ctx.out.json(&PipelineReport {
        lake: lake_root,
        flow_run: report.run_id.clone(),
        loads,
    });
    Ok(())
}

fn print_event(ctx: &Context, event: TaskEvent, loads: &mut Vec<IngestReport>) {
    match event {
        TaskEvent::Generating {
            kind,
            month,
            rows,
            path,
        } => ctx.out.say(format!(
            "generating {rows} {kind} trips for {month} -> {}",
            path.display()
        )),
        TaskEvent::Loading { kind, target } if kind == "zones" => ctx
            .out
            .say(format!("loading the zone lookup into {target}")),
        TaskEvent::Loading { kind, target } => ctx.out.say(format!("loading {kind} into {target}")),
        TaskEvent::Loaded(report) => {
            print_ingest_report(&ctx.out, &report);
            loads.push(*report);
        }
    }
}
