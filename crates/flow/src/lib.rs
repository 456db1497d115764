//! tripline's orchestrator: flows of tasks declared in YAML (`flows/*.yaml`) or in Rust, run as a DAG with bounded
//! concurrency, retries, timeouts and result caching; every run, task run, attempt and log line recorded in a state
//! store (SQLite in the project by default, PostgreSQL for several workers); crashed runs detected and resumed;
//! cron schedules with time zones and parameter backfills run by workers.
//!
//! ```no_run
//! # async fn demo() -> tripline_flow::Result<()> {
//! use tripline_flow::{Engine, Project, TaskRegistry, params::parse_assignments, store::open_store};
//! let registry = TaskRegistry::with_builtins(); // add your own types with registry.register(...)
//! let project = Project::load("examples/nyc-taxi", &registry)?;
//! let store = open_store(project.dir(), None).await?;
//! let engine = Engine::new(project, registry, store);
//! let report = engine.run("yellow_to_lake", parse_assignments(["month=2021-03"])?).await?;
//! println!("{} {}", report.run_id, report.state);
//! # Ok(()) }
//! ```

pub mod duration;
pub mod engine;
pub mod error;
pub mod model;
pub mod params;
pub mod schedule;
pub mod store;
pub mod task;
pub mod tasks;
pub mod template;
pub mod worker;

pub use engine::{BackfillReport, Engine, EngineOptions, RunDetail, RunReport, cancel_on_ctrl_c};
pub use error::{FlowError, Result};
pub use model::{CachePolicy, Flow, FlowSpec, Project, RetryDelay, TaskSpec};
pub use params::{ParamSpec, ParamType, Params};
pub use schedule::ScheduleSpec;
pub use store::{FlowRunRecord, RunFilter, State, StateStore, TaskRunRecord};
pub use task::{Task, TaskContext, TaskFailure, TaskRegistry};
pub use tokio_util::sync::CancellationToken;
pub use worker::{Worker, WorkerOptions, WorkerStats};
