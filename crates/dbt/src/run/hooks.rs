//! Hooks: `pre-hook`/`post-hook` around a node, `on-run-start`/`on-run-end` around a run.

use std::sync::Arc;

use super::{NodeRun, Outcome};
use crate::adapters::RunAdapter;
use crate::compile::CompileOptions;
use crate::error::{DbtError, Result};
use crate::node::Node;
use crate::parse::DbtProject;

/// Run a node's pre-hooks (`pre = true`) or post-hooks; the statements run are returned.
pub(crate) async fn run_node_hooks(run: &NodeRun, node: &Node, pre: bool) -> Result<Outcome> {
    let hooks = if pre {
        &node.config.pre_hook
    } else {
        &node.config.post_hook
    };
    let mut out = Outcome::default();
    for hook in hooks {
        let sql = run.render(node, hook).await?;
        if sql.trim().is_empty() {
            continue;
        }
        run.adapter.execute(&sql, false).await?;
        out.statements.push(sql);
    }
    Ok(out)
}

/// Run `on-run-start` (`start = true`) or `on-run-end` from dbt_project.yml, rendered in the context of the
/// project's first node.
pub(crate) async fn run_project_hooks(
    project: &Arc<DbtProject>,
    adapter: &Arc<dyn RunAdapter>,
    start: bool,
) -> Result<()> {
    let hooks = if start {
        project.project.on_run_start.to_vec()
    } else {
        project.project.on_run_end.to_vec()
    };
    if hooks.is_empty() {
        return Ok(());
    }
    let Some(id) = project
        .manifest
        .nodes
        .values()
        .find(|n| n.package_name == project.project.name)
        .map(|n| n.unique_id.clone())
    else {
        return Ok(());
    };
    let which = if start { "on-run-start" } else { "on-run-end" };
    for hook in hooks {
        let project2 = project.clone();
        let options = CompileOptions {
            adapter: adapter.clone().as_adapter(),
            execute: true,
            full_refresh: false,
        };
        let id2 = id.clone();
        let sql =
            tokio::task::spawn_blocking(move || project2.render_for_node(&id2, &hook, &options))
                .await
                .map_err(|e| DbtError::Internal(format!("rendering {which}: {e}")))??;
        for statement in split_sql(&sql) {
            adapter.execute(&statement, false).await.map_err(|e| {
                DbtError::Config(format!("{which} hook failed: {e}\n  SQL: {statement}"))
            })?;
        }
    }
    Ok(())
}

/// Split rendered hook SQL on `;` outside quotes; empty statements are dropped.
pub(crate) fn split_sql(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, ';') => {
                out.push(std::mem::take(&mut current));
            }
            _ => current.push(c),
        }
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}
