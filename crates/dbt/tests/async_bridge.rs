//! The adapter is async and rendering is not: compiling through the bridge works on a blocking thread and on a
//! worker of a multi-thread runtime, and the project can be shared across threads.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tripline_dbt::{
    Adapter, AdapterError, ColumnInfo, CompileOptions, DbtProject, ExistingRelation, LoadOptions,
    QueryResult, RelationKind, RelationName, Target,
};

/// TEST FIXTURE: an adapter whose answers arrive only after yielding to the tokio scheduler, like a real
/// database client's.
#[derive(Debug)]
struct YieldingAdapter;

#[async_trait]
impl Adapter for YieldingAdapter {
    fn adapter_type(&self) -> &str {
        "postgres"
    }

    async fn execute(&self, _sql: &str, _fetch: bool) -> Result<QueryResult, AdapterError> {
        tokio::task::yield_now().await;
        Ok(QueryResult::default())
    }

    async fn get_relation(
        &self,
        relation: &RelationName,
    ) -> Result<Option<ExistingRelation>, AdapterError> {
        tokio::task::yield_now().await;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| AdapterError::external(e.to_string()))?;
        let found = handle
            .spawn(async { true })
            .await
            .map_err(|e| AdapterError::external(e.to_string()))?;
        Ok(found.then(|| ExistingRelation {
            name: relation.clone(),
            kind: RelationKind::Table,
        }))
    }

    async fn get_columns(&self, _relation: &RelationName) -> Result<Vec<ColumnInfo>, AdapterError> {
        Ok(Vec::new())
    }
}

fn project() -> (tempfile::TempDir, Arc<DbtProject>) {
    let dir = tempfile::tempdir().unwrap();
    let files: BTreeMap<String, String> = [
        ("dbt_project.yml", "name: proj\nprofile: proj\n"),
        (
            "models/inc.sql",
            "{{ config(materialized='incremental') }}select 1{% if is_incremental() %} where new{% endif %}",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    common::write_files(dir.path(), &files);
    let project = DbtProject::load(&LoadOptions {
        project_dir: dir.path().to_path_buf(),
        target: Some(Target::new("postgres", "analytics", Some("db"))),
        ..Default::default()
    })
    .unwrap();
    (dir, Arc::new(project))
}

fn options() -> CompileOptions {
    CompileOptions {
        adapter: Arc::new(YieldingAdapter),
        execute: true,
        full_refresh: false,
    }
}

#[test]
fn compiles_on_a_blocking_thread_and_on_a_worker() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DbtProject>();
    assert_send_sync::<CompileOptions>();

    let (_dir, project) = project();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let p = project.clone();
        let on_blocking =
            tokio::task::spawn_blocking(move || p.compile_node("model.proj.inc", &options()))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(on_blocking.compiled_code, "select 1 where new");
        let on_worker = project.compile_node("model.proj.inc", &options()).unwrap();
        assert_eq!(on_worker.compiled_code, "select 1 where new");
    });
}

#[test]
fn a_current_thread_runtime_is_refused_with_a_clear_error() {
    let (_dir, project) = project();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = runtime.block_on(async {
        project
            .compile_node("model.proj.inc", &options())
            .unwrap_err()
    });
    assert!(err.to_string().contains("blocking thread"), "{err}");
}
