//! Generate one file and print the report with the time it took:
//! `cargo run --release -p tripline-datagen --example generate -- yellow 2021-01 1000000 csv /tmp/y.csv [dirty_rate]`

use std::time::Instant;

use tripline_core::{TripKind, YearMonth};
use tripline_datagen::{OutputFormat, TripGenerator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        return Err(
            "usage: generate KIND YYYY-MM ROWS csv|csv.gz|parquet PATH [DIRTY_RATE]".into(),
        );
    }
    let kind: TripKind = args[0].parse()?;
    let month: YearMonth = args[1].parse()?;
    let rows: u64 = args[2].parse()?;
    let format: OutputFormat = args[3].parse()?;
    let dirty_rate: f64 = args.get(5).map(|r| r.parse()).transpose()?.unwrap_or(0.0);
    let start = Instant::now();
    let report = TripGenerator::new(kind, month)
        .with_dirty_rate(dirty_rate)
        .write(rows, format, args[4].as_ref())?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} rows ({} dirty), {} bytes in {secs:.3} s = {:.0} rows/s -> {}",
        report.rows,
        report.dirty_rows,
        report.bytes,
        report.rows as f64 / secs,
        report.path.display()
    );
    Ok(())
}
