//! The nodes of a parsed project: models, seeds, tests, snapshots, analyses, and sources.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::adapter::RelationName;
use crate::config::{ConfigMap, NodeConfig};
use crate::properties::ColumnProperties;

/// The kind of a node, as dbt names it in unique ids and `resource_type:` selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    /// A SQL model.
    Model,
    /// A CSV seed.
    Seed,
    /// A data test (generic or singular).
    Test,
    /// A snapshot.
    Snapshot,
    /// An analysis: compiled, never run.
    Analysis,
    /// A source table.
    Source,
}

impl ResourceType {
    /// The name used in unique ids and selectors.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Seed => "seed",
            Self::Test => "test",
            Self::Snapshot => "snapshot",
            Self::Analysis => "analysis",
            Self::Source => "source",
        }
    }

    /// Parse a `resource_type:` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "model" => Self::Model,
            "seed" => Self::Seed,
            "test" => Self::Test,
            "snapshot" => Self::Snapshot,
            "analysis" => Self::Analysis,
            "source" => Self::Source,
            _ => return None,
        })
    }
}

/// What a node depends on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DependsOn {
    /// Unique ids of upstream nodes and sources.
    pub nodes: Vec<String>,
    /// Unique ids of the macros its code called.
    pub macros: Vec<String>,
}

/// A `ref()` call as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefCall {
    /// The referenced name.
    pub name: String,
    /// The package, for the two-argument form.
    pub package: Option<String>,
    /// The model version, if any.
    pub version: Option<String>,
}

/// Which generic test a test node runs, with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestMetadata {
    /// The test name (`unique`, `accepted_values`, `unique_combination_of_columns`).
    pub name: String,
    /// Arguments as written (column_name and model included as dbt does).
    pub kwargs: ConfigMap,
    /// The package namespace (`dbt_utils`) when the test was written with one.
    pub namespace: Option<String>,
}

/// A node of the project graph (everything but sources).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// `model.<package>.<name>`, `test.<package>.<name>.<hash>`...
    pub unique_id: String,
    /// Model, seed, test, snapshot or analysis.
    pub resource_type: ResourceType,
    /// The node name.
    pub name: String,
    /// The package it belongs to.
    pub package_name: String,
    /// Path relative to its resource directory (`staging/stg_trips.sql`).
    pub path: String,
    /// Path relative to its package root (`models/staging/stg_trips.sql`).
    pub original_file_path: String,
    /// The file on disk (empty for nodes generated from property files).
    #[serde(skip)]
    pub file_path: PathBuf,
    /// Fully qualified name: package, folders, name.
    pub fqn: Vec<String>,
    /// The merged config.
    pub config: NodeConfig,
    /// The merged config, untyped (what `config.get()` reads).
    #[serde(skip)]
    pub config_map: ConfigMap,
    /// Upstream nodes and called macros.
    pub depends_on: DependsOn,
    /// `ref()` calls.
    pub refs: Vec<RefCall>,
    /// `source()` calls as `[source, table]`.
    pub sources: Vec<[String; 2]>,
    /// Description from the property file.
    pub description: String,
    /// Documented columns.
    pub columns: BTreeMap<String, ColumnProperties>,
    /// The code as written (for generic tests, the macro call dbt generates).
    pub raw_code: String,
    /// Where the node materialises: database, schema, identifier (alias).
    pub relation: RelationName,
    /// Tags (also in `config.tags`).
    pub tags: Vec<String>,
    /// Free-form metadata.
    pub meta: ConfigMap,
    /// The property file that documents the node.
    pub patch_path: Option<String>,
    /// For generic tests: which test and its arguments.
    pub test_metadata: Option<TestMetadata>,
    /// For column tests: the column.
    pub column_name: Option<String>,
    /// For generic tests: the model, seed, snapshot or source under test.
    pub attached_node: Option<String>,
}

impl Node {
    /// Whether the node is a model materialised as `ephemeral` (inlined as a CTE, never run).
    pub fn is_ephemeral(&self) -> bool {
        self.resource_type == ResourceType::Model && self.config.materialized == "ephemeral"
    }
}

/// A source table declared in a property file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceNode {
    /// `source.<package>.<source>.<table>`.
    pub unique_id: String,
    /// Always `source`.
    pub resource_type: ResourceType,
    /// The source name (`raw`).
    pub source_name: String,
    /// The table name as used in `source()`.
    pub name: String,
    /// The package that declares it.
    pub package_name: String,
    /// The property file, relative to the package.
    pub path: String,
    /// Same as `path`, as dbt writes both.
    pub original_file_path: String,
    /// `[package, folders..., source, table]`.
    pub fqn: Vec<String>,
    /// The table in the database.
    pub relation: RelationName,
    /// The column that says when a row was loaded (for freshness).
    pub loaded_at_field: Option<String>,
    /// `freshness:` as written (warn_after / error_after / filter), table level over source level.
    pub freshness: Option<serde_json::Value>,
    /// The table's description.
    pub description: String,
    /// The source's description.
    pub source_description: String,
    /// The loader named in the file.
    pub loader: String,
    /// Documented columns.
    pub columns: BTreeMap<String, ColumnProperties>,
    /// Tags of the source and the table.
    pub tags: Vec<String>,
    /// Free-form metadata.
    pub meta: ConfigMap,
    /// Source config (`enabled`...).
    pub config: ConfigMap,
}

/// A macro, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MacroInfo {
    /// `macro.<package>.<name>`.
    pub unique_id: String,
    /// The macro name.
    pub name: String,
    /// The package.
    pub package_name: String,
    /// File relative to the package root.
    pub path: String,
    /// Same as `path`.
    pub original_file_path: String,
    /// The macro's source.
    pub macro_sql: String,
    /// Description from a macro property file.
    pub description: String,
    /// Arguments from a macro property file.
    pub arguments: Vec<serde_json::Value>,
}
