//! PostgreSQL for every part of tripline: the ingest sink, `tripline sql` against PostgreSQL, the dbt adapter and
//! the shared flow state store all connect here, so a refused connection, a wrong password or a missing database
//! reads the same everywhere.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use tripline_core::{Classify, ErrorDomain};

/// A PostgreSQL failure, worded for the person who must act on it.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL cannot be read.
    #[error("bad PostgreSQL URL: {0}")]
    Url(String),
    /// A connection setting tripline does not handle yet.
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// The server refused, failed, or rejected a statement.
    #[error("PostgreSQL {server}: {message}")]
    Server {
        /// `at host:port`.
        server: String,
        /// What went wrong and, where known, what to do.
        message: String,
        /// Who must act.
        domain: ErrorDomain,
        /// The SQLSTATE, when the server sent one.
        code: Option<String>,
    },
}

impl Classify for PgError {
    fn domain(&self) -> ErrorDomain {
        match self {
            Self::Url(_) | Self::NotSupported(_) => ErrorDomain::User,
            Self::Server { domain, .. } => *domain,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = PgError> = std::result::Result<T, E>;

/// An open connection and where it goes (for messages).
pub struct Connection {
    /// The client; the connection task runs on the tokio runtime until the client is dropped.
    pub client: Client,
    /// `at host:port`, for messages.
    pub server: String,
}

impl Connection {
    /// Turn a driver error on this connection into a [`PgError`].
    pub fn error(&self, e: &tokio_postgres::Error) -> PgError {
        error(&self.server, e)
    }
}

/// Connect to `url` (`postgres://user[:password]@host[:port]/db`); a missing password is taken from `PGPASSWORD`.
/// TLS (`sslmode=require`) is refused with "not supported yet" rather than silently downgraded.
pub async fn connect(url: &str) -> Result<Connection> {
    let mut config =
        tokio_postgres::Config::from_str(url).map_err(|e| PgError::Url(e.to_string()))?;
    if config.get_password().is_none()
        && let Ok(password) = std::env::var("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(PgError::NotSupported(
            "TLS connections to PostgreSQL (sslmode=require)".into(),
        ));
    }
    let host = config.get_hosts().first().map_or_else(
        || "localhost".to_string(),
        |h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        },
    );
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let server = format!("at {host}:{port}");
    config.connect_timeout(Duration::from_secs(10));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| error(&server, &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(Connection { client, server })
}

/// Word a driver error for people: wrong password and missing database are the user's to fix, a refused
/// connection names the server and asks whether it runs.
pub fn error(server: &str, e: &tokio_postgres::Error) -> PgError {
    let code = e.as_db_error().map(|db| db.code().code().to_string());
    let (message, domain) = match e.as_db_error() {
        Some(db)
            if *db.code() == SqlState::INVALID_PASSWORD
                || *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            (
                format!(
                    "{} (set the password in the URL through TRIPLINE_POSTGRES_URL, or PGPASSWORD)",
                    db.message()
                ),
                ErrorDomain::User,
            )
        }
        Some(db) if *db.code() == SqlState::INVALID_CATALOG_NAME => (
            format!("{}: create it first (createdb)", db.message()),
            ErrorDomain::User,
        ),
        Some(db) if *db.code() == SqlState::DISK_FULL => (
            format!(
                "the server's disk is full: {}; nothing was committed",
                db.message()
            ),
            ErrorDomain::External,
        ),
        // Class 42 (syntax error or access rule violation) and 22 (data exception) are the statement's fault.
        Some(db) if db.code().code().starts_with("42") || db.code().code().starts_with("22") => {
            let mut message = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(hint) = db.hint() {
                message.push_str(&format!("; hint: {hint}"));
            }
            (message, ErrorDomain::User)
        }
        Some(db) => (
            format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            ErrorDomain::External,
        ),
        None => {
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
            let mut io_kind = None;
            while let Some(err) = cur {
                if let Some(io) = err.downcast_ref::<std::io::Error>() {
                    io_kind = Some(io.kind());
                }
                cur = err.source();
            }
            match io_kind {
                Some(std::io::ErrorKind::ConnectionRefused) => (
                    "connection refused: is the server running and listening there?".into(),
                    ErrorDomain::External,
                ),
                _ => (format!("{e}"), ErrorDomain::External),
            }
        }
    };
    PgError::Server {
        server: server.to_string(),
        message,
        domain,
        code,
    }
}

/// What one statement returned.
#[derive(Debug, Clone)]
pub struct StatementOutput {
    /// The columns (empty for statements without rows).
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// Rows affected, as the server's command tag says (`INSERT 0 5` -> 5; for SELECT the row count).
    pub rows_affected: u64,
}

/// The Arrow type a PostgreSQL column is shown as: integers, floats and booleans typed; everything else as the
/// server's text form (exact for `numeric`, readable for dates and timestamps).
fn arrow_type(t: &Type) -> DataType {
    match *t {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => DataType::Int64,
        Type::FLOAT4 | Type::FLOAT8 => DataType::Float64,
        Type::BOOL => DataType::Boolean,
        _ => DataType::Utf8,
    }
}

/// Run one statement and return its rows as Arrow batches. The statement is described first (for the column
/// types), then run with the simple protocol, so any statement psql runs works, DDL included.
pub async fn query(conn: &Connection, sql: &str) -> Result<StatementOutput> {
    let columns: Option<Vec<(String, DataType)>> = match conn.client.prepare(sql).await {
        Ok(stmt) => Some(
            stmt.columns()
                .iter()
                .map(|c| (c.name().to_string(), arrow_type(c.type_())))
                .collect(),
        ),
        // A statement the extended protocol cannot describe is run anyway and its columns shown as text. Every
        // other failure is the statement's own and is returned as it is: running it again would only hide it
        // (inside a transaction, behind "current transaction is aborted").
        Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => None,
        Err(e) => return Err(conn.error(&e)),
    };
    let messages = conn
        .client
        .simple_query(sql)
        .await
        .map_err(|e| conn.error(&e))?;
    let mut names: Vec<(String, DataType)> = columns.unwrap_or_default();
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    let mut rows_affected = 0;
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(desc) if names.len() != desc.len() => {
                names = desc
                    .iter()
                    .map(|c| (c.name().to_string(), DataType::Utf8))
                    .collect();
            }
            SimpleQueryMessage::Row(row) => {
                rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            SimpleQueryMessage::CommandComplete(n) => rows_affected = n,
            _ => {}
        }
    }
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|(n, t)| Field::new(n, t.clone(), true))
            .collect::<Vec<_>>(),
    ));
    if names.is_empty() {
        return Ok(StatementOutput {
            schema,
            batches: Vec::new(),
            rows_affected,
        });
    }
    let arrays: Vec<ArrayRef> = names
        .iter()
        .enumerate()
        .map(|(i, (_, t))| column(&rows, i, t))
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| PgError::Server {
        server: conn.server.clone(),
        message: format!("cannot convert the result: {e}"),
        domain: ErrorDomain::Internal,
        code: None,
    })?;
    Ok(StatementOutput {
        schema,
        batches: vec![batch],
        rows_affected,
    })
}

fn column(rows: &[Vec<Option<String>>], i: usize, t: &DataType) -> ArrayRef {
    let cells = rows.iter().map(|r| r.get(i).and_then(|v| v.as_deref()));
    match t {
        DataType::Int64 => {
            let mut b = Int64Builder::with_capacity(rows.len());
            cells.for_each(|v| b.append_option(v.and_then(|v| v.parse().ok())));
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(rows.len());
            cells.for_each(|v| b.append_option(v.and_then(|v| v.parse().ok())));
            Arc::new(b.finish())
        }
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(rows.len());
            cells.for_each(|v| b.append_option(v.map(|v| v == "t")));
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::new();
            cells.for_each(|v| b.append_option(v));
            Arc::new(b.finish())
        }
    }
}
