//! `dbt source freshness`: how old the newest row of each source is, against its `freshness:` thresholds, and
//! `target/sources.json`.

use std::time::Instant;

use serde_json::{Value as Json, json};

use crate::adapters::RunAdapter;
use crate::error::{DbtError, Result};
use crate::node::SourceNode;
use crate::parse::DbtProject;
use crate::run::dialect::Dialect;
use crate::run::results::now_rfc3339;

/// The freshness of one source table.
#[derive(Debug, Clone)]
pub struct SourceFreshness {
    /// `source.<package>.<source>.<table>`.
    pub unique_id: String,
    /// `pass`, `warn`, `error` (too old) or `runtime error` (the query failed).
    pub status: String,
    /// The newest `loaded_at_field`, as text.
    pub max_loaded_at: Option<String>,
    /// Seconds since then.
    pub age_seconds: Option<f64>,
    /// The error, for `runtime error`.
    pub error: Option<String>,
    /// Seconds the check took.
    pub execution_time: f64,
    /// The thresholds as written.
    pub criteria: Json,
}

fn threshold_seconds(criteria: &Json, key: &str) -> Option<f64> {
    let t = criteria.get(key)?;
    let count = t.get("count")?.as_f64()?;
    let unit = match t.get("period")?.as_str()? {
        "minute" => 60.0,
        "hour" => 3600.0,
        "day" => 86400.0,
        _ => return None,
    };
    Some(count * unit)
}

/// The sources of a selection that have a `loaded_at_field` and a `freshness:` to check.
pub fn checkable_sources<'a>(
    project: &'a DbtProject,
    selected: &std::collections::BTreeSet<String>,
) -> Vec<&'a SourceNode> {
    project
        .manifest
        .sources
        .values()
        .filter(|s| selected.contains(&s.unique_id))
        .filter(|s| {
            s.loaded_at_field.is_some() && s.freshness.as_ref().is_some_and(|f| !f.is_null())
        })
        .collect()
}

/// Check one source.
pub async fn check(adapter: &dyn RunAdapter, source: &SourceNode) -> SourceFreshness {
    let started = Instant::now();
    let criteria = source.freshness.clone().unwrap_or(Json::Null);
    let field = source.loaded_at_field.clone().unwrap_or_default();
    let d = adapter.dialect();
    let now = d.now();
    let age = match d {
        Dialect::Postgres => format!("extract(epoch from ({now} - max({field})))"),
        Dialect::Tripline => format!(
            "date_part('epoch', {now}) - date_part('epoch', cast(max({field}) as timestamp))"
        ),
    };
    let filter = criteria
        .get("filter")
        .and_then(|f| f.as_str())
        .map(|f| format!(" where {f}"))
        .unwrap_or_default();
    let sql = format!(
        "select {} as max_loaded_at, cast({age} as double precision) as age_seconds from {}{filter}",
        d.as_text(&format!("max({field})")),
        adapter.render_relation(&source.relation)
    );
    let mut out = SourceFreshness {
        unique_id: source.unique_id.clone(),
        status: "runtime error".into(),
        max_loaded_at: None,
        age_seconds: None,
        error: None,
        execution_time: 0.0,
        criteria: criteria.clone(),
    };
    match adapter.execute(&sql, true).await {
        Ok(r) => {
            let row = r.rows.first();
            out.max_loaded_at = row
                .and_then(|r| r.first())
                .and_then(|v| v.as_str())
                .map(str::to_string);
            out.age_seconds = row.and_then(|r| r.get(1)).and_then(|v| v.as_f64());
            out.status = match out.age_seconds {
                None => "error".into(),
                Some(age)
                    if threshold_seconds(&criteria, "error_after").is_some_and(|t| age > t) =>
                {
                    "error".into()
                }
                Some(age)
                    if threshold_seconds(&criteria, "warn_after").is_some_and(|t| age > t) =>
                {
                    "warn".into()
                }
                Some(_) => "pass".into(),
            };
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out.execution_time = started.elapsed().as_secs_f64();
    out
}

/// Write `target/sources.json`.
pub fn write_sources_json(
    project: &DbtProject,
    results: &[SourceFreshness],
    elapsed: f64,
) -> Result<std::path::PathBuf> {
    let rows: Vec<Json> = results
        .iter()
        .map(|r| {
            json!({
                "unique_id": r.unique_id,
                "max_loaded_at": r.max_loaded_at,
                "snapshotted_at": now_rfc3339(),
                "max_loaded_at_time_ago_in_s": r.age_seconds,
                "status": r.status,
                "criteria": r.criteria,
                "adapter_response": {},
                "timing": [],
                "thread_id": "Thread-1",
                "execution_time": r.execution_time,
                "error": r.error,
            })
        })
        .collect();
    let doc = json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/sources/v3.json",
            "dbt_version": "1.10.0",
            "generated_at": now_rfc3339(),
        },
        "results": rows,
        "elapsed_time": elapsed,
    });
    let path = project.target_dir().join("sources.json");
    let text = serde_json::to_string_pretty(&doc).map_err(|e| DbtError::Internal(e.to_string()))?;
    crate::compile::write_file(&path, &text)?;
    Ok(path)
}
