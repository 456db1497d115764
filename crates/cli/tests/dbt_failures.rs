//! `tripline dbt` on a small project with bad rows, through the real binary, on PostgreSQL and on the embedded
//! warehouse: tests that must fail do fail (a duplicate key, a null, an unknown zone), `build` skips the children
//! of a failed test, warnings do not, `run_results.json` has dbt's statuses, and selection picks the right nodes.

mod common;
mod dbt_common;

use common::*;
use dbt_common::*;

const PROFILES: &str = r#"
failing:
  target: pg
  outputs:
    pg:
      type: postgres
      host: "{{ env_var('DBT_POSTGRES_HOST', 'localhost') }}"
      port: "{{ env_var('DBT_POSTGRES_PORT', '5432') }}"
      user: "{{ env_var('DBT_POSTGRES_USER', 'postgres') }}"
      password: "{{ env_var('DBT_POSTGRES_PASSWORD', '') }}"
      dbname: "{{ env_var('DBT_POSTGRES_DBNAME', 'postgres') }}"
      schema: analytics
      threads: 3
    wh:
      type: tripline
      schema: analytics
      threads: 3
"#;

const SCHEMA: &str = r#"
version: 2
models:
  - name: stg_trips
    description: Trips as loaded.
    columns:
      - name: trip_id
        data_tests:
          - unique
          - accepted_values:
              arguments:
                values: [1, 2, 3]
                quote: false
              config:
                severity: warn
      - name: pickup_locationid
        data_tests:
          - not_null
          - relationships:
              arguments:
                to: ref('zones')
                field: locationid
  - name: zone_names
    columns:
      - name: locationid
        data_tests: [unique, not_null]
"#;

/// A project whose trips have a duplicate id (2), a null zone and an unknown zone (99).
fn failing_project(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("dbt");
    write_files(
        &root,
        &[
            (
                "dbt_project.yml",
                "name: failing\nprofile: failing\nconfig-version: 2\nmodels:\n  failing:\n    +materialized: view\n",
            ),
            ("profiles.yml", PROFILES),
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
                "{{ config(materialized='table') }}\nselect pickup_locationid, sum(amount) as amount from {{ ref('stg_trips') }} group by pickup_locationid",
            ),
            (
                "models/zone_names.sql",
                "select locationid, zone from {{ ref('zones') }}",
            ),
            ("models/schema.yml", SCHEMA),
        ],
    );
    root
}

fn env_for(target: &str) -> Vec<(String, String)> {
    if target == "pg" {
        pg_env(&fresh_database("dbt_failing"))
    } else {
        Vec::new()
    }
}

fn failing_tests_fail_and_build_skips_their_children(target: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = failing_project(dir.path());
    let env = env_for(target);
    let run = dbt(dir.path(), &env, &["build", "--target", target]);
    assert_eq!(
        run.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let s = statuses(&root);
    let status = |prefix: &str| -> String {
        let matching: Vec<_> = s.iter().filter(|(k, _)| k.starts_with(prefix)).collect();
        assert_eq!(matching.len(), 1, "one node starting with {prefix}: {s:#?}");
        matching[0].1.clone()
    };
    assert_eq!(status("seed.failing.trips"), "success");
    assert_eq!(status("seed.failing.zones"), "success");
    assert_eq!(status("model.failing.stg_trips"), "success");
    assert_eq!(status("model.failing.zone_names"), "success");
    assert_eq!(status("test.failing.unique_stg_trips_trip_id"), "fail");
    assert_eq!(
        status("test.failing.not_null_stg_trips_pickup_locationid"),
        "fail"
    );
    assert_eq!(
        status("test.failing.relationships_stg_trips_pickup"),
        "fail"
    );
    assert_eq!(
        status("test.failing.accepted_values_stg_trips_trip_id"),
        "warn"
    );
    assert_eq!(status("test.failing.unique_zone_names_locationid"), "pass");
    // The child of the model whose tests failed is not built.
    assert_eq!(status("model.failing.trip_totals"), "skipped");
    let done = done_line(&run);
    assert!(
        done.contains("WARN=1") && done.contains("ERROR=3") && done.contains("SKIP=1"),
        "{done}"
    );
    assert!(
        run.stdout.contains("FAIL 1 unique_stg_trips_trip_id"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("SKIP relation analytics.trip_totals"),
        "{}",
        run.stdout
    );

    // `run` alone builds every model: trip_totals too (no tests in a run).
    let run = dbt(dir.path(), &env, &["run", "--target", target]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(done_line(&run).contains("PASS=3"), "{}", run.stdout);

    // A test selected alone reports its failing rows; store_failures keeps them.
    let run = dbt(
        dir.path(),
        &env,
        &[
            "test",
            "--target",
            target,
            "-s",
            "unique_stg_trips_trip_id",
            "--store-failures",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(statuses(&root).len(), 1);
}

#[test]
fn failing_tests_fail_and_build_skips_their_children_on_postgres() {
    failing_tests_fail_and_build_skips_their_children("pg");
}

#[test]
fn failing_tests_fail_and_build_skips_their_children_on_the_warehouse() {
    failing_tests_fail_and_build_skips_their_children("wh");
}

#[test]
fn select_and_exclude_pick_the_nodes_dbt_picks() {
    let dir = tempfile::tempdir().unwrap();
    failing_project(dir.path());
    let ls = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["ls", "--target", "wh", "--output", "name"];
        all.extend(args);
        let run = dbt(dir.path(), &[], &all).ok();
        let mut names: Vec<String> = run.stdout.lines().map(str::to_string).collect();
        names.sort();
        names
    };
    assert_eq!(
        ls(&["-s", "+trip_totals", "--resource-type", "model", "seed"]),
        ["stg_trips", "trip_totals", "trips"]
    );
    assert_eq!(
        ls(&[
            "-s",
            "+trip_totals",
            "--exclude",
            "trips",
            "--resource-type",
            "model",
            "seed"
        ]),
        ["stg_trips", "trip_totals"]
    );
    assert_eq!(
        ls(&["-s", "stg_trips+", "--resource-type", "model"]),
        ["stg_trips", "trip_totals"]
    );
    assert_eq!(
        ls(&["-s", "zone_names", "--resource-type", "test"]),
        [
            "not_null_zone_names_locationid",
            "unique_zone_names_locationid"
        ]
    );
    assert_eq!(ls(&["-s", "config.materialized:table"]), ["trip_totals"]);
}

#[test]
fn a_broken_project_exits_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = failing_project(dir.path());
    std::fs::write(
        root.join("models/broken.sql"),
        "select * from {{ ref('nowhere') }}",
    )
    .unwrap();
    let run = dbt(dir.path(), &[], &["run", "--target", "wh"]);
    assert_eq!(
        run.code, 2,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stderr.contains("nowhere"), "{}", run.stderr);
    let run = dbt(
        dir.path(),
        &[],
        &["run", "--target", "wh", "--vars", "{unclosed"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
}
