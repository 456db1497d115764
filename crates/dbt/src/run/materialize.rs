//! Materializations of models: view, table, incremental (append, merge, delete+insert with `on_schema_change`).
//! Ephemeral models never get here: they are inlined into their children as CTEs.
//!
//! On PostgreSQL a model is built under `<name>__dbt_tmp` and swapped in by renames inside one transaction, as
//! dbt-postgres does; the warehouse replaces in place with `CREATE OR REPLACE`, which is one atomic Delta commit.

use super::dialect::{Dialect, IncrementalStrategy};
use super::{NodeRun, Outcome};
use crate::adapter::{ExistingRelation, QueryResult, RelationKind, RelationName};
use crate::error::{DbtError, Result};
use crate::node::Node;

/// Build a model from its compiled SQL.
pub(crate) async fn model(run: &NodeRun, node: &Node, sql: &str) -> Result<Outcome> {
    let materialized = node.config.materialized.to_ascii_lowercase();
    match materialized.as_str() {
        "view" => view(run, node, sql).await,
        "table" => table(run, node, sql).await,
        "incremental" => incremental(run, node, sql).await,
        "ephemeral" => Ok(Outcome::default()),
        other => Err(DbtError::NotSupported(format!(
            "materialization `{other}` (model {}); tripline builds view, table, incremental and ephemeral",
            node.name
        ))),
    }
}

fn with_suffix(r: &RelationName, suffix: &str) -> RelationName {
    RelationName::new(
        r.database.clone(),
        r.schema.clone(),
        format!("{}{suffix}", r.identifier),
    )
}

fn refuse_external(node: &Node, existing: &Option<ExistingRelation>) -> Result<()> {
    if let Some(e) = existing
        && e.kind == RelationKind::External
    {
        return Err(DbtError::Config(format!(
            "model {} would replace {}.{}, which is an external table: rename the model or set `alias`",
            node.name, node.relation.schema, node.relation.identifier
        )));
    }
    Ok(())
}

/// The message and row count of a statement's result.
fn response(r: Option<&QueryResult>) -> (String, Option<u64>) {
    r.map(|r| (r.message.clone(), r.rows_affected))
        .unwrap_or_else(|| ("OK".into(), None))
}

/// PostgreSQL's swap: create under `__dbt_tmp`, rename the old relation to `__dbt_backup`, rename the new one into
/// place and drop the backup, all in one transaction. Returns the statements and the result of the create.
async fn swap_in(
    run: &NodeRun,
    relation: &RelationName,
    existing: Option<ExistingRelation>,
    create: impl Fn(&RelationName) -> Vec<String>,
) -> Result<(Vec<String>, QueryResult)> {
    let d = run.adapter.dialect();
    let tmp = with_suffix(relation, "__dbt_tmp");
    let backup = with_suffix(relation, "__dbt_backup");
    let mut statements = Vec::new();
    for leftover in [&tmp, &backup] {
        if let Some(found) = run.adapter.get_relation(leftover).await? {
            statements.push(d.drop(leftover, found.kind));
        }
    }
    let create_at = statements.len();
    let creates = create(&tmp);
    let n_create = creates.len();
    statements.extend(creates);
    if let Some(old) = &existing {
        statements.push(d.rename(relation, &backup.identifier));
        statements.push(d.rename(&tmp, &relation.identifier));
        statements.push(d.drop(&backup, old.kind));
    } else {
        statements.push(d.rename(&tmp, &relation.identifier));
    }
    let results = run.adapter.execute_batch(&statements).await?;
    let mut main = results.get(create_at).cloned().unwrap_or_default();
    if n_create > 1 {
        // A seed: the create and its inserts; report the rows of all of them.
        let rows: u64 = results[create_at..create_at + n_create]
            .iter()
            .filter_map(|r| r.rows_affected)
            .sum();
        main.rows_affected = Some(rows);
    }
    Ok((statements, main))
}

async fn view(run: &NodeRun, node: &Node, sql: &str) -> Result<Outcome> {
    let d = run.adapter.dialect();
    let relation = &node.relation;
    let existing = run.adapter.get_relation(relation).await?;
    refuse_external(node, &existing)?;
    let (statements, main) = if d.swaps_by_rename() {
        swap_in(run, relation, existing, |tmp| vec![d.create_view(tmp, sql)]).await?
    } else {
        let mut statements = Vec::new();
        if let Some(e) = &existing
            && e.kind != RelationKind::View
        {
            statements.push(d.drop(relation, e.kind));
        }
        statements.push(d.create_view(relation, sql));
        let results = run.adapter.execute_batch(&statements).await?;
        (statements, results.last().cloned().unwrap_or_default())
    };
    let (message, rows) = response(Some(&main));
    Ok(Outcome {
        message: if message.is_empty() {
            "CREATE VIEW".into()
        } else {
            message
        },
        rows,
        statements,
        ..Default::default()
    })
}

/// `partition_by` / `cluster_by` configs in BigQuery's shape, for the warehouse.
fn layout(node: &Node) -> (Option<String>, Vec<String>) {
    let partition = match node.config.extra.get("partition_by") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => {
            o.get("field").and_then(|f| f.as_str()).map(|field| {
                match o
                    .get("data_type")
                    .and_then(|t| t.as_str())
                    .map(str::to_ascii_lowercase)
                {
                    Some(t) if t == "date" => field.to_string(),
                    _ => format!("DATE({field})"),
                }
            })
        }
        _ => None,
    };
    let cluster = match node.config.extra.get("cluster_by") {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    (partition, cluster)
}

/// Build the model as a table from scratch (table materialization; first or full-refresh incremental run).
async fn rebuild_table(
    run: &NodeRun,
    node: &Node,
    sql: &str,
    existing: Option<ExistingRelation>,
) -> Result<Outcome> {
    let d = run.adapter.dialect();
    let relation = &node.relation;
    let (partition, cluster) = layout(node);
    let (statements, main) = if d.swaps_by_rename() {
        swap_in(run, relation, existing, |tmp| {
            vec![d.create_table(tmp, sql, partition.as_deref(), &cluster)]
        })
        .await?
    } else {
        let mut statements = Vec::new();
        if let Some(e) = &existing
            && e.kind != RelationKind::Table
        {
            statements.push(d.drop(relation, e.kind));
        }
        statements.push(d.create_table(relation, sql, partition.as_deref(), &cluster));
        let results = run.adapter.execute_batch(&statements).await?;
        let mut main = results.last().cloned().unwrap_or_default();
        if main.rows_affected.is_none() {
            main.rows_affected = count_rows(run, relation).await.ok();
            main.message = format!("SELECT {}", main.rows_affected.unwrap_or(0));
        }
        (statements, main)
    };
    let (message, rows) = response(Some(&main));
    Ok(Outcome {
        message,
        rows,
        statements,
        ..Default::default()
    })
}

async fn count_rows(run: &NodeRun, relation: &RelationName) -> Result<u64> {
    let sql = format!(
        "select count(*) from {}",
        run.adapter.render_relation(relation)
    );
    let result = run.adapter.execute(&sql, true).await?;
    Ok(result
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_u64())
        .unwrap_or(0))
}

async fn table(run: &NodeRun, node: &Node, sql: &str) -> Result<Outcome> {
    let existing = run.adapter.get_relation(&node.relation).await?;
    refuse_external(node, &existing)?;
    rebuild_table(run, node, sql, existing).await
}

async fn incremental(run: &NodeRun, node: &Node, sql: &str) -> Result<Outcome> {
    let d = run.adapter.dialect();
    let relation = &node.relation;
    let existing = run.adapter.get_relation(relation).await?;
    refuse_external(node, &existing)?;
    let key = node.config.unique_key_columns();
    let strategy = IncrementalStrategy::parse(
        node.config.incremental_strategy.as_deref(),
        !key.is_empty(),
        d,
    )
    .map_err(DbtError::NotSupported)?;
    let full = run.full_refresh_for(node)
        || existing
            .as_ref()
            .is_none_or(|e| e.kind != RelationKind::Table);
    if full {
        return rebuild_table(run, node, sql, existing).await;
    }

    // The new rows into a staging table beside the target.
    let tmp = with_suffix(relation, "__dbt_tmp");
    let mut statements = Vec::new();
    if let Some(found) = run.adapter.get_relation(&tmp).await? {
        statements.push(d.drop(&tmp, found.kind));
    }
    statements.push(d.create_table(&tmp, sql, None, &[]));
    run.adapter.execute_batch(&statements).await?;

    let result = merge_staged(run, node, &tmp, &key, strategy, &mut statements).await;
    // The staging table goes whether the merge worked or not.
    let drop_tmp = d.drop(&tmp, RelationKind::Table);
    let dropped = run.adapter.execute(&drop_tmp, false).await;
    statements.push(drop_tmp);
    let (message, rows) = result?;
    dropped?;
    Ok(Outcome {
        message,
        rows,
        statements,
        ..Default::default()
    })
}

/// Apply `on_schema_change`, then add the staged rows with the strategy. Returns the main statement's response.
async fn merge_staged(
    run: &NodeRun,
    node: &Node,
    tmp: &RelationName,
    key: &[String],
    strategy: IncrementalStrategy,
    statements: &mut Vec<String>,
) -> Result<(String, Option<u64>)> {
    let d = run.adapter.dialect();
    let relation = &node.relation;
    let target_cols = run.adapter.get_columns(relation).await?;
    let new_cols = run.adapter.get_columns(tmp).await?;
    let has = |cols: &[crate::adapter::ColumnInfo], name: &str| cols.iter().any(|c| c.name == name);
    let added: Vec<(String, String)> = new_cols
        .iter()
        .filter(|c| !has(&target_cols, &c.name))
        .map(|c| (c.name.clone(), d.sql_type(&c.data_type)))
        .collect();
    let removed: Vec<String> = target_cols
        .iter()
        .filter(|c| !has(&new_cols, &c.name))
        .map(|c| c.name.clone())
        .collect();
    let on_change = node
        .config
        .on_schema_change
        .as_deref()
        .unwrap_or("ignore")
        .to_ascii_lowercase();
    let mut batch: Vec<String> = Vec::new();
    let changed = !added.is_empty() || !removed.is_empty();
    let dest_columns: Vec<String> = match on_change.as_str() {
        "ignore" => target_cols
            .iter()
            .filter(|c| has(&new_cols, &c.name))
            .map(|c| c.name.clone())
            .collect(),
        "fail" if changed => {
            return Err(DbtError::Config(format!(
                "the source and target schemas of incremental model {} are out of sync (on_schema_change: fail): \
                 new columns [{}], missing columns [{}]; re-run with --full-refresh or change on_schema_change",
                node.name,
                added
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                removed.join(", ")
            )));
        }
        "fail" => new_cols.iter().map(|c| c.name.clone()).collect(),
        "append_new_columns" | "sync_all_columns" => {
            let sync = on_change == "sync_all_columns";
            if changed {
                match d {
                    Dialect::Postgres => {
                        for (name, data_type) in &added {
                            batch.push(d.add_column(relation, name, data_type));
                        }
                        if sync {
                            for name in &removed {
                                batch.push(d.drop_column(relation, name));
                            }
                        }
                    }
                    Dialect::Tripline => {
                        let keep: Vec<String> = target_cols
                            .iter()
                            .filter(|c| !sync || has(&new_cols, &c.name))
                            .map(|c| c.name.clone())
                            .collect();
                        if !added.is_empty() || (sync && !removed.is_empty()) {
                            batch.push(d.rebuild_with_columns(relation, &keep, &added));
                        }
                    }
                }
            }
            let mut cols: Vec<String> = target_cols
                .iter()
                .filter(|c| has(&new_cols, &c.name))
                .map(|c| c.name.clone())
                .collect();
            cols.extend(added.iter().map(|(n, _)| n.clone()));
            cols
        }
        other => {
            return Err(DbtError::Config(format!(
                "model {}: on_schema_change `{other}` is not one of ignore, fail, append_new_columns, sync_all_columns",
                node.name
            )));
        }
    };
    match strategy {
        IncrementalStrategy::Append => batch.push(d.insert_from(relation, tmp, &dest_columns)),
        IncrementalStrategy::Merge => batch.push(d.merge(relation, tmp, key, &dest_columns)),
        IncrementalStrategy::DeleteInsert => {
            if key.is_empty() {
                return Err(DbtError::Config(format!(
                    "model {}: incremental_strategy delete+insert needs a unique_key",
                    node.name
                )));
            }
            batch.push(d.delete_matching(relation, tmp, key));
            batch.push(d.insert_from(relation, tmp, &dest_columns));
        }
    }
    let results = run.adapter.execute_batch(&batch).await?;
    statements.extend(batch);
    let (message, rows) = match strategy {
        IncrementalStrategy::DeleteInsert => {
            let r = results.last();
            (
                format!("INSERT 0 {}", r.and_then(|r| r.rows_affected).unwrap_or(0)),
                r.and_then(|r| r.rows_affected),
            )
        }
        _ => response(results.last()),
    };
    Ok((message, rows))
}
