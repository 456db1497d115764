//! Errors of the dbt layer, classified by who must act.

use std::path::PathBuf;

use tripline_core::{Classify, ErrorDomain};

/// Errors of the dbt layer.
#[derive(Debug, thiserror::Error)]
pub enum DbtError {
    /// A project file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A YAML file is malformed or has a value of the wrong shape.
    #[error("{file}{location}: {message}")]
    Yaml {
        /// The file, relative to the project when possible.
        file: String,
        /// ` line L column C` when known, empty otherwise.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A project, profile, package or property is wrong (missing profile, unknown target, bad config...).
    #[error("{0}")]
    Config(String),
    /// A Jinja template failed to parse or render.
    #[error("compilation error in {file}{line}: {message}{context}")]
    Compile {
        /// The file where the error happened (a model, a macro file...).
        file: String,
        /// ` line N` when known.
        line: String,
        /// What went wrong.
        message: String,
        /// `\n  while compiling model.x.y (models/y.sql)` when the error is inside a macro.
        context: String,
    },
    /// The node graph is wrong: a missing ref or source, a cycle, a duplicate name.
    #[error("{0}")]
    Graph(String),
    /// A selector (`-s`/`--exclude`) cannot be parsed.
    #[error("invalid selector `{selector}`: {message}")]
    Selector {
        /// The selector as given.
        selector: String,
        /// What is wrong.
        message: String,
    },
    /// The database behind the adapter failed or refused.
    #[error("{0}")]
    Adapter(#[from] crate::adapter::AdapterError),
    /// Something tripline's dbt layer does not do yet.
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DbtError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl Classify for DbtError {
    fn domain(&self) -> ErrorDomain {
        match self {
            Self::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    ErrorDomain::User
                }
                _ => ErrorDomain::External,
            },
            Self::Yaml { .. }
            | Self::Config(_)
            | Self::Compile { .. }
            | Self::Graph(_)
            | Self::Selector { .. }
            | Self::NotSupported(_) => ErrorDomain::User,
            Self::Adapter(e) => e.domain(),
            Self::Internal(_) => ErrorDomain::Internal,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DbtError> = std::result::Result<T, E>;
