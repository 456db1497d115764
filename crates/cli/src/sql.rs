//! `tripline sql`: run SQL and BigQuery-style DDL in the warehouse over the lake.

use std::io::Write;
use std::path::PathBuf;

use arrow::array::RecordBatch;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tripline_warehouse::{RunMode, StatementResult, Warehouse, statement::split_statements};

use crate::output::human_bytes;
use crate::{Context, Failure};

/// Run SQL in the warehouse: queries over the lake's tables, and BigQuery-style DDL and DML. Without -e or -f, an
/// interactive shell (or, with input piped in, the statements read from stdin).
#[derive(Debug, Args)]
#[command(after_help = "Statements (separate several with ';'):\n  \
CREATE [OR REPLACE] EXTERNAL TABLE ds.t OPTIONS (format = 'PARQUET', uris = ['lake/raw/yellow/*'])\n  \
CREATE [OR REPLACE] TABLE ds.t [PARTITION BY DATE(ts_col) | date_col] [CLUSTER BY c1[, c2, c3, c4]]\n      \
[OPTIONS (row_group_rows = N)] AS SELECT ...\n  \
INSERT INTO ds.t [(cols)] SELECT ... | VALUES (...)    DELETE FROM ds.t WHERE ...\n  \
UPDATE ds.t SET c = expr WHERE ...\n  \
MERGE INTO ds.t [AS t] USING src [AS s] ON ... WHEN MATCHED [AND ...] THEN UPDATE SET ... | DELETE\n      \
WHEN NOT MATCHED THEN INSERT (cols) VALUES (...) | INSERT ROW    WHEN NOT MATCHED BY SOURCE THEN ...\n  \
DROP TABLE [IF EXISTS] ds.t    SHOW TABLES [IN ds]    DESCRIBE ds.t\n  \
SELECT / WITH ... (DataFusion SQL; DATE(x) works as in BigQuery)\n\n\
PARTITION BY DATE(col) adds the DATE partition column <col>_date (e.g. tpep_pickup_datetime_date).\n\n\
In the shell: end statements with ';'. \\d lists tables, \\d ds.t describes one, \\timing toggles timing,\n\
\\dry toggles dry runs, \\format table|csv|json, \\i FILE runs a file, \\q quits, \\? for help.\n\n\
Examples:\n  \
tripline sql -e \"SELECT count(*) FROM trips.yellow WHERE VendorID = 2\"\n  \
tripline sql -f models/yellow_partitioned.sql --dry-run\n  \
tripline sql --postgres -e \"SELECT count(*) FROM yellow_taxi_data\"\n  \
tripline sql -e \"SELECT * FROM trips.yellow LIMIT 1000\" --format parquet -o sample.parquet")]
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
    /// Write result rows to this file instead of stdout (needed for --format parquet on a terminal).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Plan only: print the bytes and files the statements would read after pruning, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run against PostgreSQL instead of the warehouse: the [postgres] url of tripline.toml, or the URL given.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    postgres: Option<String>,
}

/// How result rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResultFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
    /// A Parquet file (with -o FILE, or stdout when it is not a terminal).
    Parquet,
}

/// Where statements run: the embedded warehouse over the lake, or a PostgreSQL server (pass-through).
pub enum Engine {
    /// The warehouse.
    Warehouse(Box<Warehouse>),
    /// PostgreSQL.
    Postgres(tripline_pg::Connection),
}

impl Engine {
    /// The warehouse (`None`), or PostgreSQL at a URL (`Some("")`: the project's `[postgres] url`).
    pub async fn open(ctx: &Context, postgres: Option<&str>) -> Result<Self, Failure> {
        match postgres {
            None => Ok(Self::Warehouse(Box::new(
                Warehouse::open(&ctx.config.lake.root, &ctx.project_dir)
                    .await
                    .map_err(Failure::from_error)?,
            ))),
            Some(url) => {
                let url = if url.is_empty() {
                    ctx.config.postgres.url.clone().ok_or_else(|| {
                        Failure::usage(
                            "--postgres needs a URL: give one (--postgres postgres://user@host/db), set [postgres] \
                             url in tripline.toml, or TRIPLINE_POSTGRES_URL",
                        )
                    })?
                } else {
                    url.to_string()
                };
                Ok(Self::Postgres(
                    tripline_pg::connect(&url)
                        .await
                        .map_err(Failure::from_error)?,
                ))
            }
        }
    }

    /// Whether statements report bytes scanned (the warehouse does; PostgreSQL does not say).
    pub fn reports_scan(&self) -> bool {
        matches!(self, Self::Warehouse(_))
    }

    /// `at host:port` of the PostgreSQL server (none for the warehouse).
    pub fn server(&self) -> Option<&str> {
        match self {
            Self::Warehouse(_) => None,
            Self::Postgres(conn) => Some(&conn.server),
        }
    }

    /// Run one statement.
    pub async fn execute(&self, sql: &str, mode: RunMode) -> Result<StatementResult, Failure> {
        match self {
            Self::Warehouse(w) => w.execute(sql, mode).await.map_err(Failure::from_error),
            Self::Postgres(conn) => {
                if mode == RunMode::DryRun {
                    return Err(Failure::usage(
                        "not supported yet: --dry-run against PostgreSQL (use EXPLAIN to see its plan)",
                    ));
                }
                let start = std::time::Instant::now();
                let out = tripline_pg::query(conn, sql)
                    .await
                    .map_err(Failure::from_error)?;
                let has_rows = !out.schema.fields().is_empty();
                Ok(StatementResult {
                    sql: sql.to_string(),
                    kind: if has_rows { "query" } else { "statement" },
                    schema: out.schema,
                    batches: out.batches,
                    scan: Default::default(),
                    message: (!has_rows).then(|| format!("{} rows affected", out.rows_affected)),
                    seconds: start.elapsed().as_secs_f64(),
                    dry_run: false,
                    rows_affected: Some(out.rows_affected),
                })
            }
        }
    }

    /// The statement behind the shell's `\d` (no table: list tables; a table: describe it).
    pub fn describe_sql(&self, table: Option<&str>) -> String {
        match (self, table) {
            (Self::Warehouse(_), None) => "SHOW TABLES".into(),
            (Self::Warehouse(_), Some(t)) => format!("DESCRIBE {t}"),
            (Self::Postgres(_), None) => {
                "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                 WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
                    .into()
            }
            (Self::Postgres(_), Some(t)) => {
                let (schema, name) = t.rsplit_once('.').unwrap_or(("public", t));
                format!(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                     WHERE table_schema = '{}' AND table_name = '{}' ORDER BY ordinal_position",
                    schema.replace('\'', "''"),
                    name.replace('\'', "''")
                )
            }
        }
    }
}

/// `tripline sql`.
pub async fn run(ctx: &Context, args: SqlArgs) -> Result<(), Failure> {
    let script = match (&args.execute, &args.file) {
        (Some(sql), None) => Some(sql.clone()),
        (None, Some(file)) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?,
        ),
        (None, None) => None,
        _ => {
            return Err(Failure::usage(
                "give the SQL with -e 'SQL' or a file with -f FILE, not both",
            ));
        }
    };
    let mode = if args.dry_run {
        RunMode::DryRun
    } else {
        RunMode::Run
    };
    let sink = RowSink::new(args.format, args.output.clone())?;
    let Some(script) = script else {
        let engine = Engine::open(ctx, args.postgres.as_deref()).await?;
        return crate::shell::run(ctx, &engine, sink, mode).await;
    };
    let statements = split_statements(&script).map_err(Failure::from_error)?;
    if statements.is_empty() {
        return Err(Failure::usage("no SQL statement given"));
    }
    let engine = Engine::open(ctx, args.postgres.as_deref()).await?;
    let mut done = Vec::new();
    for sql in &statements {
        let result = match engine.execute(sql, mode).await {
            Ok(r) => r,
            Err(e) => {
                // Statements before the failing one did run: say so before the error.
                if !done.is_empty() {
                    ctx.out.json(&report_json(&done));
                }
                return Err(e);
            }
        };
        if !ctx.out.json {
            print_result(ctx, &engine, &result, &sink)?;
        }
        done.push(result);
    }
    sink.finish(&done)?;
    ctx.out.json(&report_json(&done));
    Ok(())
}

/// Where result rows go: printed as they come (table, csv, json), or collected into one Parquet file.
pub struct RowSink {
    /// The format.
    pub format: ResultFormat,
    output: Option<PathBuf>,
}

impl RowSink {
    fn new(format: ResultFormat, output: Option<PathBuf>) -> Result<Self, Failure> {
        use std::io::IsTerminal;
        if format == ResultFormat::Parquet && output.is_none() && std::io::stdout().is_terminal() {
            return Err(Failure::usage(
                "--format parquet writes a binary file: give -o FILE (or redirect stdout)",
            ));
        }
        if let Some(path) = &output
            && format != ResultFormat::Parquet
        {
            // Text formats append statement by statement: start from an empty file.
            std::fs::File::create(path)
                .map_err(|e| Failure::usage(format!("cannot create {}: {e}", path.display())))?;
        }
        Ok(Self { format, output })
    }

    /// Write collected rows (Parquet) once all statements ran.
    fn finish(&self, results: &[StatementResult]) -> Result<(), Failure> {
        if self.format != ResultFormat::Parquet {
            return Ok(());
        }
        let with_rows: Vec<&StatementResult> = results
            .iter()
            .filter(|r| has_rows(r) && !r.dry_run)
            .collect();
        let Some(last) = with_rows.last() else {
            return Ok(());
        };
        if with_rows.len() > 1 {
            return Err(Failure::usage(
                "--format parquet writes one result: the script has several statements returning rows",
            ));
        }
        let failed = |e: &dyn std::fmt::Display| Failure::usage(format!("writing Parquet: {e}"));
        let mut buffer = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut buffer, last.schema.clone(), None)
                .map_err(|e| failed(&e))?;
        for batch in &last.batches {
            writer.write(batch).map_err(|e| failed(&e))?;
        }
        writer.close().map_err(|e| failed(&e))?;
        match &self.output {
            Some(path) => std::fs::write(path, &buffer)
                .map_err(|e| Failure::usage(format!("cannot write {}: {e}", path.display()))),
            None => crate::output::Stdout
                .write_all(&buffer)
                .map_err(|e| failed(&e)),
        }
    }
}

fn has_rows(r: &StatementResult) -> bool {
    matches!(r.kind, "query" | "show_tables" | "describe")
}

/// Print one statement's rows (stdout) and what it did (stderr).
pub fn print_result(
    ctx: &Context,
    engine: &Engine,
    r: &StatementResult,
    sink: &RowSink,
) -> Result<(), Failure> {
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
            outln!(
                "{what}: this statement will process {} ({} bytes) in {} files when run",
                human_bytes(r.scan.bytes_scanned),
                r.scan.bytes_scanned,
                r.scan.files_read
            );
        }
        return Ok(());
    }
    if has_rows(r) && sink.format != ResultFormat::Parquet {
        print_rows(&r.schema, &r.batches, sink)?;
    }
    if ctx.out.quiet {
        return Ok(());
    }
    match (&r.message, r.kind) {
        (Some(m), "create_table" | "insert" | "delete" | "update" | "merge") => {
            eprintln!("{m}; read {scan} in {:.2} s", r.seconds)
        }
        (Some(m), "describe") => eprintln!("{m}"),
        (Some(m), _) => eprintln!("{m}"),
        (None, _) if !engine.reports_scan() => {
            let n = r.row_count();
            eprintln!(
                "{n} row{} in {:.2} s",
                if n == 1 { "" } else { "s" },
                r.seconds
            );
        }
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
    sink: &RowSink,
) -> Result<(), Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::usage(format!("printing results: {e}"));
    let mut out: Box<dyn Write> = match &sink.output {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Failure::usage(format!("cannot open {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::BufWriter::new(crate::output::Stdout)),
    };
    let stdout = &mut out;
    match sink.format {
        ResultFormat::Parquet => {}
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
                .build(&mut *stdout);
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
    stdout.flush().map_err(|e| failed(&e))
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
                "rows_affected": r.rows_affected,
            })
        })
        .collect();
    json!({
        "statements": statements,
        "bytes_scanned": results.iter().map(|r| r.scan.bytes_scanned).sum::<u64>(),
        "files_read": results.iter().map(|r| r.scan.files_read).sum::<u64>(),
    })
}
