//! The interactive SQL shell of `tripline sql`: statements end with `;` and may span lines, history is kept in the
//! project, and backslash commands describe tables, toggle timing and dry runs, switch the output format and run
//! files. With input piped in, the same loop reads stdin without prompts, so scripts and tests drive it too.

use std::io::{BufRead, IsTerminal};
use std::time::Instant;

use tripline_core::ErrorDomain;
use tripline_warehouse::RunMode;
use tripline_warehouse::statement::{ends_statement, split_statements};

use crate::sql::{Engine, ResultFormat, RowSink, print_result};
use crate::{Context, Failure};

const HELP: &str = "\
Statements end with ';' and may span several lines.
  \\d              list tables          \\d ds.t       describe a table
  \\timing [on|off] show each statement's time
  \\dry [on|off]   plan only: report the bytes statements would read
  \\format table|csv|json   how rows are printed
  \\i FILE         run the statements in FILE
  \\q              quit (also Ctrl-D)";

/// Lines from a person (line editing and history) or from a pipe.
enum Input {
    Terminal(Box<rustyline::DefaultEditor>, std::path::PathBuf),
    Piped(std::io::StdinLock<'static>),
}

impl Input {
    fn open(ctx: &Context, engine: &Engine) -> Self {
        if !std::io::stdin().is_terminal() {
            return Self::Piped(std::io::stdin().lock());
        }
        let dir = ctx.project_dir.join(".tripline");
        let history = dir.join(match engine {
            Engine::Warehouse(_) => "sql_history",
            Engine::Postgres(_) => "sql_history_postgres",
        });
        match rustyline::DefaultEditor::new() {
            Ok(mut editor) => {
                let _ = std::fs::create_dir_all(&dir);
                let _ = editor.load_history(&history);
                Self::Terminal(Box::new(editor), history)
            }
            Err(_) => Self::Piped(std::io::stdin().lock()),
        }
    }

    /// The next line, or `None` at the end of input.
    fn line(&mut self, prompt: &str) -> Option<String> {
        match self {
            Self::Terminal(editor, _) => match editor.readline(prompt) {
                Ok(line) => Some(line),
                // Ctrl-C drops the statement being typed, as psql does.
                Err(rustyline::error::ReadlineError::Interrupted) => Some("\\reset".into()),
                Err(_) => None,
            },
            Self::Piped(stdin) => {
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => None,
                    Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
                }
            }
        }
    }

    fn remember(&mut self, entry: &str) {
        if let Self::Terminal(editor, history) = self {
            let _ = editor.add_history_entry(entry);
            let _ = editor.save_history(history);
        }
    }

    fn interactive(&self) -> bool {
        matches!(self, Self::Terminal(..))
    }
}

struct Settings {
    timing: bool,
    mode: RunMode,
    sink: RowSink,
}

/// Run the shell until `\q` or the end of input. Errors are printed and the shell goes on; with piped input the
/// exit code is 1 when any statement failed.
pub async fn run(
    ctx: &Context,
    engine: &Engine,
    sink: RowSink,
    mode: RunMode,
) -> Result<(), Failure> {
    let mut input = tokio::task::block_in_place(|| Input::open(ctx, engine));
    let mut settings = Settings {
        timing: false,
        mode,
        sink,
    };
    if input.interactive() && !ctx.out.quiet {
        let on = match engine {
            Engine::Warehouse(_) => format!("the warehouse in {}", ctx.config.lake.root),
            Engine::Postgres(conn) => format!("PostgreSQL {}", conn.server),
        };
        eprintln!("tripline sql on {on}. End statements with ';'. \\? for help, \\q to quit.");
    }
    let mut failures = 0usize;
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "tripline> "
        } else {
            "      -> "
        };
        let Some(line) = tokio::task::block_in_place(|| input.line(prompt)) else {
            break;
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            input.remember(trimmed);
            match command(ctx, engine, &mut settings, trimmed).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => break,
                Err(f) => {
                    failures += 1;
                    report(&f);
                }
            }
            continue;
        }
        if trimmed == "\\reset" {
            buffer.clear();
            continue;
        }
        if trimmed.is_empty() && buffer.is_empty() {
            continue;
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        if !ends_statement(&buffer) {
            continue;
        }
        let text = std::mem::take(&mut buffer);
        input.remember(text.trim());
        failures += run_text(ctx, engine, &settings, &text).await;
    }
    if !buffer.trim().is_empty() {
        // Input ended inside a statement: run it, as psql does with a file missing its last ';'.
        failures += run_text(ctx, engine, &settings, &buffer).await;
    }
    if failures > 0 && !input.interactive() {
        return Err(Failure::reported(String::new(), ErrorDomain::User));
    }
    Ok(())
}

enum Flow {
    Continue,
    Quit,
}

async fn command(
    ctx: &Context,
    engine: &Engine,
    settings: &mut Settings,
    line: &str,
) -> Result<Flow, Failure> {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or_default();
    let arg = words.next();
    let toggle = |current: bool| match arg {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        None => Ok(!current),
        Some(other) => Err(Failure::usage(format!(
            "{name}: expected on or off, got '{other}'"
        ))),
    };
    match name {
        "\\q" | "\\quit" => return Ok(Flow::Quit),
        "\\?" | "\\h" | "\\help" => outln!("{HELP}"),
        "\\timing" => {
            settings.timing = toggle(settings.timing)?;
            eprintln!("Timing is {}.", if settings.timing { "on" } else { "off" });
        }
        "\\dry" => {
            let on = toggle(settings.mode == RunMode::DryRun)?;
            settings.mode = if on { RunMode::DryRun } else { RunMode::Run };
            eprintln!("Dry run is {}.", if on { "on" } else { "off" });
        }
        "\\format" => {
            settings.sink.format = match arg {
                Some("table") => ResultFormat::Table,
                Some("csv") => ResultFormat::Csv,
                Some("json") => ResultFormat::Json,
                _ => return Err(Failure::usage("\\format takes table, csv or json")),
            };
        }
        "\\d" | "\\dt" | "\\describe" => {
            let sql = engine.describe_sql(arg);
            run_statement(ctx, engine, settings, &sql).await?;
        }
        "\\i" | "\\include" => {
            let path = arg.ok_or_else(|| Failure::usage("\\i needs a file name"))?;
            let path = ctx.project_dir.join(path);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            if run_text(ctx, engine, settings, &text).await > 0 {
                return Err(Failure::reported(String::new(), ErrorDomain::User));
            }
        }
        other => {
            return Err(Failure::usage(format!(
                "unknown command {other} (\\? lists the commands)"
            )));
        }
    }
    Ok(Flow::Continue)
}

/// Run every statement of `text`, printing each result or error; returns how many failed.
async fn run_text(ctx: &Context, engine: &Engine, settings: &Settings, text: &str) -> usize {
    let statements = match split_statements(text) {
        Ok(s) => s,
        Err(e) => {
            report(&Failure::from_error(e));
            return 1;
        }
    };
    let mut failed = 0;
    for sql in statements {
        if let Err(f) = run_statement(ctx, engine, settings, &sql).await {
            report(&f);
            failed += 1;
        }
    }
    failed
}

async fn run_statement(
    ctx: &Context,
    engine: &Engine,
    settings: &Settings,
    sql: &str,
) -> Result<(), Failure> {
    let start = Instant::now();
    let result = engine.execute(sql, settings.mode).await?;
    print_result(ctx, engine, &result, &settings.sink)?;
    if settings.timing {
        eprintln!("Time: {:.3} ms", start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}

fn report(f: &Failure) {
    if !f.message().is_empty() {
        eprintln!("error: {}", f.message());
    }
}
