//! `tripline datagen`: deterministic synthetic TLC trips.

use std::path::PathBuf;

use clap::Args;
use tripline_core::{TripKind, YearMonth};
use tripline_datagen::{OutputFormat, TripGenerator};

use crate::output::human_bytes;
use crate::{Context, Failure};

/// Generate deterministic synthetic TLC trip data.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  tripline datagen --kind yellow --month 2021-01 --rows 1000000 --format csv.gz \
--output data/yellow_tripdata_2021-01.csv.gz"
)]
pub struct DatagenArgs {
    /// Which TLC data set to imitate.
    #[arg(long, short)]
    kind: TripKind,
    /// The month the trips happen in.
    #[arg(long, value_name = "YYYY-MM")]
    month: YearMonth,
    /// How many rows.
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// csv (the TLC's CSV era layout), csv.gz, or parquet (the current layout).
    #[arg(long, default_value = "csv")]
    format: OutputFormat,
    /// The file to write.
    #[arg(long, short)]
    output: PathBuf,
    /// Same seed, same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Fraction of rows made invalid on purpose (bad numbers, impossible timestamps, missing fields, unknown zones).
    #[arg(long, default_value_t = 0.0)]
    dirty_rate: f64,
}

/// Generate one file and return what was written.
pub fn generate(
    kind: TripKind,
    month: YearMonth,
    rows: u64,
    format: OutputFormat,
    output: &std::path::Path,
    seed: u64,
    dirty_rate: f64,
) -> Result<tripline_datagen::DatagenReport, Failure> {
    if !(0.0..=1.0).contains(&dirty_rate) {
        return Err(Failure::usage(format!(
            "--dirty-rate must be between 0 and 1, got {dirty_rate}"
        )));
    }
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::usage(format!("cannot create {}: {e}", dir.display())))?;
    }
    TripGenerator::new(kind, month)
        .with_seed(seed)
        .with_dirty_rate(dirty_rate)
        .write(rows, format, output)
        .map_err(Failure::from_error)
}

/// `tripline datagen`.
pub fn run(ctx: &Context, args: DatagenArgs) -> Result<(), Failure> {
    let output = if args.output.is_absolute() {
        args.output.clone()
    } else {
        ctx.project_dir.join(&args.output)
    };
    let start = std::time::Instant::now();
    let report = generate(
        args.kind,
        args.month,
        args.rows,
        args.format,
        &output,
        args.seed,
        args.dirty_rate,
    )?;
    ctx.out.json(&report);
    ctx.out.say(format!(
        "wrote {} {} rows for {} to {} ({}, {}, {} dirty rows, {:.2} s)",
        report.rows,
        args.kind,
        args.month,
        report.path.display(),
        args.format,
        human_bytes(report.bytes),
        report.dirty_rows,
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}
