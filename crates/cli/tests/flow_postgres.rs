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
    let merge = &first["tasks"][1]["output"];
    assert_eq!(merge["read"], 3000, "{merge}");
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
    assert_eq!(
        merge["sources"][0]["merged_new"].as_u64(),
        Some(rows),
        "{merge}"
    );

    // Second run of the same month: every row is already there, nothing is added.
    let second = tripline(p.path(), &all).ok().json();
    assert_eq!(second["state"], "Completed", "{second}");
    assert_eq!(
        second["tasks"][1]["state"], "Completed",
        "merge runs again, it is not cached"
    );
    assert_eq!(second["tasks"][1]["output"]["sources"][0]["merged_new"], 0);
    let again: u64 = psql(&url, "select count(*) from yellow_tripdata")
        .parse()
        .unwrap();
    assert_eq!(again, rows, "no duplicates after a second load");
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
