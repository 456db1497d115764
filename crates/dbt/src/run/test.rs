//! Data tests: the compiled query returns failing rows; dbt's summary query counts them and compares the count
//! with `warn_if` / `error_if`; the severity decides between FAIL and WARN. `store_failures` keeps the failing
//! rows in a table of the audit schema.

use super::results::NodeStatus;
use super::{NodeRun, Outcome};
use crate::adapter::RelationKind;
use crate::compile::test_result_sql;
use crate::error::{DbtError, Result};
use crate::node::Node;

fn as_bool(v: Option<&serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(serde_json::Value::String(s)) => matches!(s.as_str(), "t" | "true" | "1"),
        _ => false,
    }
}

/// Run a compiled test.
pub(crate) async fn run(run: &NodeRun, node: &Node, compiled: &str) -> Result<Outcome> {
    let mut statements = Vec::new();
    if node.config.store_failures.unwrap_or(run.store_failures) {
        let d = run.adapter.dialect();
        run.adapter.create_schema(&node.relation).await?;
        let mut batch = Vec::new();
        if let Some(found) = run.adapter.get_relation(&node.relation).await? {
            batch.push(d.drop(&node.relation, found.kind));
        } else if d == super::dialect::Dialect::Postgres {
            batch.push(d.drop(&node.relation, RelationKind::Table));
        }
        batch.push(d.create_table(&node.relation, compiled, None, &[]));
        run.adapter.execute_batch(&batch).await?;
        statements.extend(batch);
    }
    let sql = test_result_sql(&node.config, compiled);
    let result = run.adapter.execute(&sql, true).await?;
    statements.push(sql);
    let row = result
        .rows
        .first()
        .ok_or_else(|| DbtError::Internal(format!("test {} returned no summary row", node.name)))?;
    let col = |name: &str| {
        result
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .and_then(|i| row.get(i))
    };
    let failures = match col("failures") {
        Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(0.0) as u64,
        Some(serde_json::Value::String(s)) => s.parse::<f64>().unwrap_or(0.0) as u64,
        _ => 0,
    };
    let should_warn = as_bool(col("should_warn"));
    let should_error = as_bool(col("should_error"));
    let severity = node.config.severity.trim().to_ascii_lowercase();
    let status = if severity == "error" && should_error {
        NodeStatus::Fail
    } else if should_warn || should_error {
        NodeStatus::Warn
    } else {
        NodeStatus::Pass
    };
    let message = match status {
        NodeStatus::Pass => "PASS".to_string(),
        _ => format!(
            "Got {failures} result{}, configured to {} if {}",
            if failures == 1 { "" } else { "s" },
            if status == NodeStatus::Fail {
                "fail"
            } else {
                "warn"
            },
            if status == NodeStatus::Fail {
                &node.config.error_if
            } else {
                &node.config.warn_if
            }
        ),
    };
    Ok(Outcome {
        status: Some(status),
        message,
        rows: None,
        failures: Some(failures),
        statements,
    })
}
