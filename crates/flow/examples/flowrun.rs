//! A minimal command line over the library, used by the crash/resume test and handy for trying flows:
//!
//! ```text
//! cargo run -p tripline-flow --example flowrun -- <project> run <flow> [name=value ...]
//! cargo run -p tripline-flow --example flowrun -- <project> resume <run-id>
//! cargo run -p tripline-flow --example flowrun -- <project> runs
//! ```

use std::sync::Arc;

use tripline_flow::params::parse_assignments;
use tripline_flow::store::SqliteStore;
use tripline_flow::{
    CancellationToken, Engine, Project, RunFilter, TaskRegistry, cancel_on_ctrl_c,
};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> tripline_flow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: flowrun <project> run <flow> [name=value ...] | resume <run-id> | runs";
    let (Some(project_dir), Some(command)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let registry = TaskRegistry::with_builtins();
    let project = Project::load(project_dir, &registry)?;
    let store = Arc::new(SqliteStore::open_in_project(project.dir())?);
    let engine = Engine::new(project, registry, store);
    let token = CancellationToken::new();
    cancel_on_ctrl_c(token.clone());
    let report = match (command.as_str(), args.get(2)) {
        ("run", Some(flow)) => {
            engine
                .run_with_cancel(flow, parse_assignments(&args[3..])?, token)
                .await?
        }
        ("resume", Some(id)) => engine.resume_with_cancel(id, token).await?,
        ("runs", _) => {
            for r in engine.list_runs(&RunFilter::default()).await? {
                let secs = r
                    .duration()
                    .map(|d| format!("{:.1}s", d.as_secs_f64()))
                    .unwrap_or_default();
                println!(
                    "{}  {:<20} {:<10} {:>8}  {}",
                    r.id,
                    r.flow,
                    r.state,
                    secs,
                    serde_json::to_string(&r.params).unwrap_or_default()
                );
            }
            return Ok(());
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    println!("run {} {}", report.run_id, report.state);
    for t in &report.tasks {
        println!(
            "  {:<20} {:<10} attempts={} {}",
            t.task_id,
            t.state,
            t.attempts,
            t.reason.clone().unwrap_or_default()
        );
    }
    Ok(())
}
