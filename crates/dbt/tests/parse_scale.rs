//! A generated project of ~100 models in layers: parse, select and compile it, and print how long parsing took
//! (nothing is asserted about time; it should be milliseconds).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use tripline_dbt::{
    CompileOptions, DbtProject, IndirectSelection, LoadOptions, OfflineAdapter, Target,
};

#[test]
fn parses_a_hundred_model_project() {
    let mut files = BTreeMap::new();
    files.insert(
        "dbt_project.yml".to_string(),
        "name: big\nprofile: big\n".to_string(),
    );
    files.insert(
        "models/sources.yml".to_string(),
        "version: 2\nsources:\n  - name: raw\n    tables:\n      - name: events\n".to_string(),
    );
    let mut schema = String::from("version: 2\nmodels:\n");
    for layer in 0..10 {
        for i in 0..10 {
            let name = format!("m_{layer}_{i}");
            let sql = if layer == 0 {
                format!(
                    "{{{{ config(materialized='table', tags=['layer{layer}']) }}}}\nselect {i} as id, * from {{{{ source('raw', 'events') }}}}"
                )
            } else {
                let a = format!("m_{}_{}", layer - 1, i);
                let b = format!("m_{}_{}", layer - 1, (i + 1) % 10);
                format!(
                    "select a.id, {{{{ dbt.date_trunc('day', 'a.ts') }}}} as day, {{{{ var('k', 1) }}}} as k\n\
                     from {{{{ ref('{a}') }}}} a join {{{{ ref('{b}') }}}} b on a.id = b.id"
                )
            };
            files.insert(format!("models/layer{layer}/{name}.sql"), sql);
            schema.push_str(&format!(
                "  - name: {name}\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\n"
            ));
        }
    }
    files.insert("models/schema.yml".to_string(), schema);
    let dir = tempfile::tempdir().unwrap();
    common::write_files(dir.path(), &files);
    let started = std::time::Instant::now();
    let project = DbtProject::load(&LoadOptions {
        project_dir: dir.path().to_path_buf(),
        target: Some(Target::new("tripline", "analytics", None)),
        ..Default::default()
    })
    .unwrap();
    let parse = started.elapsed();
    println!("parsed {} nodes in {parse:?}", project.manifest.nodes.len());
    assert_eq!(project.manifest.nodes.len(), 100 + 200);

    let selection = project
        .select(&["+m_9_0".into()], &[], IndirectSelection::Empty)
        .unwrap();
    assert_eq!(selection.levels.len(), 10);
    assert_eq!(selection.levels[9], vec!["model.big.m_9_0".to_string()]);

    let options = CompileOptions {
        adapter: Arc::new(OfflineAdapter::new("tripline", None)),
        execute: false,
        full_refresh: false,
    };
    let started = std::time::Instant::now();
    for id in project.manifest.nodes.keys() {
        project.compile_node(id, &options).unwrap();
    }
    println!(
        "compiled {} nodes in {:?}",
        project.manifest.nodes.len(),
        started.elapsed()
    );
}
