//! `type: postgres`: dbt-postgres' behaviour over tripline's PostgreSQL connection layer ([`tripline_pg`]).
//! One connection per concurrent node (as dbt opens one per thread), kept in a small pool; relations and columns
//! are read from `information_schema`.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tripline_core::{Classify, ErrorDomain};
use tripline_pg::{Connection, PgError};

use super::{RunAdapter, batches_to_rows, literal, status_message};
use crate::adapter::{
    Adapter, AdapterError, ColumnInfo, ExistingRelation, POSTGRES, QueryResult, RelationKind,
    RelationName,
};
use crate::profile::PostgresTarget;
use crate::run::dialect::Dialect;

/// A PostgreSQL database reached with the settings of a `type: postgres` target.
pub struct PostgresAdapter {
    url: String,
    database: String,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for PostgresAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresAdapter")
            .field("database", &self.database)
            .finish()
    }
}

fn adapter_error(e: PgError) -> AdapterError {
    match e.domain() {
        ErrorDomain::User => AdapterError::user(e.to_string()),
        _ => AdapterError::external(e.to_string()),
    }
}

/// A connection string in libpq's `key=value` form, values quoted.
fn connection_string(target: &PostgresTarget) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = vec![
        format!("host={}", quote(&target.host)),
        format!("port={}", target.port),
        format!("user={}", quote(&target.user)),
        format!("dbname={}", quote(&target.dbname)),
    ];
    if let Some(p) = &target.password {
        parts.push(format!("password={}", quote(p)));
    }
    if let Some(mode) = &target.sslmode {
        parts.push(format!("sslmode={}", quote(mode)));
    }
    parts.join(" ")
}

impl PostgresAdapter {
    /// Connect with the settings of a postgres target (one connection now, more as nodes run in parallel).
    pub async fn connect(target: &PostgresTarget) -> Result<Self, AdapterError> {
        let url = connection_string(target);
        let first = tripline_pg::connect(&url).await.map_err(adapter_error)?;
        Ok(Self {
            url,
            database: target.dbname.clone(),
            idle: Mutex::new(vec![first]),
        })
    }

    async fn take(&self) -> Result<Connection, AdapterError> {
        let idle = self.idle.lock().expect("pool lock").pop();
        match idle {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => tripline_pg::connect(&self.url).await.map_err(adapter_error),
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle.lock().expect("pool lock").push(conn);
    }

    async fn run(conn: &Connection, sql: &str, fetch: bool) -> Result<QueryResult, AdapterError> {
        let out = tripline_pg::query(conn, sql).await.map_err(adapter_error)?;
        let columns = out
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        Ok(QueryResult {
            columns,
            rows: if fetch {
                batches_to_rows(&out.batches)
            } else {
                Vec::new()
            },
            rows_affected: Some(out.rows_affected),
            message: status_message(sql, Some(out.rows_affected)),
        })
    }
}

#[async_trait]
impl Adapter for PostgresAdapter {
    fn adapter_type(&self) -> &str {
        POSTGRES
    }

    fn default_database(&self) -> Option<String> {
        Some(self.database.clone())
    }

    async fn execute(&self, sql: &str, fetch: bool) -> Result<QueryResult, AdapterError> {
        let conn = self.take().await?;
        let result = Self::run(&conn, sql, fetch).await;
        self.give_back(conn);
        result
    }

    async fn get_relation(
        &self,
        relation: &RelationName,
    ) -> Result<Option<ExistingRelation>, AdapterError> {
        let sql = format!(
            "select table_schema, table_name, table_type from information_schema.tables \
             where table_schema = {} and table_name = {}",
            literal(&relation.schema),
            literal(&relation.identifier)
        );
        let result = self.execute(&sql, true).await?;
        Ok(result.rows.first().map(|row| {
            let text = |i: usize| {
                row.get(i)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            ExistingRelation {
                name: RelationName::new(Some(self.database.clone()), text(0), text(1)),
                kind: match text(2).as_str() {
                    "VIEW" => RelationKind::View,
                    "BASE TABLE" | "LOCAL TEMPORARY" => RelationKind::Table,
                    _ => RelationKind::External,
                },
            }
        }))
    }

    async fn get_columns(&self, relation: &RelationName) -> Result<Vec<ColumnInfo>, AdapterError> {
        let sql = format!(
            "select column_name, data_type, character_maximum_length, numeric_precision, numeric_scale \
             from information_schema.columns where table_schema = {} and table_name = {} \
             order by ordinal_position",
            literal(&relation.schema),
            literal(&relation.identifier)
        );
        let result = self.execute(&sql, true).await?;
        Ok(result
            .rows
            .iter()
            .map(|row| {
                let name = row[0].as_str().unwrap_or_default().to_string();
                let base = row[1].as_str().unwrap_or_default().to_string();
                let data_type = match (base.as_str(), &row[2], &row[3], &row[4]) {
                    ("character varying" | "character", serde_json::Value::Number(n), _, _) => {
                        format!("{base}({n})")
                    }
                    ("numeric", _, serde_json::Value::Number(p), serde_json::Value::Number(s)) => {
                        format!("numeric({p},{s})")
                    }
                    _ => base,
                };
                ColumnInfo::new(name, data_type)
            })
            .collect())
    }
}

#[async_trait]
impl RunAdapter for PostgresAdapter {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute_batch(&self, statements: &[String]) -> Result<Vec<QueryResult>, AdapterError> {
        let conn = self.take().await?;
        let mut out = Vec::new();
        let mut failure = None;
        Self::run(&conn, "begin", false).await?;
        for sql in statements {
            match Self::run(&conn, sql, false).await {
                Ok(r) => out.push(r),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let end = if failure.is_some() {
            "rollback"
        } else {
            "commit"
        };
        let ended = Self::run(&conn, end, false).await;
        if ended.is_ok() {
            self.give_back(conn);
        }
        match failure {
            Some(e) => Err(e),
            None => ended.map(|_| out),
        }
    }

    async fn create_schema(&self, relation: &RelationName) -> Result<(), AdapterError> {
        let sql = format!(
            "create schema if not exists {}",
            self.quote(&relation.schema)
        );
        // Two threads creating the same schema at once can collide on the catalog: a second try settles it.
        match self.execute(&sql, false).await {
            Ok(_) => Ok(()),
            Err(_) => self.execute(&sql, false).await.map(|_| ()),
        }
    }

    fn as_adapter(self: Arc<Self>) -> Arc<dyn Adapter> {
        self
    }
}
