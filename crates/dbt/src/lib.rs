//! A dbt-compatible project layer: parse a dbt project (dbt_project.yml, profiles.yml, packages, property
//! files), compile its models with Jinja and the dbt context (minijinja), build the DAG, select nodes with dbt's
//! selector syntax, and write `manifest.json` and compiled SQL.
//!
//! Running the compiled SQL is the executor's job: it implements [`Adapter`] for its database and calls
//! [`DbtProject::compile_node`] right before running each node of a [`Selection`], level by level.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tripline_dbt::{CompileOptions, DbtProject, IndirectSelection, LoadOptions, OfflineAdapter};
//!
//! let project = DbtProject::load(&LoadOptions { project_dir: "dbt".into(), ..Default::default() })?;
//! let selection = project.select(&["+fact_trips".into()], &[], IndirectSelection::Eager)?;
//! let options = CompileOptions {
//!     adapter: Arc::new(OfflineAdapter::new(project.target.adapter_type.clone(), project.target.database.clone())),
//!     execute: false,
//!     full_refresh: false,
//! };
//! for id in selection.in_order() {
//!     let compiled = project.compile_node(id, &options)?;
//!     println!("{}", compiled.compiled_code);
//! }
//! # Ok::<(), tripline_dbt::DbtError>(())
//! ```

pub mod adapter;
pub mod adapters;
mod builtins;
pub mod compile;
pub mod config;
pub mod docs;
pub mod error;
pub mod freshness;
pub mod graph;
mod jinja;
pub mod manifest;
pub mod node;
pub mod parse;
pub mod profile;
pub mod project;
mod properties;
pub mod run;
pub mod select;
mod test_names;
mod yaml;

pub use adapter::{
    Adapter, AdapterError, ColumnInfo, ExistingRelation, OfflineAdapter, QueryResult, RelationKind,
    RelationName,
};
pub use compile::{CompileOptions, CompiledNode, inject_ctes, test_result_sql};
pub use config::{ConfigMap, NodeConfig};
pub use error::{DbtError, Result};
pub use graph::Graph;
pub use manifest::Manifest;
pub use node::{DependsOn, MacroInfo, Node, RefCall, ResourceType, SourceNode, TestMetadata};
pub use parse::{DbtProject, LoadOptions, parse_vars};
pub use profile::{PostgresTarget, Target};
pub use project::ProjectFile;
pub use properties::ColumnProperties;
pub use select::{IndirectSelection, Selection};

impl DbtProject {
    /// Select nodes with dbt's `--select` / `--exclude` syntax.
    pub fn select(
        &self,
        select: &[String],
        exclude: &[String],
        indirect: IndirectSelection,
    ) -> Result<Selection> {
        select::select(&self.manifest, &self.graph, select, exclude, indirect)
    }

    /// The directories `dbt clean` removes (`clean-targets`, default: the target directory).
    pub fn clean_targets(&self) -> Vec<std::path::PathBuf> {
        let targets = if self.project.clean_targets.is_empty() {
            vec![self.project.target_path.clone()]
        } else {
            self.project.clean_targets.clone()
        };
        targets.into_iter().map(|t| self.root.join(t)).collect()
    }
}
