//! `tripline ingest`: load TLC files into the lake or PostgreSQL.

use std::sync::Arc;

use clap::Args;
use tripline_core::{ErrorDomain, TripKind, YearMonth};
use tripline_ingest::sink::lake::LakeSink;
use tripline_ingest::sink::postgres::{LoadMode, PostgresSink};
use tripline_ingest::{Ingest, IngestReport, Progress, SourceLocation};
use tripline_lake::Lake;

use crate::output::print_ingest_report;
use crate::{Context, Failure};

/// Load TLC files into the lake or PostgreSQL.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
tripline ingest data/yellow_tripdata_2021-01.csv.gz --kind yellow\n  \
tripline ingest 'data/green_tripdata_2021-*.parquet' --kind green --to s3://bucket/lake\n  \
tripline ingest https://host/trip-data/yellow_tripdata_2021-01.csv.gz --kind yellow \\\n      \
--to postgres://postgres@localhost:5432/ny_taxi --table yellow_taxi_data --mode append\n  \
tripline ingest seeds/taxi_zone_lookup.csv --kind zones --to postgres")]
pub struct IngestArgs {
    /// Files, globs or http(s) URLs; CSV, gzip CSV and Parquet are told apart by their content.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<String>,
    /// What the files hold.
    #[arg(long, short)]
    kind: TripKind,
    /// Where to load: a lake root (path, file://, s3://, gs://), a postgres:// URL, or `postgres` for the
    /// configured server. Default: the project's lake.
    #[arg(long, value_name = "TARGET")]
    to: Option<String>,
    /// PostgreSQL table (default: <kind>_taxi_data, or zones).
    #[arg(long)]
    table: Option<String>,
    /// PostgreSQL: append (re-loading a source replaces its rows), replace (the table becomes this load) or merge
    /// (insert only trips whose unique_row_id is new).
    #[arg(long, default_value = "append")]
    mode: LoadMode,
    /// The month the files hold (default: the YYYY-MM in each file name, else the month of most pickups).
    #[arg(long, value_name = "YYYY-MM")]
    month: Option<YearMonth>,
}

/// Where rows go.
pub enum Target {
    /// The lake at a root.
    Lake(String),
    /// A PostgreSQL server.
    Postgres(String),
}

impl Target {
    /// Resolve `--to` against the configuration.
    pub fn resolve(ctx: &Context, to: Option<&str>) -> Result<Self, Failure> {
        match to {
            None => Ok(Self::Lake(ctx.config.lake.root.clone())),
            Some("postgres") => ctx.config.postgres.url.clone().map(Self::Postgres).ok_or_else(|| {
                Failure::usage("--to postgres needs [postgres] url in tripline.toml or TRIPLINE_POSTGRES_URL")
            }),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Self::Postgres(url.to_string()))
            }
            Some(root) => Ok(Self::Lake(root.to_string())),
        }
    }
}

/// Run a load and return its report; a failure here means nothing could start (bad target, refused connection).
pub async fn load(
    ctx: &Context,
    kind: TripKind,
    sources: &[SourceLocation],
    target: &Target,
    table: Option<&str>,
    mode: LoadMode,
    month: Option<YearMonth>,
) -> Result<IngestReport, Failure> {
    let progress = Arc::new(Progress::new());
    let ingest = Ingest::new(kind)
        .with_month(month)
        .with_batch_rows(ctx.config.ingest.batch_rows)
        .with_quarantine_dir(ctx.project_dir.join(&ctx.config.ingest.quarantine_dir))
        .with_progress(progress.clone());
    let report = match target {
        Target::Lake(root) => {
            if mode != LoadMode::Append {
                return Err(Failure::usage(format!(
                    "--mode {} applies to PostgreSQL; a lake load always replaces the file of the same source",
                    format!("{mode:?}").to_lowercase()
                )));
            }
            if table.is_some() {
                return Err(Failure::usage("--table applies to PostgreSQL targets"));
            }
            let lake = Lake::open(root, &ctx.project_dir).map_err(Failure::from_error)?;
            let ticker = ctx.out.progress_bar(progress);
            let report = ingest.run(sources, &mut LakeSink::new(lake)).await;
            ticker.finish();
            report
        }
        Target::Postgres(url) => {
            let mut sink = PostgresSink::connect(url, table, kind, mode)
                .await
                .map_err(Failure::from_error)?;
            let ticker = ctx.out.progress_bar(progress);
            let report = ingest.run(sources, &mut sink).await;
            ticker.finish();
            report
        }
    };
    Ok(report)
}

/// `tripline ingest`.
pub async fn run(ctx: &Context, args: IngestArgs) -> Result<(), Failure> {
    let mut sources = Vec::new();
    for spec in &args.sources {
        sources.extend(SourceLocation::resolve(spec).map_err(Failure::from_error)?);
    }
    let target = Target::resolve(ctx, args.to.as_deref())?;
    let report = load(
        ctx,
        args.kind,
        &sources,
        &target,
        args.table.as_deref(),
        args.mode,
        args.month,
    )
    .await?;
    ctx.out.json(&report);
    print_ingest_report(&ctx.out, &report);
    finish(&report)
}

/// Exit status of a load: failed sources make it fail, after their errors were printed.
pub fn finish(report: &IngestReport) -> Result<(), Failure> {
    if report.failed == 0 {
        return Ok(());
    }
    let errors: Vec<String> = report
        .sources
        .iter()
        .filter_map(|s| s.error.clone())
        .collect();
    let domain = report
        .sources
        .iter()
        .find_map(|s| s.error_domain)
        .unwrap_or(ErrorDomain::External);
    Err(Failure::reported(
        format!(
            "{} of {} sources failed: {}",
            report.failed,
            report.sources.len(),
            errors.join("; ")
        ),
        domain,
    ))
}
