//! Test fixtures shared by the integration tests: a fake database adapter backed by in-memory maps.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use tripline_dbt::adapter::{POSTGRES, render_tripline_relation};
use tripline_dbt::{
    Adapter, AdapterError, ColumnInfo, ExistingRelation, QueryResult, RelationKind, RelationName,
};

/// TEST FIXTURE, not a database: relations that "exist" and their columns are listed up front; queries return
/// canned rows. Relations are keyed `schema.identifier` (lower case).
#[derive(Debug, Default)]
pub struct MapAdapter {
    pub adapter_type: String,
    pub database: Option<String>,
    pub existing: BTreeSet<String>,
    pub columns: BTreeMap<String, Vec<String>>,
    pub query_rows: Vec<Vec<serde_json::Value>>,
}

fn key(r: &RelationName) -> String {
    format!("{}.{}", r.schema, r.identifier).to_lowercase()
}

#[async_trait]
impl Adapter for MapAdapter {
    fn adapter_type(&self) -> &str {
        &self.adapter_type
    }

    fn render_relation(&self, relation: &RelationName) -> String {
        if self.adapter_type == POSTGRES {
            let mut out = String::new();
            if let Some(db) = &relation.database {
                out.push_str(&self.quote(db));
                out.push('.');
            }
            format!(
                "{out}{}.{}",
                self.quote(&relation.schema),
                self.quote(&relation.identifier)
            )
        } else {
            render_tripline_relation(relation)
        }
    }

    fn default_database(&self) -> Option<String> {
        self.database.clone()
    }

    async fn execute(&self, _sql: &str, fetch: bool) -> Result<QueryResult, AdapterError> {
        Ok(QueryResult {
            columns: vec!["value".into()],
            rows: if fetch {
                self.query_rows.clone()
            } else {
                Vec::new()
            },
            rows_affected: None,
            message: "SELECT".into(),
        })
    }

    async fn get_relation(
        &self,
        relation: &RelationName,
    ) -> Result<Option<ExistingRelation>, AdapterError> {
        let k = key(relation);
        Ok(
            (self.existing.contains(&k) || self.columns.contains_key(&k)).then(|| {
                ExistingRelation {
                    name: relation.clone(),
                    kind: RelationKind::Table,
                }
            }),
        )
    }

    async fn get_columns(&self, relation: &RelationName) -> Result<Vec<ColumnInfo>, AdapterError> {
        Ok(self
            .columns
            .get(&key(relation))
            .map(|cols| cols.iter().map(|c| ColumnInfo::new(c, "text")).collect())
            .unwrap_or_default())
    }
}

/// Collapse runs of whitespace so compiled SQL compares by tokens, not layout.
pub fn normalize(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Write `files` (relative path -> text) under `dir`.
pub fn write_files(dir: &std::path::Path, files: &BTreeMap<String, String>) {
    for (path, text) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
}
