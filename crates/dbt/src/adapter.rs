//! The database behind a dbt project, as the compiler sees it: relation naming and quoting, running SQL for
//! `run_query`/`statement`, and introspection for `is_incremental()`, `adapter.get_relation` and
//! `adapter.get_columns_in_relation`.
//!
//! The trait is async because the real adapters (the embedded DataFusion warehouse, PostgreSQL through
//! tokio-postgres) are. Jinja rendering is synchronous, so the compiler calls the adapter through
//! [`block_on`]: compile on a thread where blocking is allowed — a `tokio::task::spawn_blocking` thread, a worker
//! of a multi-thread runtime (the bridge uses `block_in_place`), or a plain thread with no runtime at all for
//! adapters whose futures need no reactor (the offline adapter, test fixtures). A current-thread runtime cannot
//! block on itself: [`block_on`] returns an error there instead of dead-locking.

use std::fmt;
use std::future::Future;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tripline_core::ErrorDomain;

/// The adapter type of the embedded warehouse (`type: tripline` in profiles.yml).
pub const TRIPLINE: &str = "tripline";
/// The adapter type of PostgreSQL (`type: postgres`).
pub const POSTGRES: &str = "postgres";

/// A fully qualified relation name: `database.schema.identifier`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RelationName {
    /// The database (PostgreSQL dbname); `None` where the adapter has no database level.
    pub database: Option<String>,
    /// The schema (a dataset in the embedded warehouse).
    pub schema: String,
    /// The table or view name.
    pub identifier: String,
}

impl RelationName {
    /// A relation from its parts.
    pub fn new(
        database: Option<String>,
        schema: impl Into<String>,
        identifier: impl Into<String>,
    ) -> Self {
        Self {
            database,
            schema: schema.into(),
            identifier: identifier.into(),
        }
    }
}

/// What kind of object a relation is in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    /// A table.
    Table,
    /// A view.
    View,
    /// A materialized view.
    MaterializedView,
    /// Exists, kind unknown.
    External,
}

/// A relation that exists in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingRelation {
    /// Its name, as the database spells it.
    pub name: RelationName,
    /// Table, view...
    pub kind: RelationKind,
}

/// A column of a relation, as `adapter.get_columns_in_relation` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// The column name.
    pub name: String,
    /// The SQL type as the database names it (`text`, `Int64`, `timestamp without time zone`...).
    pub data_type: String,
}

impl ColumnInfo {
    /// A column from its name and type.
    pub fn new(name: impl Into<String>, data_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            data_type: data_type.into(),
        }
    }
}

/// The result of running one SQL statement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows as JSON values (null, bool, number, string), one entry per column. Empty when not fetched.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Rows inserted/updated/deleted when the database reports it.
    pub rows_affected: Option<u64>,
    /// The database's status message (`SELECT 5`, `CREATE TABLE`...), shown as `response` by dbt.
    pub message: String,
}

/// An error from the database behind an adapter, with who must act on it.
#[derive(Debug)]
pub struct AdapterError {
    domain: ErrorDomain,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl AdapterError {
    /// An error caused by the user's SQL or project (syntax error, missing table): retrying will not help.
    pub fn user(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            domain: ErrorDomain::User,
            source: source.into(),
        }
    }

    /// An error of the database or the network (connection refused, timeout): a retry may help.
    pub fn external(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            domain: ErrorDomain::External,
            source: source.into(),
        }
    }

    /// The error of a command that has no database connection (e.g. `compile` of a model that runs a query).
    pub fn no_connection(what: &str) -> Self {
        Self::user(format!(
            "no database connection in this command: {what} needs one (run it with `dbt run`/`dbt build`, or \
             guard it with `{{% if execute %}}`)"
        ))
    }

    /// Who must act.
    pub fn domain(&self) -> ErrorDomain {
        self.domain
    }
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for AdapterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The database a dbt project compiles against and runs on. Implemented by the executor for the embedded
/// warehouse and for PostgreSQL; [`OfflineAdapter`] compiles with no connection.
#[async_trait]
pub trait Adapter: Send + Sync + fmt::Debug {
    /// The adapter type (`tripline`, `postgres`): `adapter.dispatch` looks for `<type>__name` before
    /// `default__name`, and `target.type` shows it.
    fn adapter_type(&self) -> &str;

    /// Quote one identifier as the database wants it (`"x"` by default; a doubled quote inside).
    fn quote(&self, identifier: &str) -> String {
        format!("\"{}\"", identifier.replace('"', "\"\""))
    }

    /// Render a relation in SQL. The default is dbt-postgres': `"db"."schema"."identifier"`, the database part
    /// only when there is one. The embedded warehouse addresses tables as `schema.identifier`.
    fn render_relation(&self, relation: &RelationName) -> String {
        let mut out = String::new();
        if let Some(db) = &relation.database {
            out.push_str(&self.quote(db));
            out.push('.');
        }
        out.push_str(&self.quote(&relation.schema));
        out.push('.');
        out.push_str(&self.quote(&relation.identifier));
        out
    }

    /// The database name that goes into relations of this target (`None` when the adapter has no database
    /// level). Used for `this`, `ref()` and sources without an explicit `database:`.
    fn default_database(&self) -> Option<String> {
        None
    }

    /// Run one SQL statement; return its rows when `fetch` is true.
    async fn execute(&self, sql: &str, fetch: bool) -> Result<QueryResult, AdapterError>;

    /// The relation if it exists (matched case-insensitively as the database does), `None` if it does not.
    async fn get_relation(
        &self,
        relation: &RelationName,
    ) -> Result<Option<ExistingRelation>, AdapterError>;

    /// The columns of a relation, in order.
    async fn get_columns(&self, relation: &RelationName) -> Result<Vec<ColumnInfo>, AdapterError>;
}

/// An adapter with no connection, for `compile`, `ls` and parsing: relations render as the target's adapter type
/// would render them, nothing exists (so `is_incremental()` is false), and running SQL or reading columns fails
/// with "no database connection in this command".
#[derive(Debug, Clone)]
pub struct OfflineAdapter {
    adapter_type: String,
    database: Option<String>,
}

impl OfflineAdapter {
    /// An offline adapter of the given type (`tripline` or `postgres`); `database` is the target's database.
    pub fn new(adapter_type: impl Into<String>, database: Option<String>) -> Self {
        Self {
            adapter_type: adapter_type.into(),
            database,
        }
    }
}

/// Render a relation the embedded warehouse's way: `schema.identifier`, quoted only when needed.
pub fn render_tripline_relation(relation: &RelationName) -> String {
    format!(
        "{}.{}",
        quote_if_needed(&relation.schema),
        quote_if_needed(&relation.identifier)
    )
}

/// Quote an identifier with double quotes only when it is not a plain lower-case SQL identifier.
pub fn quote_if_needed(identifier: &str) -> String {
    let plain = identifier
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && identifier
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        identifier.to_string()
    } else {
        format!("\"{}\"", identifier.replace('"', "\"\""))
    }
}

#[async_trait]
impl Adapter for OfflineAdapter {
    fn adapter_type(&self) -> &str {
        &self.adapter_type
    }

    fn render_relation(&self, relation: &RelationName) -> String {
        if self.adapter_type == TRIPLINE {
            render_tripline_relation(relation)
        } else {
            let mut out = String::new();
            if let Some(db) = &relation.database {
                out.push_str(&self.quote(db));
                out.push('.');
            }
            out.push_str(&self.quote(&relation.schema));
            out.push('.');
            out.push_str(&self.quote(&relation.identifier));
            out
        }
    }

    fn default_database(&self) -> Option<String> {
        self.database.clone()
    }

    async fn execute(&self, _sql: &str, _fetch: bool) -> Result<QueryResult, AdapterError> {
        Err(AdapterError::no_connection(
            "running a query (run_query/statement)",
        ))
    }

    async fn get_relation(
        &self,
        _relation: &RelationName,
    ) -> Result<Option<ExistingRelation>, AdapterError> {
        Ok(None)
    }

    async fn get_columns(&self, relation: &RelationName) -> Result<Vec<ColumnInfo>, AdapterError> {
        Err(AdapterError::no_connection(&format!(
            "reading the columns of {}.{}",
            relation.schema, relation.identifier
        )))
    }
}

/// Wait for an adapter future from synchronous code (Jinja rendering). See the module documentation for where
/// this may be called.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, AdapterError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) => match handle.runtime_flavor() {
            RuntimeFlavor::CurrentThread => Err(AdapterError::external(
                "internal: dbt compilation that queries the database must run on a blocking thread \
                 (tokio::task::spawn_blocking) or a multi-thread runtime, not on a current-thread runtime",
            )),
            _ => Ok(tokio::task::block_in_place(|| handle.block_on(future))),
        },
        Err(_) => Ok(futures::executor::block_on(future)),
    }
}
