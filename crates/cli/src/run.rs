//! `tripline run`: the project's pipeline on the embedded default. Today: generate a month of yellow and green
//! trips, load them and the zone lookup into the lake, and print the row accounts and where the files are.

use clap::Args;
use serde::Serialize;
use tripline_core::TripKind;
use tripline_datagen::OutputFormat;
use tripline_ingest::sink::postgres::LoadMode;
use tripline_ingest::{IngestReport, SourceLocation};

use crate::ingest::{Target, finish, load};
use crate::output::print_ingest_report;
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
    loads: Vec<IngestReport>,
}

/// `tripline run`.
pub async fn run(ctx: &Context, args: RunArgs) -> Result<(), Failure> {
    let p = &ctx.config.pipeline;
    let data_dir = ctx.project_dir.join("data");
    let root = ctx.config.lake.root.clone();
    let target = Target::Lake(root.clone());
    let mut loads = Vec::new();
    for (kind, rows) in [
        (TripKind::Yellow, p.yellow_rows),
        (TripKind::Green, p.green_rows),
    ] {
        let file = data_dir.join(format!("{kind}_tripdata_{}.csv.gz", p.month));
        if args.regenerate || !file.exists() {
            ctx.out.say(format!(
                "generating {rows} {kind} trips for {} -> {}",
                p.month,
                file.display()
            ));
            crate::datagen::generate(kind, p.month, rows, OutputFormat::CsvGz, &file, p.seed, 0.0)?;
        }
        let sources =
            SourceLocation::resolve(&file.display().to_string()).map_err(Failure::from_error)?;
        ctx.out.say(format!("loading {kind} into the lake"));
        let report = load(
            ctx,
            kind,
            &sources,
            &target,
            None,
            LoadMode::Append,
            Some(p.month),
        )
        .await?;
        print_ingest_report(&ctx.out, &report);
        finish(&report)?;
        loads.push(report);
    }
    let zones = ctx.project_dir.join(&p.zones);
    let sources =
        SourceLocation::resolve(&zones.display().to_string()).map_err(Failure::from_error)?;
    ctx.out.say("loading the zone lookup into the lake");
    let report = load(
        ctx,
        TripKind::Zones,
        &sources,
        &target,
        None,
        LoadMode::Append,
        None,
    )
    .await?;
    print_ingest_report(&ctx.out, &report);
    finish(&report)?;
    loads.push(report);
    let lake = tripline_lake::Lake::open(&root, &ctx.project_dir).map_err(Failure::from_error)?;
    let lake_root = lake
        .local_root()
        .map_or_else(|| lake.url().to_string(), |p| p.display().to_string())
        .trim_end_matches('/')
        .to_string();
    ctx.out.say(format!(
        "\ndone: the lake is at {lake_root}\n  raw/yellow/year=YYYY/month=MM/*.parquet, raw/green/..., raw/zones/\n  \
         query it with any Parquet reader, e.g. python3 -c \"import duckdb; print(duckdb.sql(\\\"select count(*) \
         from '{lake_root}/raw/yellow/*/*/*.parquet'\\\"))\""
    ));
    ctx.out.json(&PipelineReport {
        lake: lake_root,
        loads,
    });
    Ok(())
}
