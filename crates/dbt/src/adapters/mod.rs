//! The databases a dbt project runs on: PostgreSQL ([`PostgresAdapter`], `type: postgres`) and the embedded
//! warehouse over the lake ([`WarehouseAdapter`], `type: tripline`). Both implement the compiler's [`Adapter`]
//! and the executor's [`RunAdapter`].

mod md5_udf;
mod postgres;
mod warehouse;

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;

pub use postgres::PostgresAdapter;
pub use warehouse::WarehouseAdapter;

use crate::adapter::{Adapter, AdapterError, QueryResult, RelationName};
use crate::run::dialect::Dialect;

/// What the executor needs from a database beyond what compilation uses.
#[async_trait]
pub trait RunAdapter: Adapter {
    /// Which SQL the materializations write for this database.
    fn dialect(&self) -> Dialect;

    /// Run statements in order, in one transaction where the database has transactions (PostgreSQL); returns
    /// the result of each. On a failure nothing of the batch is kept where the database can roll back.
    async fn execute_batch(&self, statements: &[String]) -> Result<Vec<QueryResult>, AdapterError>;

    /// Make sure the schema (dataset) of `relation` exists.
    async fn create_schema(&self, relation: &RelationName) -> Result<(), AdapterError>;

    /// Several nodes of the run read `relation`: the adapter may keep what it computes of it for them.
    fn keep(&self, _relation: &RelationName) {}

    /// Every node of the run that reads `relation` is done: what the adapter kept of it can go.
    fn release(&self, _relation: &RelationName) {}

    /// This adapter as the compiler's adapter.
    fn as_adapter(self: Arc<Self>) -> Arc<dyn Adapter>;
}

/// Arrow batches as the JSON rows of a [`QueryResult`]: numbers and booleans typed, everything else as text.
pub(crate) fn batches_to_rows(batches: &[RecordBatch]) -> Vec<Vec<serde_json::Value>> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<(&DataType, &dyn Array, Option<ArrayFormatter<'_>>)> = batch
            .columns()
            .iter()
            .map(|c| {
                (
                    c.data_type(),
                    c.as_ref(),
                    ArrayFormatter::try_new(c.as_ref(), &options).ok(),
                )
            })
            .collect();
        for row in 0..batch.num_rows() {
            let mut out = Vec::with_capacity(columns.len());
            for (data_type, array, formatter) in &columns {
                if array.is_null(row) {
                    out.push(serde_json::Value::Null);
                    continue;
                }
                let text = formatter
                    .as_ref()
                    .map(|f| f.value(row).to_string())
                    .unwrap_or_default();
                let value = match data_type {
                    DataType::Boolean => serde_json::Value::Bool(text == "true"),
                    t if t.is_integer() => text
                        .parse::<i64>()
                        .map(serde_json::Value::from)
                        .unwrap_or(serde_json::Value::String(text)),
                    t if t.is_floating()
                        || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
                    {
                        match text.parse::<f64>() {
                            Ok(f) => serde_json::Number::from_f64(f)
                                .map(serde_json::Value::Number)
                                .unwrap_or(serde_json::Value::String(text)),
                            Err(_) => serde_json::Value::String(text),
                        }
                    }
                    _ => serde_json::Value::String(text),
                };
                out.push(value);
            }
            rows.push(out);
        }
    }
    rows
}

/// A SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The command tag dbt-postgres shows for a statement (`CREATE VIEW`, `SELECT 5`, `INSERT 0 5`).
pub(crate) fn status_message(sql: &str, rows: Option<u64>) -> String {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(6)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let first = words.first().map(String::as_str).unwrap_or("");
    let has = |w: &str| words.iter().any(|x| x == w);
    let n = rows.unwrap_or(0);
    match first {
        "CREATE" if has("VIEW") => "CREATE VIEW".into(),
        "CREATE" if has("SCHEMA") => "CREATE SCHEMA".into(),
        "CREATE" if has("TABLE") => format!("SELECT {n}"),
        "INSERT" => format!("INSERT 0 {n}"),
        "SELECT" | "WITH" => format!("SELECT {n}"),
        "MERGE" | "DELETE" | "UPDATE" => format!("{first} {n}"),
        other => other.to_string(),
    }
}

/// Connect to the database of a target: PostgreSQL for `type: postgres`, the warehouse in the lake at
/// `lake_root` of the tripline project at `tripline_project` for `type: tripline`.
pub async fn connect(
    target: &crate::profile::Target,
    lake_root: &str,
    tripline_project: &std::path::Path,
) -> crate::error::Result<Arc<dyn RunAdapter>> {
    match target.adapter_type.as_str() {
        crate::adapter::POSTGRES => {
            let settings = target.postgres()?;
            Ok(Arc::new(PostgresAdapter::connect(&settings).await?))
        }
        crate::adapter::TRIPLINE => connect_warehouse(target, lake_root, tripline_project).await,
        other => Err(crate::error::DbtError::NotSupported(format!(
            "adapter type `{other}`"
        ))),
    }
}

/// Megabytes of Arrow batches one view's result may keep in a run on the embedded warehouse, unless the target
/// says otherwise with `view_cache_mb` (0: every read of a view runs its query).
const DEFAULT_VIEW_CACHE_MB: u64 = 2048;

/// The target's `view_cache_mb`.
fn view_cache_mb(target: &crate::profile::Target) -> crate::error::Result<u64> {
    let bad = |v: &dyn std::fmt::Display| {
        crate::error::DbtError::Config(format!(
            "target `{}`: view_cache_mb must be a whole number of megabytes, got {v}",
            target.name
        ))
    };
    match target.settings.get("view_cache_mb") {
        None | Some(serde_json::Value::Null) => Ok(DEFAULT_VIEW_CACHE_MB),
        Some(serde_json::Value::Number(n)) => n.as_u64().ok_or_else(|| bad(n)),
        Some(serde_json::Value::String(s)) => s.trim().parse().map_err(|_| bad(s)),
        Some(other) => Err(bad(other)),
    }
}

async fn connect_warehouse(
    target: &crate::profile::Target,
    lake_root: &str,
    tripline_project: &std::path::Path,
) -> crate::error::Result<Arc<dyn RunAdapter>> {
    let mb = view_cache_mb(target)?;
    let adapter = WarehouseAdapter::open(lake_root, tripline_project).await?;
    // A build reads each staging view once per data test and once per model on it: compute it once.
    adapter
        .warehouse()
        .cache_view_results(usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX));
    Ok(Arc::new(adapter))
}
