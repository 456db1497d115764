//! The one error type of the flow crate and its classification.

use std::path::PathBuf;

use tripline_core::{Classify, ErrorDomain};

/// Result alias of the flow crate.
pub type Result<T, E = FlowError> = std::result::Result<T, E>;

/// Everything that can go wrong while loading, running or recording flows.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// A flow file is malformed or inconsistent; names the file and the line.
    #[error("{}:{line}: {message}", file.display())]
    FlowFile {
        /// The flow file.
        file: PathBuf,
        /// 1-based line the problem is on (the task, param or schedule it concerns).
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A flow built through the Rust API (or a stored snapshot) is inconsistent.
    #[error("flow `{flow}`: {message}")]
    InvalidFlow {
        /// Flow name.
        flow: String,
        /// What is wrong.
        message: String,
    },
    /// A parameter value is missing or does not fit its declared type.
    #[error("param `{name}`: {message}")]
    Param {
        /// Parameter name.
        name: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A flow with this name is not in the project.
    #[error("no flow named `{0}` (known flows: {1})")]
    UnknownFlow(String, String),
    /// A flow run with this id is not in the state store.
    #[error("no flow run with id `{0}`")]
    UnknownRun(String),
    /// A run cannot be resumed or claimed in its current state.
    #[error("flow run `{id}` cannot be {action}: it is {state}")]
    RunState {
        /// Run id.
        id: String,
        /// What was attempted (`resumed`, `cancelled`).
        action: &'static str,
        /// The run's current state.
        state: String,
    },
    /// A template in a task input failed to render.
    #[error("task `{task}`: template error in `{key}`: {message}")]
    Template {
        /// Task id.
        task: String,
        /// The input key (dotted path) holding the template.
        key: String,
        /// The renderer's message.
        message: String,
    },
    /// A cron expression or time zone is invalid.
    #[error("schedule: {0}")]
    Schedule(String),
    /// A feature that is designed but not built yet.
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// The SQLite state store failed.
    #[error("state store (SQLite {path}): {source}", path = path.display())]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// The driver error.
        #[source]
        source: rusqlite::Error,
    },
    /// The PostgreSQL state store failed (connection refused, query error).
    #[error("state store (PostgreSQL): {0}; is the server running and the URL right?")]
    Postgres(#[from] tokio_postgres::Error),
    /// A stored record could not be decoded (corrupt or from an incompatible version).
    #[error("state store: corrupt record: {0}")]
    Corrupt(String),
    /// File system error with the path involved.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A bug in tripline (a background task panicked, an invariant broke).
    #[error("internal error: {0}")]
    Internal(String),
}

impl FlowError {
    /// Shorthand for a flow file error.
    pub fn flow_file(file: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Self::FlowFile {
            file: file.into(),
            line,
            message: message.into(),
        }
    }

    /// Shorthand for a parameter error.
    pub fn param(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Param {
            name: name.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl Classify for FlowError {
    fn domain(&self) -> ErrorDomain {
        match self {
            Self::FlowFile { .. }
            | Self::InvalidFlow { .. }
            | Self::Param { .. }
            | Self::UnknownFlow(..)
            | Self::UnknownRun(_)
            | Self::RunState { .. }
            | Self::Template { .. }
            | Self::Schedule(_)
            | Self::NotSupported(_) => ErrorDomain::User,
            Self::Sqlite { .. } | Self::Postgres(_) | Self::Io { .. } => ErrorDomain::External,
            Self::Corrupt(_) | Self::Internal(_) => ErrorDomain::Internal,
        }
    }
}
