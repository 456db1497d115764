//! The executor against a real PostgreSQL (the throwaway server of `scripts/test`, `TRIPLINE_TEST_PG_URL`):
//! seeds, views, tables, incremental models with each strategy and `on_schema_change`, snapshots, tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tripline_dbt::adapters::{PostgresAdapter, RunAdapter};
use tripline_dbt::run::{self, NodeStatus, RunCommand, RunOptions};
use tripline_dbt::{DbtProject, IndirectSelection, LoadOptions, Target};

fn pg_target(schema: &str) -> (Target, String) {
    let url = std::env::var("TRIPLINE_TEST_PG_URL")
        .expect("TRIPLINE_TEST_PG_URL is not set: run the tests with scripts/test");
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(&url);
    let (auth, rest) = rest.split_once('@').unwrap_or(("postgres", rest));
    let (hostport, db) = rest.split_once('/').unwrap_or((rest, "postgres"));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    let mut target = Target::new("postgres", schema, Some(db));
    target.settings.insert("host".into(), host.into());
    target.settings.insert("port".into(), port.into());
    target.settings.insert(
        "user".into(),
        auth.split(':').next().unwrap_or("postgres").into(),
    );
    target.threads = 2;
    (target, url)
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

async fn build(
    dir: &Path,
    target: &Target,
    command: RunCommand,
    full_refresh: bool,
) -> BTreeMap<String, (NodeStatus, String)> {
    let project = Arc::new(
        DbtProject::load(&LoadOptions {
            project_dir: dir.to_path_buf(),
            target: Some(target.clone()),
            ..Default::default()
        })
        .unwrap(),
    );
    let adapter: Arc<dyn RunAdapter> = Arc::new(
        PostgresAdapter::connect(&target.postgres().unwrap())
            .await
            .unwrap(),
    );
    let selection = project.select(&[], &[], IndirectSelection::Eager).unwrap();
    let options = RunOptions {
        command,
        threads: 2,
        fail_fast: false,
        full_refresh,
        store_failures: false,
    };
    let results = run::execute(
        project,
        adapter,
        &selection,
        options,
        Arc::new(|_: run::RunEvent| {}),
    )
    .await
    .unwrap();
    results
        .results
        .into_iter()
        .map(|r| {
            (
                r.unique_id.split('.').nth(2).unwrap().to_string(),
                (r.status, r.message),
            )
        })
        .collect()
}

async fn query(target: &Target, sql: &str) -> Vec<Vec<serde_json::Value>> {
    let adapter = PostgresAdapter::connect(&target.postgres().unwrap())
        .await
        .unwrap();
    use tripline_dbt::Adapter;
    adapter.execute(sql, true).await.unwrap().rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materializations_incremental_strategies_and_snapshots_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("exec_{}", std::process::id());
    let (target, _) = pg_target(&schema);
    write(
        dir.path(),
        &[
            ("dbt_project.yml", "name: exec\nprofile: exec\n"),
            (
                "seeds/src.csv",
                "id,name,updated_at,amount\n1,a,2024-01-01 00:00:00,1.5\n2,b,2024-01-01 00:00:00,2\n",
            ),
            ("models/v.sql", "select * from {{ ref('src') }}"),
            (
                "models/t.sql",
                "{{ config(materialized='table') }}select id, amount from {{ ref('v') }}",
            ),
            (
                "models/inc_merge.sql",
                "{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge', on_schema_change='append_new_columns') }}\n\
                 select id, name{% if var('extra', false) %}, amount{% endif %} from {{ ref('src') }}",
            ),
            (
                "models/inc_di.sql",
                "{{ config(materialized='incremental', unique_key='id', incremental_strategy='delete+insert') }}select id, name from {{ ref('src') }}",
            ),
            (
                "models/inc_append.sql",
                "{{ config(materialized='incremental') }}select id from {{ ref('src') }}{% if is_incremental() %} where id > (select max(id) from {{ this }}){% endif %}",
            ),
            (
                "snapshots/snap.sql",
                "{% snapshot snap %}{{ config(target_schema=target.schema ~ '_snap', unique_key='id', strategy='timestamp', updated_at='updated_at') }}\
                 select * from {{ ref('src') }}{% endsnapshot %}",
            ),
            (
                "models/schema.yml",
                "version: 2\nmodels:\n  - name: t\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\n",
            ),
        ],
    );
    let first = build(dir.path(), &target, RunCommand::Build, false).await;
    for (name, (status, message)) in &first {
        assert!(
            matches!(status, NodeStatus::Success | NodeStatus::Pass),
            "{name}: {status:?} {message}"
        );
    }
    assert_eq!(first.len(), 9, "{first:#?}");

    // New and changed source rows: id 2 renamed (newer updated_at), id 3 added.
    std::fs::write(
        dir.path().join("seeds/src.csv"),
        "id,name,updated_at,amount\n1,a,2024-01-01 00:00:00,1.5\n2,bb,2024-02-01 00:00:00,2\n3,c,2024-02-01 00:00:00,3\n",
    )
    .unwrap();
    let second = build(dir.path(), &target, RunCommand::Build, false).await;
    for (name, (status, message)) in &second {
        assert!(
            matches!(status, NodeStatus::Success | NodeStatus::Pass),
            "{name}: {status:?} {message}"
        );
    }
    let rows = |sql: String| {
        let target = target.clone();
        async move { query(&target, &sql).await }
    };
    assert_eq!(
        rows(format!(
            "select id, name from {schema}.inc_merge order by id"
        ))
        .await
        .len(),
        3
    );
    assert_eq!(
        rows(format!("select name from {schema}.inc_merge where id = 2")).await[0][0],
        "bb"
    );
    assert_eq!(
        rows(format!("select id from {schema}.inc_di order by id"))
            .await
            .len(),
        3
    );
    assert_eq!(
        rows(format!("select id from {schema}.inc_append"))
            .await
            .len(),
        3
    );
    // The snapshot keeps the old version of id 2, closed, and the new one open.
    let versions = rows(format!(
        "select name, dbt_valid_to is null from {schema}_snap.snap where id = 2 order by dbt_valid_from"
    ))
    .await;
    assert_eq!(
        versions,
        vec![
            vec![serde_json::json!("b"), serde_json::json!(false)],
            vec![serde_json::json!("bb"), serde_json::json!(true)]
        ]
    );
    assert_eq!(
        rows(format!("select count(*) from {schema}_snap.snap")).await[0][0],
        4
    );

    // A new column is appended to the merge model.
    let project_vars = dir.path().join("dbt_project.yml");
    std::fs::write(
        &project_vars,
        "name: exec\nprofile: exec\nvars:\n  extra: true\n",
    )
    .unwrap();
    let third = build(dir.path(), &target, RunCommand::Run, false).await;
    assert_eq!(third["inc_merge"].0, NodeStatus::Success, "{third:#?}");
    assert_eq!(
        rows(format!("select count(amount) from {schema}.inc_merge")).await[0][0],
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_fails_bad_rows_and_skips_the_children_of_failed_tests() {
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("failing_{}", std::process::id());
    let (target, _) = pg_target(&schema);
    write(
        dir.path(),
        &[
            ("dbt_project.yml", "name: failing\nprofile: failing\n"),
            (
                "seeds/zones.csv",
                "locationid,zone\n1,Newark Airport\n2,Jamaica Bay\n",
            ),
            (
                "seeds/trips.csv",
                "trip_id,pickup_locationid,amount\n1,1,10.5\n2,2,3.25\n2,1,4\n3,,5\n4,99,1\n",
            ),
            (
                "models/stg_trips.sql",
                "select trip_id, pickup_locationid, amount from {{ ref('trips') }}",
            ),
            (
                "models/trip_totals.sql",
                "{{ config(materialized='table') }}select pickup_locationid, sum(amount) as amount from {{ ref('stg_trips') }} group by pickup_locationid",
            ),
            (
                "models/zone_names.sql",
                "select locationid, zone from {{ ref('zones') }}",
            ),
            (
                "models/schema.yml",
                "version: 2\nmodels:\n  - name: stg_trips\n    columns:\n      - name: trip_id\n        data_tests:\n          - unique\n          - accepted_values:\n              arguments:\n                values: [1, 2, 3]\n                quote: false\n              config:\n                severity: warn\n      - name: pickup_locationid\n        data_tests:\n          - not_null\n          - relationships:\n              arguments:\n                to: ref('zones')\n                field: locationid\n",
            ),
        ],
    );
    let results = build(dir.path(), &target, RunCommand::Build, false).await;
    let status = |prefix: &str| {
        results
            .iter()
            .find(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.0)
            .unwrap_or_else(|| panic!("no {prefix} in {results:#?}"))
    };
    assert_eq!(status("unique_stg_trips_trip_id"), NodeStatus::Fail);
    assert_eq!(
        status("not_null_stg_trips_pickup_locationid"),
        NodeStatus::Fail
    );
    assert_eq!(status("relationships_stg_trips_pickup"), NodeStatus::Fail);
    assert_eq!(
        status("accepted_values_stg_trips_trip_id"),
        NodeStatus::Warn
    );
    assert_eq!(status("trip_totals"), NodeStatus::Skipped);
    assert_eq!(status("zone_names"), NodeStatus::Success);
    assert_eq!(status("stg_trips"), NodeStatus::Success);
}
