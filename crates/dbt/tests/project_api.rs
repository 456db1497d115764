//! The parts of the API the executor relies on beyond compiled SQL: snapshot configs, seeds, test summaries,
//! vars and clean targets.

mod common;

use std::collections::BTreeMap;

use tripline_dbt::{DbtProject, LoadOptions, ResourceType, Target, parse_vars, test_result_sql};

fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, DbtProject) {
    let dir = tempfile::tempdir().unwrap();
    let mut map: BTreeMap<String, String> = files
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("dbt_project.yml".into())
        .or_insert_with(|| "name: proj\nprofile: proj\n".into());
    common::write_files(dir.path(), &map);
    let project = DbtProject::load(&LoadOptions {
        project_dir: dir.path().to_path_buf(),
        target: Some(Target::new("postgres", "analytics", Some("db"))),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (dir, project)
}

#[test]
fn snapshot_configs_are_parsed() {
    let (_dir, p) = project(&[
        (
            "snapshots/trips.sql",
            "{% snapshot trips_snapshot %}\n{{ config(target_schema='snapshots', unique_key='id', strategy='timestamp', updated_at='updated_at') }}\nselect * from {{ source('raw', 'trips') }}\n{% endsnapshot %}\n\
             {% snapshot zones_snapshot %}{{ config(unique_key='zone_id', strategy='check', check_cols=['zone', 'borough']) }}select 1 as zone_id{% endsnapshot %}",
        ),
        (
            "models/sources.yml",
            "version: 2\nsources:\n  - name: raw\n    tables:\n      - name: trips\n",
        ),
    ]);
    let snap = &p.manifest.nodes["snapshot.proj.trips_snapshot"];
    assert_eq!(snap.resource_type, ResourceType::Snapshot);
    assert_eq!(snap.config.strategy.as_deref(), Some("timestamp"));
    assert_eq!(snap.config.updated_at.as_deref(), Some("updated_at"));
    assert_eq!(snap.config.unique_key_columns(), vec!["id"]);
    assert_eq!(snap.relation.schema, "snapshots");
    assert_eq!(snap.depends_on.nodes, vec!["source.proj.raw.trips"]);
    let options = tripline_dbt::CompileOptions {
        adapter: std::sync::Arc::new(tripline_dbt::OfflineAdapter::new(
            "postgres",
            Some("db".into()),
        )),
        execute: false,
        full_refresh: false,
    };
    let hook = p
        .render_for_node(
            "snapshot.proj.trips_snapshot",
            "grant select on {{ this }} to reporter",
            &options,
        )
        .unwrap();
    assert_eq!(
        hook,
        r#"grant select on "db"."snapshots"."trips_snapshot" to reporter"#
    );
    let zones = &p.manifest.nodes["snapshot.proj.zones_snapshot"];
    assert_eq!(
        zones.config.check_columns(),
        Some(vec!["zone".to_string(), "borough".to_string()])
    );
    assert_eq!(zones.relation.schema, "analytics");
}

#[test]
fn seeds_tests_vars_and_clean_targets() {
    let (dir, p) = project(&[
        (
            "dbt_project.yml",
            "name: proj\nprofile: proj\nclean-targets: [target, dbt_packages]\nseeds:\n  proj:\n    +quote_columns: false\n",
        ),
        ("seeds/lookup/zones.csv", "id,name\n1,a\n"),
        (
            "seeds/lookup/props.yml",
            "version: 2\nseeds:\n  - name: zones\n    config:\n      column_types: {id: bigint}\n",
        ),
    ]);
    let seed = &p.manifest.nodes["seed.proj.zones"];
    assert_eq!(seed.file_path, dir.path().join("seeds/lookup/zones.csv"));
    assert_eq!(seed.config.column_types["id"], "bigint");
    assert_eq!(seed.config.quote_columns, Some(false));
    assert_eq!(seed.fqn, vec!["proj", "lookup", "zones"]);
    assert_eq!(seed.relation.database.as_deref(), Some("db"));
    assert_eq!(
        p.clean_targets(),
        vec![dir.path().join("target"), dir.path().join("dbt_packages")]
    );

    let vars = parse_vars("{start: '2024-01-01', months: [1, 2]}").unwrap();
    assert_eq!(vars["months"], serde_json::json!([1, 2]));
    let err = parse_vars("{unclosed: [").unwrap_err().to_string();
    assert!(err.starts_with("--vars"), "{err}");

    let mut config = seed.config.clone();
    config.warn_if = "> 10".into();
    config.limit = Some(5);
    let sql = test_result_sql(&config, "select * from x where y is null");
    assert_eq!(
        common::normalize(&sql),
        "select count(*) as failures, count(*) > 10 as should_warn, count(*) != 0 as should_error from ( select * from x where y is null limit 5 ) dbt_internal_test"
    );
}
