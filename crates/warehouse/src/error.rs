//! Errors of the warehouse, classified by who must act.

use datafusion::error::DataFusionError;
use tripline_core::{Classify, ErrorDomain};

/// Errors of the warehouse.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// The SQL text cannot be read.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A DDL statement is well-formed but wrong (unknown column, too many cluster columns, ...).
    #[error("{0}")]
    Ddl(String),
    /// The table does not exist.
    #[error("table {0} not found (SHOW TABLES lists the tables)")]
    NotFound(String),
    /// The table exists and the statement would not replace it.
    #[error("table {0} already exists (use CREATE OR REPLACE, or DROP TABLE it first)")]
    AlreadyExists(String),
    /// A write to a table that only reads files in place.
    #[error(
        "{0} is an external table: it reads files in the lake in place and cannot be written; \
         CREATE TABLE ... AS SELECT from it instead"
    )]
    ReadOnly(String),
    /// Something the warehouse does not do yet.
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// DataFusion refused or failed the query.
    #[error("{0}")]
    Query(DataFusionError),
    /// Reading or committing a Delta table failed.
    #[error("Delta table {table}: {source}")]
    Delta {
        /// The table.
        table: String,
        /// The delta-rs error.
        source: deltalake::DeltaTableError,
    },
    /// The lake could not be opened.
    #[error(transparent)]
    Lake(#[from] tripline_lake::LakeError),
    /// The object store failed.
    #[error("{action} {location}: {source}")]
    Store {
        /// What was being done.
        action: &'static str,
        /// Where.
        location: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// A catalog file is unreadable.
    #[error("catalog file {location} is corrupt: {message}")]
    Catalog {
        /// The file.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl WarehouseError {
    /// Wrap a DataFusion error.
    pub fn query(e: DataFusionError) -> Self {
        Self::Query(e)
    }

    /// Wrap delta-rs errors about one table (for `map_err`).
    pub(crate) fn delta(
        table: &dyn std::fmt::Display,
    ) -> impl Fn(deltalake::DeltaTableError) -> Self + use<> {
        let table = table.to_string();
        move |source| Self::Delta {
            table: table.clone(),
            source,
        }
    }
}

fn datafusion_domain(e: &DataFusionError) -> ErrorDomain {
    match e.find_root() {
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::Execution(_) => ErrorDomain::User,
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => ErrorDomain::External,
        DataFusionError::ResourcesExhausted(_) => ErrorDomain::External,
        _ => ErrorDomain::Internal,
    }
}

impl Classify for WarehouseError {
    fn domain(&self) -> ErrorDomain {
        match self {
            Self::Syntax(_)
            | Self::Ddl(_)
            | Self::NotFound(_)
            | Self::AlreadyExists(_)
            | Self::ReadOnly(_)
            | Self::NotSupported(_) => ErrorDomain::User,
            Self::Query(e) => datafusion_domain(e),
            Self::Delta { source, .. } => match source {
                deltalake::DeltaTableError::ObjectStore { .. }
                | deltalake::DeltaTableError::Io { .. } => ErrorDomain::External,
                deltalake::DeltaTableError::NotATable(_)
                | deltalake::DeltaTableError::InvalidTableLocation(_) => ErrorDomain::User,
                _ => ErrorDomain::Internal,
            },
            Self::Lake(e) => e.domain(),
            Self::Store { .. } => ErrorDomain::External,
            Self::Catalog { .. } => ErrorDomain::User,
            Self::Internal(_) => ErrorDomain::Internal,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;
