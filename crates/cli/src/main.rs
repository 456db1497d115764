//! `tripline`: the NYC taxi data-engineering stack in one binary. This crate only parses flags, loads the project
//! configuration, shows progress and renders results and errors; the work lives in the library crates.

/// `println!` through [`output::Stdout`]: a closed pipe (`tripline ... | head`) ends the process quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!($crate::output::Stdout, $($arg)*) {
            panic!("failed printing to stdout: {e}");
        }
    }};
}

mod datagen;
mod dbt;
mod flow;
mod ingest;
mod output;
mod run;
mod shell;
mod sql;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tripline_core::{Classify, Config, ErrorDomain};

/// tripline: ingest, store and model NYC taxi trips on one laptop, or on real infrastructure when you outgrow it.
#[derive(Debug, Parser)]
#[command(name = "tripline", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success, 1 the job failed (bad data, unreachable system), 2 bad usage or config.

Configuration: tripline.toml in the project directory. Any key can be overridden with TRIPLINE_<SECTION>_<KEY>, \
e.g. TRIPLINE_LAKE_ROOT=s3://bucket/lake or TRIPLINE_POSTGRES_URL=postgres://user@host/db."
)]
struct Cli {
    /// The project directory (where tripline.toml, the lake and quarantine files live).
    #[arg(
        short = 'C',
        long = "project-dir",
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    project_dir: PathBuf,
    /// Print only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate deterministic synthetic TLC trip data (any size, CSV / CSV.gz / Parquet).
    Datagen(datagen::DatagenArgs),
    /// Run and inspect the project's flows: run, ls, runs, show, resume, cancel, backfill.
    Flow(flow::FlowArgs),
    /// Load TLC files into the lake or PostgreSQL, validating every value.
    Ingest(ingest::IngestArgs),
    /// Run the project's pipeline on the embedded default: generate a month of trips and load it into the lake.
    Run(run::RunArgs),
    /// Run SQL in the warehouse over the lake (BigQuery-style DDL, DML, dry runs) or in PostgreSQL; a shell without -e.
    Sql(sql::SqlArgs),
    /// Run due flow schedules and queued flow runs until Ctrl-C (several workers may share a PostgreSQL store).
    Worker(flow::WorkerArgs),
    /// Run a dbt project (models, seeds, tests, docs) on the embedded warehouse or PostgreSQL.
    Dbt(dbt::DbtArgs),
}

/// An error on its way to the user, with who must act on it.
#[derive(Debug)]
pub struct Failure {
    message: String,
    domain: ErrorDomain,
    usage: bool,
}

impl Failure {
    /// A failure from any library error.
    pub fn from_error<E: Classify + std::fmt::Display>(e: E) -> Self {
        Self {
            message: e.to_string(),
            domain: e.domain(),
            usage: false,
        }
    }

    /// A usage or configuration problem (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            domain: ErrorDomain::User,
            usage: true,
        }
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A failure already reported in the command's own output (exit code 1, no further message).
    pub fn reported(message: impl Into<String>, domain: ErrorDomain) -> Self {
        Self {
            message: message.into(),
            domain,
            usage: false,
        }
    }
}

/// What every command gets: the project and how to print.
pub struct Context {
    /// The project directory.
    pub project_dir: PathBuf,
    /// The loaded configuration.
    pub config: Config,
    /// How to print.
    pub out: output::Output,
}

fn main() -> ExitCode {
    tripline_malloc::tune();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRIPLINE_LOG")
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let out = output::Output {
        quiet: cli.quiet,
        json: cli.json,
    };
    let config = match Config::load(&cli.project_dir, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            return render(Failure {
                usage: true,
                ..Failure::from_error(e)
            });
        }
    };
    let ctx = Context {
        project_dir: cli.project_dir,
        config,
        out,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Datagen(args) => datagen::run(&ctx, args),
            Command::Ingest(args) => ingest::run(&ctx, args).await,
            Command::Run(args) => run::run(&ctx, args).await,
            Command::Sql(args) => sql::run(&ctx, args).await,
            Command::Flow(args) => flow::run(&ctx, args).await,
            Command::Worker(args) => flow::worker(&ctx, args).await,
            Command::Dbt(args) => dbt::run(&ctx, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => render(f),
    }
}

fn render(f: Failure) -> ExitCode {
    if !f.message.is_empty() {
        let hint = match f.domain {
            ErrorDomain::External => {
                "\n  (an outside system failed: fix it and re-run; completed loads are kept, none is duplicated)"
            }
            ErrorDomain::Internal => {
                "\n  (this is a bug in tripline: please report it with the command you ran)"
            }
            ErrorDomain::User => "",
        };
        eprintln!("error: {}{hint}", f.message);
    }
    ExitCode::from(if f.usage { 2 } else { 1 })
}
