//! Errors of a load, each naming the source or target at fault and saying who must act.

use tripline_core::{Classify, ErrorDomain};
use tripline_lake::LakeError;

/// Why a load failed. A failed load never leaves a partial result visible in its target.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The source's content is not a usable file of the kind (empty, wrong header, truncated, not CSV/Parquet).
    #[error("{source_name}: {message}")]
    BadSource {
        /// The file or URL.
        source_name: String,
        /// What is wrong, specifically.
        message: String,
    },
    /// The source could not be fetched or opened (missing file, HTTP error, network failure).
    #[error("{source_name}: {message}")]
    Fetch {
        /// The file or URL.
        source_name: String,
        /// What failed.
        message: String,
        /// Whether the user names the wrong thing (missing file, 404) rather than a system failing.
        user: bool,
    },
    /// A glob matched nothing.
    #[error("no files match '{0}'")]
    NoMatch(String),
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// PostgreSQL refused or failed.
    #[error("PostgreSQL{}: {message}", target.as_deref().map(|t| format!(" {t}")).unwrap_or_default())]
    Postgres {
        /// Host/port or table concerned.
        target: Option<String>,
        /// What happened and what to do.
        message: String,
        /// Who must act.
        domain: ErrorDomain,
    },
    /// Writing the quarantine file failed.
    #[error("quarantine file {path}: {source}")]
    Quarantine {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The command asks for something tripline does not do yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// The load stopped before its end (its reader or writer went away); nothing of it was committed.
    #[error("the load was cancelled before it finished; nothing was committed")]
    Cancelled,
    /// A usage error: options that do not fit together.
    #[error("{0}")]
    Usage(String),
}

impl IngestError {
    /// A content error in a source.
    pub fn bad(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadSource {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

impl Classify for IngestError {
    fn domain(&self) -> ErrorDomain {
        match self {
            Self::BadSource { .. } | Self::NoMatch(_) | Self::Unsupported(_) | Self::Usage(_) => {
                ErrorDomain::User
            }
            Self::Fetch { user: true, .. } => ErrorDomain::User,
            Self::Fetch { user: false, .. } | Self::Quarantine { .. } | Self::Cancelled => {
                ErrorDomain::External
            }
            Self::Lake(e) => e.domain(),
            Self::Postgres { domain, .. } => *domain,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;
