//! `tripline sql`: run SQL and BigQuery-style DDL in the warehouse over the lake.

use std::io::Write;
use std::path::PathBuf;

use arrow::array::RecordBatch;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tripline_warehouse::{RunMode, StatementResult, Warehouse, statement::split_statements};

use crate::output::human_bytes;
use crate::{Context, Failure};

/// Run SQL in the warehouse: queries over the lake's tables, and BigQuery-style DDL.
#[derive(Debug, Args)]
#[command(after_help = "Statements (separate several with ';'):\n  \
CREATE [OR REPLACE] EXTERNAL TABLE ds.t OPTIONS (format = 'PARQUET', uris = ['lake/raw/yellow/*'])\n  \
CREATE [OR REPLACE] TABLE ds.t [PARTITION BY DATE(ts_col) | date_col] [CLUSTER BY c1[, c2, c3, c4]]\n      \
[OPTIONS (row_group_rows = N)] AS SELECT ...\n  \
DROP TABLE [IF EXISTS] ds.t    SHOW TABLES [IN ds]    DESCRIBE ds.t\n  \
SELECT / WITH / INSERT INTO ds.t SELECT ... (DataFusion SQL; DATE(x) works as in BigQuery)\n\n\
PARTITION BY DATE(col) adds the DATE partition column <col>_date (e.g. tpep_pickup_datetime_date).\n\n\
Examples:\n  \
tripline sql -e \"SELECT count(*) FROM trips.yellow WHERE VendorID = 2\"\n  \
tripline sql -f models/yellow_partitioned.sql --dry-run")]
pub struct SqlArgs {
    /// The SQL to run (one or more statements separated by ';').
    #[arg(
        short = 'e',
        long = "execute",
        value_name = "SQL",
        conflicts_with = "file"
    )]
    execute: Option<String>,
    /// A file of SQL statements to run in order.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// How to print result rows.
    #[arg(long, default_value = "table")]
    format: ResultFormat,
    /// Plan only: print the bytes and files the statements would read after pruning, change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// How result rows are printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResultFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// `tripline sql`.
pub async fn run(ctx: &Context, args: SqlArgs) -> Result<(), Failure> {
    let script = match (&args.execute, &args.file) {
        (Some(sql), None) => sql.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?,
        _ => {
            return Err(Failure::usage(
                "give the SQL with -e 'SQL' or a file with -f FILE",
            ));
        }
    };
    let statements = split_statements(&script).map_err(Failure::from_error)?;
    if statements.is_empty() {
        return Err(Failure::usage("no SQL statement given"));
    }
    let mode = if args.dry_run {
        RunMode::DryRun
    } else {
        RunMode::Run
    };
    let warehouse = Warehouse::open(&ctx.config.lake.root, &ctx.project_dir)
        .await
        .map_err(Failure::from_error)?;
    let mut done = Vec::new();
    for sql in &statements {
        let result = match warehouse.execute(sql, mode).await {
            Ok(r) => r,
            Err(e) => {
                // Statements before the failing one did run: say so before the error.
                if !done.is_empty() {
                    ctx.out.json(&report_json(&done));
                }
                return Err(Failure::from_error(e));
            }
        };
        if !ctx.out.json {
            print_result(ctx, &result, args.format)?;
        }
        done.push(result);
    }
    ctx.out.json(&report_json(&done));
    Ok(())
}

fn print_result(ctx: &Context, r: &StatementResult, format: ResultFormat) -> Result<(), Failure> {
    let scan = format!(
        "{}{} {}, {} file{}",
        human_bytes(r.scan.bytes_scanned),
        if r.scan.estimated { " (planned)" } else { "" },
        if r.dry_run { "to scan" } else { "scanned" },
        r.scan.files_read,
        if r.scan.files_read == 1 { "" } else { "s" }
    );
    if r.dry_run {
        if !ctx.out.quiet {
            let what = r.message.clone().unwrap_or_else(|| "dry run".into());
            println!(
                "{what}: this statement will process {} ({} bytes) in {} files when run",
                human_bytes(r.scan.bytes_scanned),
                r.scan.bytes_scanned,
                r.scan.files_read
            );
        }
        return Ok(());
    }
    if r.kind == "query" || r.kind == "show_tables" || r.kind == "describe" {
        print_rows(&r.schema, &r.batches, format)?;
    }
    if ctx.out.quiet {
        return Ok(());
    }
    match (&r.message, r.kind) {
        (Some(m), "create_table") => eprintln!("{m}; read {scan} in {:.2} s", r.seconds),
        (Some(m), "describe") => eprintln!("{m}"),
        (Some(m), _) => eprintln!("{m}"),
        (None, _) => {
            let n = r.row_count();
            eprintln!(
                "{n} row{} in {:.2} s, {scan}",
                if n == 1 { "" } else { "s" },
                r.seconds
            );
        }
    }
    Ok(())
}

fn print_rows(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
    format: ResultFormat,
) -> Result<(), Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::usage(format!("printing results: {e}"));
    let mut stdout = std::io::stdout().lock();
    match format {
        ResultFormat::Table => {
            let table =
                arrow::util::pretty::pretty_format_batches_with_schema(schema.clone(), batches)
                    .map_err(|e| failed(&e))?;
            writeln!(stdout, "{table}").map_err(|e| failed(&e))?;
        }
        ResultFormat::Csv => {
            if batches.is_empty() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                writeln!(stdout, "{}", names.join(",")).map_err(|e| failed(&e))?;
            }
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut stdout);
            for batch in batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
        }
        ResultFormat::Json => {
            let rows = rows_json(batches).map_err(|e| failed(&e))?;
            writeln!(
                stdout,
                "{}",
                serde_json::to_string_pretty(&rows).expect("serialisable")
            )
            .map_err(|e| failed(&e))?;
        }
    }
    Ok(())
}

/// Result rows as JSON objects.
fn rows_json(batches: &[RecordBatch]) -> Result<Value, arrow::error::ArrowError> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_slice(&bytes).map_err(|e| arrow::error::ArrowError::JsonError(e.to_string()))
}

fn report_json(results: &[StatementResult]) -> Value {
    let statements: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "sql": r.sql,
                "kind": r.kind,
                "dry_run": r.dry_run,
                "columns": r.schema.fields().iter().map(|f| json!({
                    "name": f.name(),
                    "type": f.data_type().to_string(),
                })).collect::<Vec<_>>(),
                "rows": rows_json(&r.batches).unwrap_or(Value::Null),
                "row_count": r.row_count(),
                "bytes_scanned": r.scan.bytes_scanned,
                "files_read": r.scan.files_read,
                "bytes_estimated": r.scan.estimated,
                "seconds": r.seconds,
                "message": r.message,
            })
        })
        .collect();
    json!({
        "statements": statements,
        "bytes_scanned": results.iter().map(|r| r.scan.bytes_scanned).sum::<u64>(),
        "files_read": results.iter().map(|r| r.scan.files_read).sum::<u64>(),
    })
}
