//! The parsed project as dbt's `manifest.json` (schema v12): nodes, sources, macros, parent and child maps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use crate::error::Result;
use crate::graph::Graph;
use crate::node::{MacroInfo, Node, SourceNode};

/// The manifest schema dbt consumers check.
pub const MANIFEST_SCHEMA: &str = "https://schemas.getdbt.com/dbt/manifest/v12.json";

/// Every node, source and macro of a parsed project.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// The root project name.
    pub project_name: String,
    /// Models, seeds, tests, snapshots, analyses by unique id.
    pub nodes: BTreeMap<String, Node>,
    /// Sources by unique id.
    pub sources: BTreeMap<String, SourceNode>,
    /// Macros by unique id.
    pub macros: BTreeMap<String, MacroInfo>,
    /// unique id -> direct parents.
    pub parent_map: BTreeMap<String, Vec<String>>,
    /// unique id -> direct children.
    pub child_map: BTreeMap<String, Vec<String>>,
    /// Compiled SQL of the nodes compiled so far, by unique id.
    pub compiled: BTreeMap<String, String>,
}

impl Manifest {
    pub(crate) fn new(
        project_name: String,
        nodes: BTreeMap<String, Node>,
        sources: BTreeMap<String, SourceNode>,
        macros: BTreeMap<String, MacroInfo>,
        graph: &Graph,
    ) -> Self {
        Self {
            project_name,
            nodes,
            sources,
            macros,
            parent_map: graph.parents.clone(),
            child_map: graph.children.clone(),
            compiled: BTreeMap::new(),
        }
    }

    /// The manifest as dbt's JSON.
    pub fn to_json(&self) -> Json {
        let nodes: serde_json::Map<String, Json> = self
            .nodes
            .iter()
            .map(|(id, n)| (id.clone(), self.node_json(n)))
            .collect();
        let sources: serde_json::Map<String, Json> = self
            .sources
            .iter()
            .map(|(id, s)| {
                let mut v = serde_json::to_value(s).unwrap_or(Json::Null);
                if let Some(m) = v.as_object_mut() {
                    m.remove("relation");
                    m.insert(
                        "database".into(),
                        s.relation.database.clone().map_or(Json::Null, Json::from),
                    );
                    m.insert("schema".into(), s.relation.schema.clone().into());
                    m.insert("identifier".into(), s.relation.identifier.clone().into());
                    m.insert("package_name".into(), s.package_name.clone().into());
                    m.insert("config".into(), Json::Object(s.config.clone()));
                }
                (id.clone(), v)
            })
            .collect();
        let macros: serde_json::Map<String, Json> = self
            .macros
            .iter()
            .map(|(id, m)| {
                let mut v = serde_json::to_value(m).unwrap_or(Json::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("resource_type".into(), "macro".into());
                    o.insert("depends_on".into(), json!({"macros": []}));
                }
                (id.clone(), v)
            })
            .collect();
        json!({
            "metadata": {
                "dbt_schema_version": MANIFEST_SCHEMA,
                "dbt_version": "1.10.0",
                "generated_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                "project_name": self.project_name,
                "adapter_type": Json::Null,
                "generator": "tripline",
            },
            "nodes": nodes,
            "sources": sources,
            "macros": macros,
            "docs": {},
            "exposures": {},
            "metrics": {},
            "groups": {},
            "selectors": {},
            "disabled": {},
            "parent_map": self.parent_map,
            "child_map": self.child_map,
            "group_map": {},
            "saved_queries": {},
            "semantic_models": {},
            "unit_tests": {},
        })
    }

    fn node_json(&self, n: &Node) -> Json {
        let mut v = serde_json::to_value(n).unwrap_or(Json::Null);
        if let Some(m) = v.as_object_mut() {
            m.remove("relation");
            m.insert(
                "database".into(),
                n.relation.database.clone().map_or(Json::Null, Json::from),
            );
            m.insert("schema".into(), n.relation.schema.clone().into());
            m.insert("alias".into(), n.relation.identifier.clone().into());
            m.insert("language".into(), "sql".into());
            let refs: Vec<Json> = n
                .refs
                .iter()
                .map(|r| json!({"name": r.name, "package": r.package, "version": r.version}))
                .collect();
            m.insert("refs".into(), Json::Array(refs));
            if let Some(code) = self.compiled.get(&n.unique_id) {
                m.insert("compiled".into(), true.into());
                m.insert("compiled_code".into(), code.clone().into());
            }
            if let Some(c) = m.get_mut("config").and_then(|c| c.as_object_mut()) {
                for hook in ["pre_hook", "post_hook"] {
                    if let Some(h) = c.remove(hook) {
                        let list: Vec<Json> = h
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|s| json!({"sql": s, "transaction": true}))
                            .collect();
                        c.insert(hook.replace('_', "-"), Json::Array(list));
                    }
                }
            }
        }
        v
    }

    /// Write `manifest.json` into the target directory; returns its path.
    pub fn write(&self, target_dir: &Path) -> Result<PathBuf> {
        let path = target_dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&self.to_json()).map_err(|e| {
            crate::error::DbtError::Internal(format!("manifest serialisation: {e}"))
        })?;
        crate::compile::write_file(&path, &text)?;
        Ok(path)
    }
}
