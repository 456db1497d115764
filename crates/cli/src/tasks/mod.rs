//! The task types that reach tripline's other crates, one small file each, registered into the flow engine's
//! registry next to its built-ins (`shell`, `download`, `flow`): `ingest`, `sql`, `datagen`, `lake_upload`, `dbt`
//! and `echo`.

pub mod datagen;
pub mod dbt;
pub mod echo;
pub mod ingest;
pub mod lake_upload;
pub mod sql;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use tokio::sync::mpsc::UnboundedSender;
use tripline_core::Config;
use tripline_flow::{TaskFailure, TaskRegistry};
use tripline_ingest::IngestReport;

use crate::output::Output;
use crate::{Context, Failure};

/// What a command that runs flows wants to hear from the tasks while they run (`tripline run` prints the loads as
/// `tripline ingest` does).
#[derive(Debug)]
pub enum TaskEvent {
    /// A datagen task starts generating a file.
    Generating {
        /// Trip kind.
        kind: String,
        /// Month.
        month: String,
        /// Rows.
        rows: u64,
        /// The file.
        path: PathBuf,
    },
    /// An ingest task starts loading.
    Loading {
        /// Trip kind.
        kind: String,
        /// Where to: `the lake` or the PostgreSQL server.
        target: String,
    },
    /// An ingest task finished its load (every source accounted for, failed ones included).
    Loaded(Box<IngestReport>),
    /// A dbt task starts a command on a dbt project.
    DbtStarting {
        /// `build`, `run`, ...
        command: String,
        /// The dbt project directory.
        project: PathBuf,
    },
    /// A dbt node ended (or was skipped).
    DbtNode {
        /// `model`, `seed`, `test`, `snapshot`.
        resource_type: String,
        /// What dbt calls it: `sql table model dbt_nyc.fact_trips`, `test not_null_x`.
        description: String,
        /// dbt's status: `success`, `error`, `skipped`, `pass`, `fail`, `warn`.
        status: String,
        /// The database's response (`SELECT 5`), the error, or the failing rows.
        message: String,
        /// Seconds the node took.
        seconds: f64,
    },
    /// A dbt task's command finished: dbt's `Done. PASS=..` line.
    DbtDone {
        /// The summary line.
        summary: String,
    },
}

/// The project the tasks work in: its directory and configuration (lake root, PostgreSQL URL, batch size).
#[derive(Debug, Clone)]
pub struct TaskEnv {
    /// The project directory.
    pub project_dir: PathBuf,
    /// The project configuration.
    pub config: Config,
    /// Receives progress events when a command listens.
    pub events: Option<UnboundedSender<TaskEvent>>,
    /// How loads show progress (`tripline run` draws its bars; flows with concurrent tasks stay quiet).
    pub out: Output,
}

impl TaskEnv {
    /// A command context for calling the same code the CLI commands use, printing nothing.
    pub fn context(&self) -> Context {
        Context {
            project_dir: self.project_dir.clone(),
            config: self.config.clone(),
            out: self.out,
        }
    }

    /// Sends an event to the listening command, if any.
    pub fn emit(&self, event: TaskEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }
}

/// The registry every flow command uses: the engine's built-ins plus tripline's own task types.
pub fn registry(env: TaskEnv) -> TaskRegistry {
    let env = Arc::new(env);
    let mut r = TaskRegistry::with_builtins();
    r.register(ingest::IngestTask::new(env.clone()));
    r.register(sql::SqlTask::new(env.clone()));
    r.register(datagen::DatagenTask::new(env.clone()));
    r.register(lake_upload::LakeUploadTask::new(env.clone()));
    r.register(dbt::DbtTask::new(env));
    r.register(echo::EchoTask);
    r
}

/// A CLI failure as a task failure: problems outside tripline (a refused connection, a network error) may go away
/// on retry; bad inputs and bugs will not.
pub fn task_failure(f: Failure) -> TaskFailure {
    if f.domain == tripline_core::ErrorDomain::External && !f.usage {
        TaskFailure::retryable(f.message)
    } else {
        TaskFailure::fatal(f.message)
    }
}

/// Accepts `5000` or `"5000"`: templates always render to strings (`rows: "{{ params.rows }}"`).
pub fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Int(n)) => Ok(Some(n)),
        Some(Raw::Text(s)) => {
            s.trim().parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!("expected a whole number, got `{s}`"))
            })
        }
    }
}

/// Accepts `true` or `"true"` (and `false` / `"false"`), for templated flags.
pub fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Bool(b)) => Ok(Some(b)),
        Some(Raw::Text(s)) => match s.trim() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!(
                "expected true or false, got `{other}`"
            ))),
        },
    }
}

/// Accepts one string or a list of strings (`source: a.csv` or `sources: [a.csv, b.csv]`).
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(s) => vec![s],
        Raw::Many(v) => v,
    })
}

/// Checks a task's input keys when the flow loads (values may still be templates, so only names are checked):
/// every key must be known and the required ones present (`a|b` means one of them).
pub fn check_keys(
    inputs: &serde_json::Value,
    known: &[&str],
    required: &[&str],
) -> Result<(), String> {
    let map = inputs
        .as_object()
        .ok_or_else(|| "inputs must be a mapping".to_string())?;
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `{k}` (expected one of: {})",
            known.join(", ")
        ));
    }
    for r in required {
        if !r.split('|').any(|k| map.contains_key(k)) {
            return Err(format!("missing key `{}`", r.replace('|', "` or `")));
        }
    }
    Ok(())
}
