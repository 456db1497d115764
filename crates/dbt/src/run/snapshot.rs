//! Snapshots: type-2 slowly changing dimensions. Each run compares the snapshot query with the current rows
//! (`dbt_valid_to is null`) by `unique_key`: changed rows are closed (`dbt_valid_to` set) and their new version
//! inserted; new keys are inserted; with `invalidate_hard_deletes`, keys gone from the source are closed.
//!
//! A row changed when its `updated_at` is newer (strategy `timestamp`) or when one of `check_cols` differs
//! (strategy `check`). The columns are dbt's: `dbt_scd_id`, `dbt_updated_at`, `dbt_valid_from`, `dbt_valid_to`.

use super::dialect::Dialect;
use super::{NodeRun, Outcome};
use crate::adapter::{RelationKind, RelationName};
use crate::error::{DbtError, Result};
use crate::node::Node;

struct Strategy {
    /// The expression of the row's version time over the source alias `s`.
    updated_at: String,
    /// The condition, over `s` (source) and `cur` (current snapshot row), that a row changed.
    changed: String,
}

fn with_suffix(r: &RelationName, suffix: &str) -> RelationName {
    RelationName::new(
        r.database.clone(),
        r.schema.clone(),
        format!("{}{suffix}", r.identifier),
    )
}

fn strategy(node: &Node, d: Dialect, columns: &[String], key: &[String]) -> Result<Strategy> {
    let q = |c: &str| d.quote(c);
    match node
        .config
        .strategy
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("timestamp") => {
            let col = node.config.updated_at.clone().ok_or_else(|| {
                DbtError::Config(format!(
                    "snapshot {}: strategy timestamp needs `updated_at`",
                    node.name
                ))
            })?;
            Ok(Strategy {
                updated_at: format!("s.{}", q(&col)),
                changed: format!("cur.dbt_valid_from < s.{}", q(&col)),
            })
        }
        Some("check") => {
            let cols = match node.config.check_columns() {
                None => columns
                    .iter()
                    .filter(|c| !key.contains(c))
                    .cloned()
                    .collect(),
                Some(c) => c,
            };
            if cols.is_empty() {
                return Err(DbtError::Config(format!(
                    "snapshot {}: check_cols is empty",
                    node.name
                )));
            }
            let changed = cols
                .iter()
                .map(|c| d.distinct_from(&format!("cur.{}", q(c)), &format!("s.{}", q(c))))
                .collect::<Vec<_>>()
                .join(" or ");
            Ok(Strategy {
                updated_at: d.now().to_string(),
                changed: format!("({changed})"),
            })
        }
        other => Err(DbtError::Config(format!(
            "snapshot {}: strategy `{}` is not timestamp or check",
            node.name,
            other.unwrap_or("(none)")
        ))),
    }
}

fn key_text(d: Dialect, alias: &str, key: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (i, k) in key.iter().enumerate() {
        if i > 0 {
            parts.push("'|'".into());
        }
        parts.push(d.as_text(&format!("{alias}.{}", d.quote(k))));
    }
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        d.concat(&parts)
    }
}

/// Run a snapshot whose compiled query is `sql`.
pub(crate) async fn run(run: &NodeRun, node: &Node, sql: &str) -> Result<Outcome> {
    let d = run.adapter.dialect();
    let target = &node.relation;
    let key = node.config.unique_key_columns();
    if key.is_empty() {
        return Err(DbtError::Config(format!(
            "snapshot {} needs a `unique_key`",
            node.name
        )));
    }
    let source = with_suffix(target, "__dbt_source");
    let changes = with_suffix(target, "__dbt_changes");
    let mut statements = Vec::new();

    // The snapshot query, materialized once, so it is read with the same rows by every step.
    let mut batch = Vec::new();
    for r in [&source, &changes] {
        if let Some(found) = run.adapter.get_relation(r).await? {
            batch.push(d.drop(r, found.kind));
        }
    }
    batch.push(d.create_table(&source, sql, None, &[]));
    run.adapter.execute_batch(&batch).await?;
    statements.extend(batch);
    let columns: Vec<String> = run
        .adapter
        .get_columns(&source)
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    for k in &key {
        if !columns.contains(k) {
            return Err(DbtError::Config(format!(
                "snapshot {}: unique_key column `{k}` is not in the snapshot query",
                node.name
            )));
        }
    }
    let s = strategy(node, d, &columns, &key)?;
    let cols = |alias: &str| -> String {
        columns
            .iter()
            .map(|c| format!("{alias}.{}", d.quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let scd_id = d.md5(&d.concat(&[
        key_text(d, "s", &key),
        "'|'".into(),
        d.as_text(&s.updated_at),
    ]));
    let meta = format!(
        "{scd_id} as dbt_scd_id, {u} as dbt_updated_at, {u} as dbt_valid_from, nullif({u}, {u}) as dbt_valid_to",
        u = s.updated_at
    );
    let t = d.relation(target);
    let src = d.relation(&source);
    let existing = run.adapter.get_relation(target).await?;
    let result = if existing.is_none() {
        let create = d.create_table(
            target,
            &format!("select {}, {meta}\nfrom {src} as s", cols("s")),
            None,
            &[],
        );
        let mut batch = vec![create];
        batch.push(d.drop(&source, RelationKind::Table));
        let results = run.adapter.execute_batch(&batch).await;
        statements.extend(batch);
        results.map(|_| ())
    } else {
        let key_match = key
            .iter()
            .map(|k| format!("s.{q} = cur.{q}", q = d.quote(k)))
            .collect::<Vec<_>>()
            .join(" and ");
        let first_key = d.quote(&key[0]);
        let current = format!("(select * from {t} where dbt_valid_to is null)");
        let changes_sql = format!(
            "select {}, {meta}, cur.dbt_scd_id as dbt_replaced_scd_id\nfrom {src} as s\nleft join {current} as cur on {key_match}\n\
             where cur.dbt_scd_id is null or {}",
            cols("s"),
            s.changed
        );
        let mut batch = vec![d.create_table(&changes, &changes_sql, None, &[])];
        let ch = d.relation(&changes);
        batch.push(format!(
            "merge into {t} as DBT_INTERNAL_DEST\nusing (select dbt_replaced_scd_id, dbt_valid_from from {ch} where dbt_replaced_scd_id is not null) as DBT_INTERNAL_SOURCE\n\
             on (DBT_INTERNAL_DEST.dbt_scd_id = DBT_INTERNAL_SOURCE.dbt_replaced_scd_id)\n\
             when matched then update set dbt_valid_to = DBT_INTERNAL_SOURCE.dbt_valid_from"
        ));
        let all: Vec<String> = columns
            .iter()
            .cloned()
            .chain(
                [
                    "dbt_scd_id",
                    "dbt_updated_at",
                    "dbt_valid_from",
                    "dbt_valid_to",
                ]
                .map(String::from),
            )
            .collect();
        batch.push(format!(
            "insert into {t} ({list})\nselect {list} from {ch}",
            list = d.column_list(&all)
        ));
        if node.config.invalidate_hard_deletes.unwrap_or(false) {
            batch.push(format!(
                "merge into {t} as DBT_INTERNAL_DEST\nusing (select cur.dbt_scd_id from {current} as cur left join {src} as s on {key_match} where s.{first_key} is null) as DBT_INTERNAL_SOURCE\n\
                 on (DBT_INTERNAL_DEST.dbt_scd_id = DBT_INTERNAL_SOURCE.dbt_scd_id)\n\
                 when matched then update set dbt_valid_to = {}",
                d.now()
            ));
        }
        batch.push(d.drop(&changes, RelationKind::Table));
        batch.push(d.drop(&source, RelationKind::Table));
        let results = run.adapter.execute_batch(&batch).await;
        statements.extend(batch);
        results.map(|_| ())
    };
    if let Err(e) = result {
        // Leave no staging tables behind.
        for r in [&changes, &source] {
            let _ = run
                .adapter
                .execute(&d.drop(r, RelationKind::Table), false)
                .await;
        }
        return Err(e.into());
    }
    let rows = count(run, target).await.ok();
    Ok(Outcome {
        message: format!("SNAPSHOT {}", rows.unwrap_or(0)),
        rows,
        statements,
        ..Default::default()
    })
}

async fn count(run: &NodeRun, r: &RelationName) -> Result<u64> {
    let result = run
        .adapter
        .execute(
            &format!("select count(*) from {}", run.adapter.render_relation(r)),
            true,
        )
        .await?;
    Ok(result
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_u64())
        .unwrap_or(0))
}
