//! Seeds: a CSV file loaded as a table. Column types are inferred from the values as dbt does (integer, number,
//! boolean, date, timestamp, text) unless `column_types` names them; the rows go in as `VALUES` casts, so the same
//! statements run on PostgreSQL and the warehouse.

use super::dialect::{Dialect, SeedType};
use super::{NodeRun, Outcome};
use crate::adapter::{RelationKind, RelationName};
use crate::adapters::literal;
use crate::error::{DbtError, Result};
use crate::node::Node;

/// Rows per `VALUES` list.
const CHUNK_ROWS: usize = 1000;

/// A seed file, read.
#[derive(Debug)]
pub(crate) struct SeedTable {
    /// Column names (folded to lower case when `quote_columns` is false, as unquoted names are on PostgreSQL).
    pub columns: Vec<String>,
    /// SQL type of each column.
    pub types: Vec<String>,
    /// Values; `None` for an empty field.
    pub rows: Vec<Vec<Option<String>>>,
}

fn infer(values: impl Iterator<Item = String>) -> SeedType {
    let mut kind: Option<SeedType> = None;
    for v in values {
        let v = v.trim();
        let this = if v.parse::<i64>().is_ok() {
            SeedType::Integer
        } else if v.parse::<f64>().is_ok() {
            SeedType::Number
        } else if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") {
            SeedType::Boolean
        } else if chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() {
            SeedType::Date
        } else if chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f").is_ok()
            || chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        {
            SeedType::Timestamp
        } else {
            return SeedType::Text;
        };
        kind = Some(match (kind, this) {
            (None, t) => t,
            (Some(a), b) if a == b => a,
            (Some(SeedType::Integer), SeedType::Number)
            | (Some(SeedType::Number), SeedType::Integer) => SeedType::Number,
            (Some(SeedType::Date), SeedType::Timestamp)
            | (Some(SeedType::Timestamp), SeedType::Date) => SeedType::Timestamp,
            _ => return SeedType::Text,
        });
    }
    kind.unwrap_or(SeedType::Text)
}

/// Read a seed's CSV and type its columns for `dialect`.
pub(crate) fn read(node: &Node, dialect: Dialect) -> Result<SeedTable> {
    let delimiter = node
        .config
        .delimiter
        .as_deref()
        .and_then(|d| d.bytes().next())
        .unwrap_or(b',');
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_path(&node.file_path)
        .map_err(|e| {
            DbtError::Config(format!(
                "seed {}: cannot read {}: {e}",
                node.name,
                node.file_path.display()
            ))
        })?;
    let bad = |e: csv::Error| {
        DbtError::Config(format!(
            "seed {} ({}): {e}",
            node.name, node.original_file_path
        ))
    };
    let header: Vec<String> = reader
        .headers()
        .map_err(bad)?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let quote = node.config.quote_columns.unwrap_or(true);
    let columns: Vec<String> = header
        .iter()
        .map(|h| {
            if quote {
                h.clone()
            } else {
                h.to_ascii_lowercase()
            }
        })
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(bad)?;
        rows.push(
            (0..header.len())
                .map(|i| record.get(i).filter(|v| !v.is_empty()).map(str::to_string))
                .collect::<Vec<_>>(),
        );
    }
    let types = header
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let given = node
                .config
                .column_types
                .iter()
                .find(|(k, _)| k.as_str() == name || k.eq_ignore_ascii_case(name))
                .map(|(_, t)| t.clone());
            given.unwrap_or_else(|| {
                dialect
                    .seed_type(infer(
                        rows.iter()
                            .filter_map(|r: &Vec<Option<String>>| r[i].clone()),
                    ))
                    .to_string()
            })
        })
        .collect();
    Ok(SeedTable {
        columns,
        types,
        rows,
    })
}

/// `select cast(column1 as t1) as c1, ... from (values (...), ...) as v` for one chunk of rows.
fn select_chunk(d: Dialect, table: &SeedTable, rows: &[Vec<Option<String>>]) -> String {
    let casts: Vec<String> = table
        .columns
        .iter()
        .zip(&table.types)
        .enumerate()
        .map(|(i, (name, t))| {
            if rows.is_empty() {
                format!("cast(null as {t}) as {}", d.quote(name))
            } else {
                format!("cast(column{} as {t}) as {}", i + 1, d.quote(name))
            }
        })
        .collect();
    if rows.is_empty() {
        return format!("select {} where false", casts.join(", "));
    }
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .map(|v| v.as_deref().map_or_else(|| "null".to_string(), literal))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    format!(
        "select {}\nfrom (values\n{}\n) as dbt_seed_values",
        casts.join(", "),
        values.join(",\n")
    )
}

fn load_statements(
    d: Dialect,
    table: &SeedTable,
    relation: &RelationName,
    create: bool,
) -> Vec<String> {
    let chunks: Vec<&[Vec<Option<String>>]> = if table.rows.is_empty() {
        vec![&[]]
    } else {
        table.rows.chunks(CHUNK_ROWS).collect()
    };
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let select = select_chunk(d, table, chunk);
        if i == 0 && create {
            out.push(d.create_table(relation, &select, None, &[]));
        } else {
            out.push(format!(
                "insert into {} ({})\n{select}",
                d.relation(relation),
                d.column_list(&table.columns)
            ));
        }
    }
    out
}

/// Load a seed: replace the table (or, on PostgreSQL without `--full-refresh`, truncate and refill it so views
/// on it survive, as dbt does).
pub(crate) async fn load(run: &NodeRun, node: &Node) -> Result<Outcome> {
    let d = run.adapter.dialect();
    let table = read(node, d)?;
    let relation = &node.relation;
    let existing = run.adapter.get_relation(relation).await?;
    let n = table.rows.len() as u64;
    let full_refresh = run.full_refresh_for(node);
    let statements = match (d, &existing) {
        (Dialect::Postgres, Some(e)) if e.kind == RelationKind::Table && !full_refresh => {
            let current: Vec<String> = run
                .adapter
                .get_columns(relation)
                .await?
                .into_iter()
                .map(|c| c.name)
                .collect();
            if current == table.columns {
                let mut s = vec![format!("truncate table {}", d.relation(relation))];
                s.extend(load_statements(d, &table, relation, false));
                s
            } else {
                let mut s = vec![d.drop(relation, e.kind)];
                s.extend(load_statements(d, &table, relation, true));
                s
            }
        }
        (Dialect::Postgres, Some(e)) => {
            let mut s = vec![d.drop(relation, e.kind)];
            s.extend(load_statements(d, &table, relation, true));
            s
        }
        (Dialect::Tripline, Some(e)) if e.kind != RelationKind::Table => {
            let mut s = vec![d.drop(relation, e.kind)];
            s.extend(load_statements(d, &table, relation, true));
            s
        }
        _ => load_statements(d, &table, relation, true),
    };
    run.adapter.execute_batch(&statements).await?;
    Ok(Outcome {
        message: format!("INSERT {n}"),
        rows: Some(n),
        statements,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_inferred_like_dbt() {
        let v = |xs: &[&str]| {
            xs.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert_eq!(infer(v(&["1", "2"])), SeedType::Integer);
        assert_eq!(infer(v(&["1", "2.5"])), SeedType::Number);
        assert_eq!(
            infer(v(&["2024-01-01", "2024-01-02 10:00:00"])),
            SeedType::Timestamp
        );
        assert_eq!(infer(v(&["EWR", "1"])), SeedType::Text);
        assert_eq!(infer(v(&["True", "false"])), SeedType::Boolean);
    }
}
