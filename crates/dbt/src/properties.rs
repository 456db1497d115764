//! Property files (`schema.yml` and friends): descriptions, columns, tests and configs of models, seeds,
//! snapshots and macros, and source definitions.

use serde::{Deserialize, Serialize};

use crate::config::ConfigMap;

/// One property file.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct PropertyFile {
    #[serde(default)]
    pub models: Vec<ResourceProperties>,
    #[serde(default)]
    pub seeds: Vec<ResourceProperties>,
    #[serde(default)]
    pub snapshots: Vec<ResourceProperties>,
    #[serde(default)]
    pub analyses: Vec<ResourceProperties>,
    #[serde(default)]
    pub sources: Vec<SourceProperties>,
    #[serde(default)]
    pub macros: Vec<MacroProperties>,
}

/// Properties of a model, seed or snapshot.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ResourceProperties {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default)]
    pub columns: Vec<ColumnProperties>,
    #[serde(default, alias = "tests")]
    pub data_tests: Vec<serde_json::Value>,
    #[serde(default)]
    pub meta: ConfigMap,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A documented column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnProperties {
    /// Column name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Declared SQL type (enforced by a contract).
    #[serde(default)]
    pub data_type: Option<String>,
    /// Constraints (`not_null`, `primary_key`...), kept as written.
    #[serde(default)]
    pub constraints: Vec<serde_json::Value>,
    /// Free-form metadata.
    #[serde(default)]
    pub meta: ConfigMap,
    /// Whether the name is quoted.
    #[serde(default)]
    pub quote: Option<bool>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Tests on this column, as written.
    #[serde(default, alias = "tests", skip_serializing)]
    pub data_tests: Vec<serde_json::Value>,
}

/// A `sources:` entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SourceProperties {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub loader: String,
    #[serde(default)]
    pub loaded_at_field: Option<String>,
    #[serde(default)]
    pub freshness: Option<serde_json::Value>,
    #[serde(default)]
    pub config: ConfigMap,
    #[serde(default)]
    pub meta: ConfigMap,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub tables: Vec<SourceTableProperties>,
}

/// A table of a source.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SourceTableProperties {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub loaded_at_field: Option<String>,
    /// `Some(Null)` switches freshness off for this table.
    #[serde(default, deserialize_with = "explicit_null")]
    pub freshness: Option<serde_json::Value>,
    #[serde(default)]
    pub columns: Vec<ColumnProperties>,
    #[serde(default, alias = "tests")]
    pub data_tests: Vec<serde_json::Value>,
    #[serde(default)]
    pub meta: ConfigMap,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub config: ConfigMap,
}

fn explicit_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// A `macros:` entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MacroProperties {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub arguments: Vec<serde_json::Value>,
}
