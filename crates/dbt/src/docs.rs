//! `dbt docs generate`: `catalog.json` (the columns and types of every relation the project built or reads) and
//! the docs site, one self-contained `index.html` that reads `manifest.json` and `catalog.json` beside it and
//! shows models, columns, tests and an interactive lineage graph (no CDN: everything is in the file).

use serde_json::{Map, Value as Json, json};

use crate::adapter::{Adapter, RelationKind, RelationName};
use crate::error::{DbtError, Result};
use crate::node::ResourceType;
use crate::parse::DbtProject;
use crate::run::results::now_rfc3339;

/// The docs site.
pub const INDEX_HTML: &str = include_str!("docs/index.html");

async fn table_entry(
    adapter: &dyn Adapter,
    unique_id: &str,
    relation: &RelationName,
) -> Result<Option<Json>> {
    let Some(found) = adapter.get_relation(relation).await? else {
        return Ok(None);
    };
    let columns = adapter.get_columns(relation).await?;
    let mut cols = Map::new();
    for (i, c) in columns.iter().enumerate() {
        cols.insert(
            c.name.clone(),
            json!({"type": c.data_type, "index": i + 1, "name": c.name, "comment": null}),
        );
    }
    let kind = match found.kind {
        RelationKind::View | RelationKind::MaterializedView => "VIEW",
        RelationKind::External => "EXTERNAL",
        RelationKind::Table => "BASE TABLE",
    };
    Ok(Some(json!({
        "metadata": {
            "type": kind,
            "schema": relation.schema,
            "name": relation.identifier,
            "database": relation.database,
            "comment": null,
            "owner": null,
        },
        "columns": cols,
        "stats": {"has_stats": {"id": "has_stats", "label": "Has Stats?", "value": false, "include": false,
            "description": "Indicates whether there are statistics for this table"}},
        "unique_id": unique_id,
    })))
}

/// Build `catalog.json` by asking the database for each model, seed, snapshot and source of the project.
pub async fn catalog(project: &DbtProject, adapter: &dyn Adapter) -> Result<Json> {
    let mut nodes = Map::new();
    let mut errors = Vec::new();
    for node in project.manifest.nodes.values() {
        if !matches!(
            node.resource_type,
            ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
        ) || node.is_ephemeral()
            || !node.config.enabled
        {
            continue;
        }
        match table_entry(adapter, &node.unique_id, &node.relation).await {
            Ok(Some(entry)) => {
                nodes.insert(node.unique_id.clone(), entry);
            }
            Ok(None) => {}
            Err(e) => errors.push(format!("{}: {e}", node.unique_id)),
        }
    }
    let mut sources = Map::new();
    for source in project.manifest.sources.values() {
        match table_entry(adapter, &source.unique_id, &source.relation).await {
            Ok(Some(entry)) => {
                sources.insert(source.unique_id.clone(), entry);
            }
            Ok(None) => {}
            Err(e) => errors.push(format!("{}: {e}", source.unique_id)),
        }
    }
    Ok(json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/catalog/v1.json",
            "dbt_version": "1.10.0",
            "generated_at": now_rfc3339(),
            "invocation_id": null,
            "env": {},
        },
        "nodes": nodes,
        "sources": sources,
        "errors": if errors.is_empty() { Json::Null } else { json!(errors) },
    }))
}

/// Write `catalog.json` and `index.html` into the target directory.
pub fn write_site(project: &DbtProject, catalog: &Json) -> Result<()> {
    let dir = project.target_dir();
    let text =
        serde_json::to_string_pretty(catalog).map_err(|e| DbtError::Internal(e.to_string()))?;
    crate::compile::write_file(&dir.join("catalog.json"), &text)?;
    crate::compile::write_file(&dir.join("index.html"), INDEX_HTML)
}
