//! Node configuration: the layers dbt merges (dbt_project.yml folders < property files < `config()` in the
//! file) and the typed result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An untyped configuration mapping, as written in YAML or passed to `config(...)`.
pub type ConfigMap = serde_json::Map<String, serde_json::Value>;

/// Config keys whose value is itself a mapping (so a mapping under such a key is a config, not a folder).
const MAPPING_CONFIGS: &[&str] = &[
    "meta",
    "persist_docs",
    "contract",
    "docs",
    "grants",
    "column_types",
    "quoting",
    "freshness",
];

/// Config keys that accumulate across layers instead of being replaced.
const ADDITIVE_LIST_CONFIGS: &[&str] = &["tags", "pre_hook", "post_hook"];

/// Normalise a config key: drop a leading `+`, `pre-hook` -> `pre_hook`.
pub(crate) fn normalize_key(key: &str) -> String {
    key.trim_start_matches('+').replace('-', "_")
}

/// Merge `layer` over `base`: later layers win, tags and hooks accumulate, `meta` merges key by key.
pub fn merge_config(base: &mut ConfigMap, layer: &ConfigMap) {
    for (key, value) in layer {
        let key = normalize_key(key);
        if ADDITIVE_LIST_CONFIGS.contains(&key.as_str()) {
            let mut list = as_string_list(base.get(&key));
            for v in as_string_list(Some(value)) {
                if !list.contains(&v) {
                    list.push(v);
                }
            }
            base.insert(key, list.into_iter().map(serde_json::Value::from).collect());
        } else if key == "meta" {
            let entry = base
                .entry(key)
                .or_insert_with(|| serde_json::Value::Object(ConfigMap::new()));
            if let (Some(dst), Some(src)) = (entry.as_object_mut(), value.as_object()) {
                for (k, v) in src {
                    dst.insert(k.clone(), v.clone());
                }
            } else {
                *entry = value.clone();
            }
        } else {
            base.insert(key, value.clone());
        }
    }
}

fn as_string_list(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(other) => vec![other.to_string()],
    }
}

/// Whether a key of a dbt_project.yml resource block is a config (rather than a folder or package name).
fn is_config_entry(key: &str, value: &serde_json::Value) -> bool {
    key.starts_with('+')
        || !value.is_object()
        || MAPPING_CONFIGS.contains(&normalize_key(key).as_str())
}

/// The configs dbt_project.yml's resource block (`models:`, `seeds:`...) assigns to a node with this fqn:
/// the top-level configs, then each matching level of `<package>: <folder>: ... : <name>`.
pub fn folder_config(block: &ConfigMap, fqn: &[String]) -> ConfigMap {
    let mut out = ConfigMap::new();
    let mut level = block;
    apply_level(&mut out, level);
    for part in fqn {
        match level.get(part).and_then(|v| v.as_object()) {
            Some(next) if !part.starts_with('+') => {
                level = next;
                apply_level(&mut out, level);
            }
            _ => break,
        }
    }
    out
}

fn apply_level(out: &mut ConfigMap, level: &ConfigMap) {
    let configs: ConfigMap = level
        .iter()
        .filter(|(k, v)| is_config_entry(k, v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    merge_config(out, &configs);
}

/// `contract:` config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContractConfig {
    /// Whether the column names and types in the property file are enforced.
    #[serde(default)]
    pub enforced: bool,
    /// Whether column type aliases are resolved.
    #[serde(default = "yes")]
    pub alias_types: bool,
}

fn yes() -> bool {
    true
}
fn default_severity() -> String {
    "ERROR".into()
}
fn default_threshold() -> String {
    "!= 0".into()
}
fn default_fail_calc() -> String {
    "count(*)".into()
}

/// The merged configuration of a node, typed for the keys dbt defines; unknown keys stay in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Whether the node exists at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `view`, `table`, `incremental`, `ephemeral`, `seed`, `test`, `snapshot`, or a custom name.
    #[serde(default)]
    pub materialized: String,
    /// Tags, for `tag:` selection.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A custom schema (combined with the target schema by `generate_schema_name`).
    #[serde(default)]
    pub schema: Option<String>,
    /// A custom database.
    #[serde(default)]
    pub database: Option<String>,
    /// The relation name, instead of the node name.
    #[serde(default)]
    pub alias: Option<String>,
    /// Incremental/snapshot key: a column or a list of columns.
    #[serde(default)]
    pub unique_key: Option<serde_json::Value>,
    /// `append`, `merge`, `delete+insert`, `insert_overwrite`, `microbatch`.
    #[serde(default)]
    pub incremental_strategy: Option<String>,
    /// `ignore`, `fail`, `append_new_columns`, `sync_all_columns`.
    #[serde(default)]
    pub on_schema_change: Option<String>,
    /// Per-node override of `--full-refresh`.
    #[serde(default)]
    pub full_refresh: Option<bool>,
    /// The model contract.
    #[serde(default)]
    pub contract: ContractConfig,
    /// SQL run before the node.
    #[serde(default)]
    pub pre_hook: Vec<String>,
    /// SQL run after the node.
    #[serde(default)]
    pub post_hook: Vec<String>,
    /// Seeds: column name -> SQL type.
    #[serde(default)]
    pub column_types: BTreeMap<String, String>,
    /// Seeds: the CSV delimiter.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Seeds: whether to quote column names.
    #[serde(default)]
    pub quote_columns: Option<bool>,
    /// Tests: `ERROR` or `WARN`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Tests: the condition on the failure count that makes a warning (`!= 0`, `>10`).
    #[serde(default = "default_threshold")]
    pub warn_if: String,
    /// Tests: the condition on the failure count that makes an error.
    #[serde(default = "default_threshold")]
    pub error_if: String,
    /// Tests: store failing rows in a table.
    #[serde(default)]
    pub store_failures: Option<bool>,
    /// Tests: a filter applied to the tested model.
    #[serde(default, rename = "where")]
    pub where_: Option<String>,
    /// Tests: at most this many failing rows are returned.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Tests: how failures are counted.
    #[serde(default = "default_fail_calc")]
    pub fail_calc: String,
    /// Snapshots: `timestamp` or `check`.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Snapshots: the timestamp column of the `timestamp` strategy.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Snapshots: `all` or a list of columns for the `check` strategy.
    #[serde(default)]
    pub check_cols: Option<serde_json::Value>,
    /// Snapshots: the schema the snapshot table goes to.
    #[serde(default)]
    pub target_schema: Option<String>,
    /// Snapshots: the database the snapshot table goes to.
    #[serde(default)]
    pub target_database: Option<String>,
    /// Snapshots: invalidate rows deleted from the source.
    #[serde(default)]
    pub invalidate_hard_deletes: Option<bool>,
    /// Free-form metadata.
    #[serde(default)]
    pub meta: ConfigMap,
    /// Keys not listed above.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl NodeConfig {
    /// Type a merged config map.
    pub fn from_map(map: &ConfigMap) -> Result<Self, String> {
        let mut map = map.clone();
        // dbt accepts a single string for hooks and tags.
        for key in ["pre_hook", "post_hook", "tags"] {
            if let Some(serde_json::Value::String(s)) = map.get(key) {
                let s = s.clone();
                map.insert(key.into(), serde_json::Value::Array(vec![s.into()]));
            }
        }
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())
    }

    /// The unique key as a list of column names (empty when none).
    pub fn unique_key_columns(&self) -> Vec<String> {
        as_string_list(self.unique_key.as_ref())
    }

    /// The check_cols of a `check` snapshot: `None` for `all`.
    pub fn check_columns(&self) -> Option<Vec<String>> {
        match &self.check_cols {
            Some(serde_json::Value::String(s)) if s == "all" => None,
            other => Some(as_string_list(other.as_ref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn folder_configs_nest_and_tags_accumulate() {
        let block: ConfigMap = serde_json::from_value(json!({
            "+tags": ["all"],
            "nyc": {"+materialized": "table", "staging": {"+materialized": "view", "+tags": "stg"}}
        }))
        .unwrap();
        let fqn: Vec<String> = ["nyc", "staging", "stg_trips"].map(String::from).to_vec();
        let cfg = folder_config(&block, &fqn);
        assert_eq!(cfg["materialized"], "view");
        assert_eq!(cfg["tags"], json!(["all", "stg"]));
        let typed = NodeConfig::from_map(&cfg).unwrap();
        assert_eq!(typed.materialized, "view");
        assert_eq!(typed.severity, "ERROR");
    }
}
