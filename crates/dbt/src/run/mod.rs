//! The executor: runs a selection of a compiled project on a database, node by node along the DAG, and
//! reports what dbt reports (console lines, `run_results.json`).
//!
//! Each node is compiled right before it runs (`execute = true`, so `is_incremental()` and `run_query` see the
//! tables built upstream), its SQL written to `target/compiled/`, and the statements it ran to `target/run/`.

pub mod dialect;
mod hooks;
mod materialize;
pub mod results;
mod runner;
mod seed;
mod snapshot;
mod test;

use std::sync::Arc;
use std::time::Instant;

pub use results::{NodeResult, NodeStatus, RunResults};
pub use runner::{EventSink, RunCommand, RunEvent, RunOptions, execute, runnable_nodes};

use crate::adapters::RunAdapter;
use crate::compile::{CompileOptions, CompiledNode, write_file};
use crate::error::{DbtError, Result};
use crate::node::{Node, ResourceType};
use crate::parse::DbtProject;
use results::now_rfc3339;

/// What one node did, before it becomes a [`NodeResult`].
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Success/pass/warn/fail (errors are `Err`).
    pub status: Option<NodeStatus>,
    /// The database's response (`SELECT 5`) or a test's summary.
    pub message: String,
    /// Rows reported for the main statement.
    pub rows: Option<u64>,
    /// Failing rows of a test.
    pub failures: Option<u64>,
    /// Every statement run, for `target/run/`.
    pub statements: Vec<String>,
}

/// One node's run: the project, the database and the flags that matter to a node.
#[derive(Clone)]
pub(crate) struct NodeRun {
    pub project: Arc<DbtProject>,
    pub adapter: Arc<dyn RunAdapter>,
    pub full_refresh: bool,
    pub store_failures: bool,
    pub thread_id: String,
}

impl NodeRun {
    /// Whether this node rebuilds from scratch (`--full-refresh`, unless the node's `full_refresh` config says).
    pub fn full_refresh_for(&self, node: &Node) -> bool {
        node.config.full_refresh.unwrap_or(self.full_refresh)
    }

    fn compile_options(&self, node: &Node) -> CompileOptions {
        CompileOptions {
            adapter: self.adapter.clone().as_adapter(),
            execute: true,
            full_refresh: self.full_refresh_for(node),
        }
    }

    /// Compile a node on a blocking thread (rendering may query the database) and write `target/compiled/`.
    pub async fn compile(&self, node: &Node) -> Result<CompiledNode> {
        let project = self.project.clone();
        let options = self.compile_options(node);
        let id = node.unique_id.clone();
        tokio::task::spawn_blocking(move || {
            let compiled = project.compile_node(&id, &options)?;
            project.write_compiled(&compiled)?;
            Ok(compiled)
        })
        .await
        .map_err(|e| DbtError::Internal(format!("compiling {}: {e}", node.unique_id)))?
    }

    /// Render Jinja text (a hook) in the context of a node.
    pub async fn render(&self, node: &Node, text: &str) -> Result<String> {
        let project = self.project.clone();
        let options = self.compile_options(node);
        let id = node.unique_id.clone();
        let text = text.to_string();
        tokio::task::spawn_blocking(move || project.render_for_node(&id, &text, &options))
            .await
            .map_err(|e| {
                DbtError::Internal(format!("rendering a hook of {}: {e}", node.unique_id))
            })?
    }

    /// Run one node and turn what happened into its result.
    pub async fn run(&self, id: &str) -> NodeResult {
        let started = Instant::now();
        let started_at = now_rfc3339();
        let Some(node) = self.project.manifest.nodes.get(id) else {
            return NodeResult::bare(id, NodeStatus::Error, format!("no node `{id}`"));
        };
        let mut compiled_code = None;
        let outcome = self.run_node(node, &mut compiled_code).await;
        let ended_at = now_rfc3339();
        let relation_name = (node.resource_type != ResourceType::Test)
            .then(|| self.adapter.render_relation(&node.relation));
        let mut result = NodeResult::bare(id, NodeStatus::Success, "");
        result.execution_time = started.elapsed().as_secs_f64();
        result.timing = vec![
            ("compile".into(), started_at.clone(), started_at.clone()),
            ("execute".into(), started_at, ended_at),
        ];
        result.compiled_code = compiled_code;
        result.relation_name = relation_name;
        match outcome {
            Ok(o) => {
                if !o.statements.is_empty()
                    && let Err(e) = self.write_run_sql(node, &o.statements)
                {
                    result.status = NodeStatus::Error;
                    result.message = e.to_string();
                    return result;
                }
                result.status = o.status.unwrap_or(NodeStatus::Success);
                result.message = o.message;
                result.rows_affected = o.rows;
                result.failures = o.failures;
            }
            Err(e) => {
                result.status = NodeStatus::Error;
                result.message = e.to_string();
            }
        }
        result
    }

    async fn run_node(&self, node: &Node, compiled_code: &mut Option<String>) -> Result<Outcome> {
        match node.resource_type {
            ResourceType::Seed => {
                let mut o = hooks::run_node_hooks(self, node, true).await?;
                let built = seed::load(self, node).await?;
                o.absorb(built);
                o.statements
                    .extend(hooks::run_node_hooks(self, node, false).await?.statements);
                Ok(o)
            }
            ResourceType::Model => {
                let compiled = self.compile(node).await?;
                *compiled_code = Some(compiled.compiled_code.clone());
                let mut o = hooks::run_node_hooks(self, node, true).await?;
                let built = materialize::model(self, node, &compiled.compiled_code).await?;
                o.absorb(built);
                o.statements
                    .extend(hooks::run_node_hooks(self, node, false).await?.statements);
                Ok(o)
            }
            ResourceType::Snapshot => {
                let compiled = self.compile(node).await?;
                *compiled_code = Some(compiled.compiled_code.clone());
                let mut o = hooks::run_node_hooks(self, node, true).await?;
                let built = snapshot::run(self, node, &compiled.compiled_code).await?;
                o.absorb(built);
                o.statements
                    .extend(hooks::run_node_hooks(self, node, false).await?.statements);
                Ok(o)
            }
            ResourceType::Test => {
                let compiled = self.compile(node).await?;
                *compiled_code = Some(compiled.compiled_code.clone());
                test::run(self, node, &compiled.compiled_code).await
            }
            other => Err(DbtError::NotSupported(format!(
                "running a node of type {}",
                other.as_str()
            ))),
        }
    }

    /// Write the statements a node ran to `target/run/<package>/<path>`.
    fn write_run_sql(&self, node: &Node, statements: &[String]) -> Result<()> {
        let mut path = self
            .project
            .target_dir()
            .join("run")
            .join(&node.package_name);
        path.push(&node.original_file_path);
        if node.test_metadata.is_some() || node.resource_type == ResourceType::Snapshot {
            path.push(format!("{}.sql", node.name));
        }
        if node.resource_type == ResourceType::Seed {
            path.set_extension("sql");
        }
        let text = statements
            .iter()
            .map(|s| format!("{};", s.trim().trim_end_matches(';')))
            .collect::<Vec<_>>()
            .join("\n\n");
        write_file(&path, &format!("{text}\n"))
    }
}

impl Outcome {
    /// Take over the result of the main step, keeping the statements already run (hooks).
    fn absorb(&mut self, main: Outcome) {
        self.status = main.status;
        self.message = main.message;
        self.rows = main.rows;
        self.failures = main.failures;
        self.statements.extend(main.statements);
    }
}
