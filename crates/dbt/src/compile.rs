//! The compile phase: render a node with its final config and resolved refs, inline ephemeral models as CTEs,
//! compile generic tests from their macros, and write `target/compiled/...`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::value::Value;

use crate::adapter::{Adapter, RelationName};
use crate::config::NodeConfig;
use crate::error::{DbtError, Result};
use crate::jinja::{
    self, Captures, JinjaEnv, MacroRegistry, RenderScope, ScopeNode, objects::MacroFn,
};
use crate::node::{Node, ResourceType};
use crate::parse::{DbtProject, is_relation_expr};

/// How to compile: against which adapter, and whether queries run.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// The database (or [`crate::OfflineAdapter`] for `compile` with no connection).
    pub adapter: Arc<dyn Adapter>,
    /// dbt's `execute` flag: true when compiling right before running (introspection and `run_query` work).
    pub execute: bool,
    /// `--full-refresh`: `is_incremental()` is false.
    pub full_refresh: bool,
}

/// A compiled node.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledNode {
    /// The node.
    pub unique_id: String,
    /// The SQL, ephemeral CTEs included.
    pub compiled_code: String,
    /// Ephemeral models inlined, in CTE order.
    pub ephemerals: Vec<String>,
    /// Where the node materialises.
    pub relation: RelationName,
    /// The relation as SQL for this adapter (`"db"."schema"."x"` or `schema.x`).
    pub relation_sql: String,
}

/// The `model` variable of a node's context.
pub(crate) fn model_value(node: &Node) -> Value {
    let mut map = serde_json::to_value(node)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    map.insert(
        "config".into(),
        serde_json::Value::Object(node.config_map.clone()),
    );
    map.insert("alias".into(), node.relation.identifier.clone().into());
    map.insert("schema".into(), node.relation.schema.clone().into());
    map.insert(
        "database".into(),
        node.relation
            .database
            .clone()
            .map_or(serde_json::Value::Null, Into::into),
    );
    map.remove("relation");
    Value::from_serialize(&map)
}

/// Turn a minijinja error raised while rendering `node` into [`DbtError::Compile`] naming the file and line.
pub(crate) fn compile_error(
    registry: &MacroRegistry,
    e: &minijinja::Error,
    node: &Node,
) -> DbtError {
    let (name, line) = jinja::error_location(e);
    let file = name
        .map(|n| registry.template_files.get(&n).cloned().unwrap_or(n))
        .unwrap_or_else(|| node.original_file_path.clone());
    let context = if file != node.original_file_path {
        format!(
            "\n  while compiling {} ({})",
            node.unique_id, node.original_file_path
        )
    } else {
        String::new()
    };
    DbtError::Compile {
        file,
        line: line.map(|l| format!(" line {l}")).unwrap_or_default(),
        message: jinja::describe_error(e),
        context,
    }
}

/// The expression of a string that is one `{{ ... }}` and nothing else.
fn whole_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim())
}

/// Inline ephemeral models as CTEs in front of `sql`, merging with a leading `with` as dbt does.
pub fn inject_ctes(sql: &str, ctes: &[(String, String)]) -> String {
    if ctes.is_empty() {
        return sql.to_string();
    }
    let defs: Vec<String> = ctes
        .iter()
        .map(|(name, body)| format!("{name} as (\n{}\n)", body.trim()))
        .collect();
    let trimmed = sql.trim_start();
    let starts_with_with = trimmed.len() >= 4
        && trimmed[..4].eq_ignore_ascii_case("with")
        && trimmed[4..].starts_with(|c: char| c.is_whitespace());
    if starts_with_with {
        format!("with {},\n{}", defs.join(",\n"), trimmed[4..].trim_start())
    } else {
        format!("with {}\n{}", defs.join(",\n"), trimmed)
    }
}

/// The query that summarises a compiled test as dbt runs it: `failures`, `should_warn`, `should_error`.
pub fn test_result_sql(config: &NodeConfig, compiled_test_sql: &str) -> String {
    let limit = config
        .limit
        .map(|l| format!("\n    limit {l}"))
        .unwrap_or_default();
    format!(
        "select\n    {calc} as failures,\n    {calc} {warn} as should_warn,\n    {calc} {error} as should_error\n\
         from (\n{sql}{limit}\n) dbt_internal_test",
        calc = config.fail_calc,
        warn = config.warn_if,
        error = config.error_if,
        sql = compiled_test_sql.trim(),
    )
}

impl DbtProject {
    fn scope(&self, node: &Node, options: &CompileOptions) -> Arc<RenderScope> {
        let this = node.relation.clone();
        let ctx = Value::from_iter([
            ("execute", Value::from(options.execute)),
            (
                "this",
                Value::from_object(jinja::objects::Relation::new(
                    this.clone(),
                    options.adapter.clone(),
                )),
            ),
            ("model", model_value(node)),
            ("schema", Value::from(self.target.schema.clone())),
            ("database", Value::from(self.target.database.clone())),
        ]);
        Arc::new(RenderScope {
            node: ScopeNode {
                package: node.package_name.clone(),
                config: node.config_map.clone(),
                this,
            },
            execute: options.execute,
            full_refresh: options.full_refresh,
            adapter: options.adapter.clone(),
            refs: Some(self.refs.clone()),
            vars: self
                .vars
                .get(&node.package_name)
                .cloned()
                .unwrap_or_default(),
            registry: self.jinja.registry.clone(),
            ctx,
            captures: Mutex::new(Captures::default()),
        })
    }

    /// The Jinja environment (for callers that render ad-hoc SQL such as hooks).
    pub(crate) fn jinja(&self) -> &Arc<JinjaEnv> {
        &self.jinja
    }

    /// Render a node's code (without ephemeral CTEs); returns the SQL and the ephemerals it references.
    fn render_node(&self, node: &Node, options: &CompileOptions) -> Result<(String, Vec<String>)> {
        let scope = self.scope(node, options);
        let jinja = self.jinja();
        let sql = match &node.test_metadata {
            None => jinja
                .render(scope.clone(), &node.original_file_path, &node.raw_code)
                .map_err(|e| compile_error(&jinja.registry, &e, node))?,
            Some(meta) => {
                let mut kwargs: Vec<(String, Value)> = Vec::new();
                for (key, value) in &meta.kwargs {
                    let v = match value.as_str() {
                        Some(s) if key == "model" => {
                            let expr = s
                                .trim()
                                .trim_start_matches("{{")
                                .trim_end_matches("}}")
                                .trim();
                            jinja
                                .eval(scope.clone(), expr, Value::from(()))
                                .map_err(|e| compile_error(&jinja.registry, &e, node))?
                        }
                        Some(s) if is_relation_expr(s) => jinja
                            .eval(scope.clone(), s, Value::from(()))
                            .map_err(|e| compile_error(&jinja.registry, &e, node))?,
                        // `"{{ var('x') }}"`: the expression's value, not its text (a list stays a list).
                        Some(s) if whole_expression(s).is_some() => jinja
                            .eval(
                                scope.clone(),
                                whole_expression(s).unwrap_or_default(),
                                Value::from(()),
                            )
                            .map_err(|e| compile_error(&jinja.registry, &e, node))?,
                        Some(s) if s.contains("{{") || s.contains("{%") => Value::from(
                            jinja
                                .render(scope.clone(), &node.original_file_path, s)
                                .map_err(|e| compile_error(&jinja.registry, &e, node))?,
                        ),
                        _ => jinja::functions::json_to_value(value),
                    };
                    kwargs.push((key.clone(), v));
                }
                let macro_name = format!("test_{}", meta.name);
                let def = match &meta.namespace {
                    Some(ns) => jinja.registry.get(ns, &macro_name).cloned(),
                    None => jinja
                        .registry
                        .resolve(&macro_name, Some(&node.package_name))
                        .cloned(),
                }
                .ok_or_else(|| DbtError::Compile {
                    file: node.original_file_path.clone(),
                    line: String::new(),
                    message: format!("no generic test named `{}`", meta.name),
                    context: String::new(),
                })?;
                let vars = Value::from_iter([
                    ("__test", Value::from_object(MacroFn::Fixed(def))),
                    ("__kwargs", Value::from_iter(kwargs)),
                ]);
                jinja
                    .eval(scope.clone(), "__test(**__kwargs)", vars)
                    .map_err(|e| compile_error(&jinja.registry, &e, node))?
                    .to_string()
            }
        };
        let ephemerals = scope.captures().ephemerals.clone();
        Ok((sql, ephemerals))
    }

    /// Compile one node: render it with its final config, resolved refs and the given adapter, and inline the
    /// ephemeral models it references (transitively) as `__dbt__cte__<name>` CTEs.
    ///
    /// Call this right before running a node when `options.execute` is true, so that introspection
    /// (`is_incremental()`, `run_query`) sees the upstream tables already built. Rendering blocks on the adapter:
    /// see [`crate::adapter`] for the threads this may run on.
    pub fn compile_node(&self, unique_id: &str, options: &CompileOptions) -> Result<CompiledNode> {
        let node = self.node(unique_id)?;
        if node.resource_type == ResourceType::Seed {
            return Ok(CompiledNode {
                unique_id: unique_id.to_string(),
                compiled_code: String::new(),
                ephemerals: Vec::new(),
                relation: node.relation.clone(),
                relation_sql: options.adapter.render_relation(&node.relation),
            });
        }
        let (sql, direct) = self.render_node(node, options)?;
        // Depth-first: an ephemeral's own ephemerals come before it.
        let mut order: Vec<String> = Vec::new();
        let mut bodies: std::collections::HashMap<String, String> =
            std::collections::HashMap::new();
        let mut stack: Vec<String> = vec![unique_id.to_string()];
        self.collect_ephemerals(&direct, options, &mut order, &mut bodies, &mut stack)?;
        let ctes: Vec<(String, String)> = order
            .iter()
            .map(|id| {
                let name = self
                    .manifest
                    .nodes
                    .get(id)
                    .map(|n| n.relation.identifier.clone())
                    .unwrap_or_default();
                (
                    format!("__dbt__cte__{name}"),
                    bodies.remove(id).unwrap_or_default(),
                )
            })
            .collect();
        Ok(CompiledNode {
            unique_id: unique_id.to_string(),
            compiled_code: inject_ctes(&sql, &ctes),
            ephemerals: order,
            relation: node.relation.clone(),
            relation_sql: options.adapter.render_relation(&node.relation),
        })
    }

    fn collect_ephemerals(
        &self,
        ids: &[String],
        options: &CompileOptions,
        order: &mut Vec<String>,
        bodies: &mut std::collections::HashMap<String, String>,
        stack: &mut Vec<String>,
    ) -> Result<()> {
        for id in ids {
            if order.contains(id) {
                continue;
            }
            if stack.contains(id) {
                return Err(DbtError::Graph(format!(
                    "found a cycle of ephemeral models through {id}"
                )));
            }
            let node = self.node(id)?;
            let (sql, nested) = self.render_node(node, options)?;
            stack.push(id.clone());
            self.collect_ephemerals(&nested, options, order, bodies, stack)?;
            stack.pop();
            order.push(id.clone());
            bodies.insert(id.clone(), sql);
        }
        Ok(())
    }

    /// Render Jinja text in the context of a node (its `this`, config, vars): for the executor's hooks
    /// (`pre_hook`/`post_hook` configs, `on-run-start`/`on-run-end` with any node of the package) and other SQL
    /// it builds around a node.
    pub fn render_for_node(
        &self,
        unique_id: &str,
        text: &str,
        options: &CompileOptions,
    ) -> Result<String> {
        let node = self.node(unique_id)?;
        let scope = self.scope(node, options);
        self.jinja()
            .render(scope, &node.original_file_path, text)
            .map_err(|e| compile_error(&self.jinja().registry, &e, node))
    }

    /// The node with this unique id.
    pub fn node(&self, unique_id: &str) -> Result<&Node> {
        self.manifest
            .nodes
            .get(unique_id)
            .ok_or_else(|| DbtError::Graph(format!("no node `{unique_id}` in the project")))
    }

    /// Compile every given node (ephemeral models are skipped: they are inlined into their children) and store
    /// the SQL in the manifest's `compiled_code`.
    pub fn compile_all<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a String>,
        options: &CompileOptions,
    ) -> Result<Vec<CompiledNode>> {
        let ids: Vec<String> = ids.into_iter().cloned().collect();
        let mut out = Vec::new();
        for id in &ids {
            let node = self.node(id)?;
            if node.is_ephemeral() || node.resource_type == ResourceType::Seed {
                continue;
            }
            let compiled = self.compile_node(id, options)?;
            self.manifest
                .compiled
                .insert(id.clone(), compiled.compiled_code.clone());
            out.push(compiled);
        }
        Ok(out)
    }

    /// The target directory (`target-path` of dbt_project.yml, relative to the project).
    pub fn target_dir(&self) -> PathBuf {
        self.root.join(&self.project.target_path)
    }

    /// Write the compiled SQL of a node to `target/compiled/<package>/<original path>` (generic tests under
    /// `<property file>/<test name>.sql`, as dbt); returns the path written.
    pub fn write_compiled(&self, compiled: &CompiledNode) -> Result<PathBuf> {
        let node = self.node(&compiled.unique_id)?;
        let mut path = self.target_dir().join("compiled").join(&node.package_name);
        path.push(&node.original_file_path);
        if node.test_metadata.is_some() {
            // The short name for a long one, as dbt.
            path.push(&node.path);
        } else if node.resource_type == ResourceType::Snapshot {
            path.push(format!("{}.sql", node.name));
        }
        write_file(&path, &compiled.compiled_code)?;
        Ok(path)
    }
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DbtError::io(dir, e))?;
    }
    std::fs::write(path, text).map_err(|e| DbtError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctes_merge_with_a_leading_with() {
        let ctes = vec![("__dbt__cte__a".to_string(), "select 1".to_string())];
        assert_eq!(
            inject_ctes("select * from __dbt__cte__a", &ctes),
            "with __dbt__cte__a as (\nselect 1\n)\nselect * from __dbt__cte__a"
        );
        assert_eq!(
            inject_ctes("  WITH x as (select 2) select * from x", &ctes),
            "with __dbt__cte__a as (\nselect 1\n),\nx as (select 2) select * from x"
        );
    }
}
