//! Flows against a real PostgreSQL (the throwaway server of `scripts/test`, `TRIPLINE_TEST_PG_URL`): the course's
//! Kestra-style merge load run twice, and two workers sharing one PostgreSQL state store.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn project(extra_flows: &[(&str, &str)]) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nyc-taxi");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("tripline.toml"), dir.path().join("tripline.toml")).unwrap();
    for sub in ["seeds", "flows"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(src.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    for (name, text) in extra_flows {
        std::fs::write(dir.path().join("flows").join(format!("{name}.yaml")), text).unwrap();
    }
    dir
}

/// The `merge` task's statement that starts with `command` (its output entry).
fn statement<'a>(report: &'a serde_json::Value, command: &str) -> &'a serde_json::Value {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == "merge")
        .and_then(|t| t["output"]["statements"].as_array())
        .and_then(|s| s.iter().find(|s| s["command"] == command))
        .unwrap_or_else(|| panic!("no {command} in the merge task: {report:#}"))
}

#[test]
fn postgres_load_twice_merges_without_duplicates() {
    let url = fresh_database("flow_merge");
    let p = project(&[]);
    let args = [
        "--json",
        "flow",
        "run",
        "postgres_load",
        "--param",
        "service=yellow",
        "--param",
        "month=2021-01",
        "--param",
        "rows=3000",
        "--param",
    ];
    let postgres = format!("postgres={url}");
    let mut all: Vec<&str> = args.to_vec();
    all.push(&postgres);
    let first = tripline(p.path(), &all).ok().json();
    assert_eq!(first["state"], "Completed", "{first}");
    let stage = &first["tasks"][1]["output"];
    assert_eq!(stage["read"], 3000, "{stage}");
    assert_eq!(
        stage["sources"][0]["target"], "staging.yellow_tripdata_2021_01",
        "{stage}"
    );
    let rows: u64 = psql(&url, "select count(*) from yellow_tripdata")
        .parse()
        .unwrap();
    let distinct: u64 = psql(
        &url,
        "select count(distinct unique_row_id) from yellow_tripdata",
    )
    .parse()
    .unwrap();
    assert_eq!(rows, distinct, "unique_row_id is unique");
    assert!(rows > 2900, "{rows} rows merged from 3000");
    assert_eq!(statement(&first, "INSERT")["rows_affected"], rows);
    assert_eq!(statement(&first, "UPDATE")["rows_affected"], 3000);
    // The key is the one `tripline ingest --mode merge` computes, the course flow's columns.
    let recomputed: u64 = psql(
        &url,
        "select count(*) from yellow_tripdata where unique_row_id = md5(concat_ws('|', \
         coalesce(vendorid::text, ''), coalesce(tpep_pickup_datetime::text, ''), \
         coalesce(tpep_dropoff_datetime::text, ''), coalesce(pulocationid::text, ''), \
         coalesce(dolocationid::text, ''), coalesce(fare_amount::text, ''), coalesce(trip_distance::text, '')))",
    )
    .parse()
    .unwrap();
    assert_eq!(recomputed, rows);
    let staging_left = psql(
        &url,
        "select count(*) from information_schema.tables where table_schema = 'staging' \
         and table_name like 'yellow_tripdata%'",
    );
    assert_eq!(staging_left, "0", "the staging table is dropped");

    // Second run of the same month: every row is already there, nothing is added.
    let second = tripline(p.path(), &all).ok().json();
    assert_eq!(second["state"], "Completed", "{second}");
    assert_eq!(statement(&second, "INSERT")["rows_affected"], 0);
    let again: u64 = psql(&url, "select count(*) from yellow_tripdata")
        .parse()
        .unwrap();
    assert_eq!(again, rows, "no duplicates after a second load");

    // Another month adds its own trips next to them.
    let mut march = all.clone();
    let month = march.iter().position(|a| *a == "month=2021-01").unwrap();
    march[month] = "month=2021-03";
    let third = tripline(p.path(), &march).ok().json();
    let added = statement(&third, "INSERT")["rows_affected"]
        .as_u64()
        .unwrap();
    assert!(added > 2900, "{third:#}");
    let total: u64 = psql(&url, "select count(*) from yellow_tripdata")
        .parse()
        .unwrap();
    assert_eq!(total, rows + added);
}

const PG_SQL: &str = r#"
name: pg_sql
params:
  url: {type: string}
tasks:
  - id: all_or_nothing
    type: sql
    url: "{{ params.url }}"
    transaction: true
    sql: |
      CREATE TABLE kept_or_not (a int);
      INSERT INTO kept_or_not VALUES (1), (2);
      INSERT INTO no_such_table VALUES (1);
  - id: one_by_one
    type: sql
    postgres: postgres
    sql: |
      CREATE TABLE IF NOT EXISTS counted (a int);
      INSERT INTO counted VALUES (1), (2), (3);
      SELECT count(*) AS n FROM counted;
  - id: report
    type: echo
    depends_on: [one_by_one]
    n: "{{ tasks.one_by_one.output.statements[2].result[0].n }}"
"#;

#[test]
fn sql_tasks_on_postgres_run_in_one_transaction_or_one_by_one() {
    let url = fresh_database("flow_sql");
    let p = project(&[("pg_sql", PG_SQL)]);
    let out = Command::new(bin())
        .arg("-C")
        .arg(p.path())
        .args(["--json", "flow", "run", "pg_sql", "--param"])
        .arg(format!("url={url}"))
        .env("TRIPLINE_POSTGRES_URL", &url)
        .env_remove("TRIPLINE_LAKE_ROOT")
        .output()
        .unwrap();
    let run: Run = out.into();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let task = |id: &str| {
        report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task_id"] == id)
            .unwrap_or_else(|| panic!("{id}: {report:#}"))
            .clone()
    };
    let failed = task("all_or_nothing");
    assert_eq!(failed["state"], "Failed", "{failed:#}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("relation \"no_such_table\" does not exist"),
        "{failed:#}"
    );
    assert_eq!(
        psql(&url, "select to_regclass('public.kept_or_not') is null"),
        "t",
        "the transaction was rolled back whole"
    );
    // The project's server ([postgres] url through TRIPLINE_POSTGRES_URL), one statement at a time; the result
    // rows reach the next task.
    assert_eq!(task("one_by_one")["state"], "Completed");
    assert_eq!(task("report")["output"]["n"], "3", "{report:#}");
    assert_eq!(psql(&url, "select count(*) from counted"), "3");
}

const MONTHLY: &str = r#"
name: monthly
params:
  month: {type: month}
tasks:
  - id: record
    type: shell
    command: "sleep 0.3; echo {{ params.month }} >> done_months"
  - id: after
    type: echo
    depends_on: [record]
    month: "{{ params.month }}"
"#;

#[test]
fn two_workers_on_one_postgres_store_share_a_backfill_and_run_nothing_twice() {
    let state = fresh_database("flow_state");
    let p = project(&[("monthly", MONTHLY)]);
    let queued = tripline(
        p.path(),
        &[
            "--json",
            "flow",
            "--state",
            &state,
            "backfill",
            "monthly",
            "--param",
            "month=2020-01..2020-06",
            "--max-active",
            "4",
            "--no-wait",
        ],
    )
    .ok()
    .json();
    assert_eq!(queued["run_ids"].as_array().unwrap().len(), 6);
    let spawn = || {
        Command::new(bin())
            .arg("-C")
            .arg(p.path())
            .args([
                "worker",
                "--state",
                &state,
                "--until-idle",
                "--no-schedules",
                "--max-runs",
                "2",
                "--poll",
                "100ms",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let a: Run = a.wait_with_output().unwrap().into();
    let b: Run = b.wait_with_output().unwrap().into();
    let (a, b) = (a.ok(), b.ok());
    let ran = |r: &Run| -> usize {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with("worker stopped: ran"))
            .unwrap_or_else(|| panic!("{}", r.stdout));
        line["worker stopped: ran ".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(ran(&a) + ran(&b), 6, "{}\n{}", a.stdout, b.stdout);
    let mut months: Vec<String> = std::fs::read_to_string(p.path().join("done_months"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    months.sort();
    assert_eq!(
        months,
        [
            "2020-01", "2020-02", "2020-03", "2020-04", "2020-05", "2020-06"
        ],
        "each month exactly once"
    );
    let attempts: u64 = psql(&state, "select count(*) from tripline_flow.task_attempts")
        .parse()
        .unwrap_or_else(|_| panic!("attempts table"));
    assert_eq!(attempts, 12, "one attempt per task of each run");
    let runs = tripline(
        p.path(),
        &[
            "--json", "flow", "--state", &state, "runs", "--limit", "100",
        ],
    )
    .ok()
    .json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r["state"] == "Completed"), "{runs:?}");
}
