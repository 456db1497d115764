//! `tripline flow ...` through the real binary on a copy of the example project: the course's web-to-lake flow,
//! caching, run listings, failures, a crash and its resume, backfills, and flow file errors.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A copy of examples/nyc-taxi (config, zone seed, flows, dbt project) plus extra flow files.
fn project(extra_flows: &[(&str, &str)]) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nyc-taxi");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("tripline.toml"), dir.path().join("tripline.toml")).unwrap();
    for sub in ["seeds", "flows", "dbt"] {
        copy_tree(&src.join(sub), &dir.path().join(sub));
    }
    for (name, text) in extra_flows {
        std::fs::write(dir.path().join("flows").join(format!("{name}.yaml")), text).unwrap();
    }
    dir
}

/// Copy a directory tree, leaving out dbt's `target/` and `dbt_packages/`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if entry.file_type().unwrap().is_dir() {
            if name != "target" && name != "dbt_packages" {
                copy_tree(&entry.path(), &to.join(&name));
            }
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// Write files (path relative to `dir` -> text).
fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn flow(project: &Path, args: &[&str]) -> Run {
    let mut all = vec!["flow"];
    all.extend(args);
    tripline(project, &all)
}

fn runs_json(project: &Path) -> Vec<serde_json::Value> {
    flow(project, &["--json", "runs", "--all", "--limit", "100"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn web_to_lake_completes_fills_the_lake_and_a_rerun_is_cached() {
    let p = project(&[]);
    let run = flow(
        p.path(),
        &[
            "run",
            "web_to_lake",
            "--param",
            "service=green",
            "--param",
            "month=2021-03",
            "--param",
            "rows=4000",
        ],
    )
    .ok();
    assert!(run.stdout.contains("of flow web_to_lake"), "{}", run.stdout);
    assert!(
        run.stdout.contains("extract")
            && run.stdout.contains("load")
            && run
                .stdout
                .contains("read 4000 = written 4000 + quarantined 0"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Completed in") && run.stdout.contains("2 completed"),
        "{}",
        run.stdout
    );
    let lake = p.path().join("lake/raw/green/year=2021/month=03/*.parquet");
    assert_eq!(parquet_rows(&lake), 4000);
    assert_eq!(
        duckdb(&format!(
            "select count(distinct strftime(lpep_pickup_datetime, '%Y-%m')) >= 1, min(strftime(lpep_pickup_datetime, '%Y-%m')) <= '2021-03' from read_parquet('{}')",
            lake.display()
        )),
        "True|True"
    );

    // Same inputs: both tasks are Cached, nothing is generated or loaded again.
    let again = flow(
        p.path(),
        &[
            "run",
            "web_to_lake",
            "--param",
            "service=green",
            "--param",
            "month=2021-03",
            "--param",
            "rows=4000",
        ],
    )
    .ok();
    assert!(again.stdout.contains("2 cached"), "{}", again.stdout);
    assert_eq!(
        again.stdout.matches("Cached").count(),
        2,
        "{}",
        again.stdout
    );
    assert_eq!(parquet_rows(&lake), 4000);

    // Another month is new work.
    let other = flow(
        p.path(),
        &[
            "--json",
            "run",
            "web_to_lake",
            "--param",
            "service=green",
            "--param",
            "month=2021-04",
            "--param",
            "rows=3000",
        ],
    )
    .ok()
    .json();
    assert_eq!(other["state"], "Completed");
    assert_eq!(other["tasks"][1]["state"], "Completed");
    assert_eq!(other["tasks"][1]["output"]["written"], 3000);

    // The runs are listed newest first with their params, state and duration.
    let list = flow(p.path(), &["runs"]).ok();
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(
        lines[0].contains("ID")
            && lines[0].contains("PARAMS")
            && lines[0].contains("STATE")
            && lines[0].contains("DURATION"),
        "{}",
        list.stdout
    );
    assert_eq!(lines.len(), 4, "{}", list.stdout);
    assert!(
        lines[1].contains("month=2021-04") && lines[1].contains("Completed"),
        "{}",
        list.stdout
    );
    let runs = runs_json(p.path());
    assert_eq!(runs.len(), 3);
    let id = runs[2]["id"].as_str().unwrap();

    // `show` has every task with its attempts, timings and logs.
    let show = flow(p.path(), &["show", id]).ok();
    for needle in [
        "flow web_to_lake",
        "Completed",
        "ATTEMPTS",
        "extract #1",
        "load #1",
        "logs:",
        "cannot be reached",
        "generating 4000 green trips for 2021-03",
    ] {
        assert!(show.stdout.contains(needle), "{needle}:\n{}", show.stdout);
    }
    let detail = flow(p.path(), &["--json", "show", id]).ok().json();
    assert_eq!(detail["run"]["state"], "Completed");
    assert_eq!(detail["tasks"][0]["attempts"], 1);
    assert!(!detail["logs"].as_array().unwrap().is_empty());

    // `ls` lists the example flows with their schedules.
    let ls = flow(p.path(), &["ls"]).ok();
    for name in [
        "web_to_lake",
        "lake_to_warehouse",
        "postgres_load",
        "pipeline",
        "0 9 1 * *",
    ] {
        assert!(ls.stdout.contains(name), "{name}:\n{}", ls.stdout);
    }
}

const FAILING: &str = r#"
name: failing
tasks:
  - id: first
    type: shell
    command: "echo started; echo 'no such table' >&2; exit 3"
  - id: second
    type: shell
    depends_on: [first]
    command: "echo never"
  - id: third
    type: echo
    depends_on: [second]
    value: 1
  - id: independent
    type: echo
    value: 2
"#;

#[test]
fn a_failing_task_leaves_its_downstream_not_run_with_the_reason_and_exits_1() {
    let p = project(&[("failing", FAILING)]);
    let run = flow(p.path(), &["run", "failing"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("first") && run.stdout.contains("exited with code 3"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.lines().any(|l| l.contains("second")
            && l.contains("NotRun")
            && l.contains("upstream task `first` failed")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.lines().any(|l| l.contains("third")
            && l.contains("NotRun")
            && l.contains("upstream task `second` notrun")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("independent") && l.contains("Completed")),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("error: flow run") && run.stderr.contains("task `first` failed"),
        "{}",
        run.stderr
    );
    let runs = runs_json(p.path());
    assert_eq!(runs[0]["state"], "Failed");
    let show = flow(p.path(), &["show", runs[0]["id"].as_str().unwrap()]).ok();
    assert!(show.stdout.contains("no such table"), "{}", show.stdout);
}

#[test]
fn a_bad_flow_file_exits_2_with_file_and_line() {
    let bad = "name: broken\ntasks:\n  - id: a\n    type: shell\n    command: \"true\"\n  - id: b\n    type: shell\n    depends_on: [nope]\n    command: \"true\"\n";
    let p = project(&[("broken", bad)]);
    for args in [&["ls"][..], &["run", "broken"][..], &["runs"][..]] {
        let run = flow(p.path(), args);
        assert_eq!(run.code, 2, "{args:?}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("flows/broken.yaml:") && run.stderr.contains("nope"),
            "{}",
            run.stderr
        );
    }
    let typo =
        "name: typo\ntasks:\n  - id: a\n    type: ingest\n    sorce: x.csv\n    kind: yellow\n";
    let p = project(&[("typo", typo)]);
    let run = flow(p.path(), &["ls"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("flows/typo.yaml:") && run.stderr.contains("sorce"),
        "{}",
        run.stderr
    );
    let run = flow(
        project(&[]).path(),
        &["run", "web_to_lake", "--param", "month=2021-13"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("month"), "{}", run.stderr);
}

const APPENDER: &str = r#"
name: appender
tasks:
  - id: first
    type: shell
    command: "echo first >> effects"
  - id: slow
    type: shell
    depends_on: [first]
    command: "if [ ! -f resumed ]; then touch slow_started; sleep 60; fi; echo slow >> effects"
  - id: last
    type: shell
    depends_on: [slow]
    command: "echo last >> effects"
"#;

#[test]
fn kill_dash_nine_mid_flow_then_resume_runs_each_effect_once() {
    let p = project(&[("appender", APPENDER)]);
    let mut child = Command::new(bin())
        .arg("-C")
        .arg(p.path())
        .args(["flow", "run", "appender"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so the kill takes the whole tree, like a machine dying.
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.path().join("slow_started").exists() {
        assert!(Instant::now() < deadline, "the slow task never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pgid = child.id();
    let status = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();

    let runs = runs_json(p.path());
    assert_eq!(runs[0]["state"], "Crashed", "{runs:?}");
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let show = flow(p.path(), &["show", &id]).ok();
    assert!(
        show.stdout.contains("died while running it"),
        "{}",
        show.stdout
    );

    std::fs::write(p.path().join("resumed"), "").unwrap();
    let resumed = flow(p.path(), &["resume", &id]).ok();
    assert!(
        resumed.stdout.contains("resuming run") && resumed.stdout.contains("Completed in"),
        "{}",
        resumed.stdout
    );
    let effects = std::fs::read_to_string(p.path().join("effects")).unwrap();
    assert_eq!(effects, "first\nslow\nlast\n", "each effect exactly once");
    let detail = flow(p.path(), &["--json", "show", &id]).ok().json();
    assert_eq!(detail["run"]["state"], "Completed");
    let attempts: Vec<(String, String)> = detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["task_id"].as_str().unwrap().to_string(),
                a["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        attempts.iter().filter(|(t, _)| t == "first").count(),
        1,
        "{attempts:?}"
    );
    assert!(
        attempts.contains(&("slow".into(), "Crashed".into()))
            && attempts.contains(&("slow".into(), "Completed".into())),
        "{attempts:?}"
    );
    // A completed run resumes to itself.
    let again = flow(p.path(), &["resume", &id]).ok();
    assert!(again.stdout.contains("Completed"), "{}", again.stdout);
    assert_eq!(
        std::fs::read_to_string(p.path().join("effects")).unwrap(),
        "first\nslow\nlast\n"
    );
}

const MONTHLY: &str = r#"
name: monthly
params:
  month: {type: month}
tasks:
  - id: record
    type: shell
    command: "echo start {{ params.month }} >> active; sleep 0.5; echo {{ params.month }} >> done_months; echo end >> active"
"#;

#[test]
fn backfill_of_three_months_runs_each_once_with_at_most_two_at_once() {
    let p = project(&[("monthly", MONTHLY)]);
    let run = flow(
        p.path(),
        &[
            "backfill",
            "monthly",
            "--param",
            "month=2019-11..2020-01",
            "--max-active",
            "2",
        ],
    )
    .ok();
    assert!(
        run.stdout.contains("queued 3 runs of monthly") && run.stdout.contains("3 completed"),
        "{}",
        run.stdout
    );
    let mut months: Vec<String> = std::fs::read_to_string(p.path().join("done_months"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    months.sort();
    assert_eq!(months, ["2019-11", "2019-12", "2020-01"]);
    // Never more than two at once.
    let mut active = 0;
    let mut max = 0;
    for line in std::fs::read_to_string(p.path().join("active"))
        .unwrap()
        .lines()
    {
        if line.starts_with("start") {
            active += 1;
            max = max.max(active);
        } else {
            active -= 1;
        }
    }
    assert!(max <= 2, "{max} runs at once");
    let runs = runs_json(p.path());
    assert_eq!(runs.len(), 3);
    assert!(
        runs.iter()
            .all(|r| r["state"] == "Completed" && r["backfill_id"].is_string())
    );

    // --no-wait only queues; a worker run until idle executes them.
    let queued = flow(
        p.path(),
        &[
            "--json",
            "backfill",
            "monthly",
            "--param",
            "month=2020-02..2020-03",
            "--no-wait",
        ],
    )
    .ok()
    .json();
    assert_eq!(queued["run_ids"].as_array().unwrap().len(), 2);
    let worker = tripline(
        p.path(),
        &[
            "worker",
            "--until-idle",
            "--no-schedules",
            "--poll",
            "100ms",
        ],
    )
    .ok();
    assert!(
        worker.stdout.contains("ran 2 runs (2 completed)"),
        "{}",
        worker.stdout
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("done_months"))
            .unwrap()
            .lines()
            .count(),
        5
    );
}

#[test]
fn cancel_of_a_queued_run_and_of_unknown_runs() {
    let p = project(&[("monthly", MONTHLY)]);
    let queued = flow(
        p.path(),
        &[
            "--json",
            "backfill",
            "monthly",
            "--param",
            "month=2020-02..2020-03",
            "--no-wait",
        ],
    )
    .ok()
    .json();
    let id = queued["run_ids"][0].as_str().unwrap();
    let cancel = flow(p.path(), &["cancel", id]).ok();
    assert!(cancel.stdout.contains("cancelled"), "{}", cancel.stdout);
    let again = flow(p.path(), &["cancel", id]);
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("cannot be cancelled"),
        "{}",
        again.stderr
    );
    let unknown = flow(p.path(), &["show", "0000000000000000"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no flow run with id"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn the_pipeline_goes_from_the_web_to_the_dbt_models_and_completes() {
    let p = project(&[]);
    let run = flow(
        p.path(),
        &[
            "run",
            "pipeline",
            "--param",
            "month=2021-02",
            "--param",
            "rows=2000",
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for task in [
        "yellow_to_lake",
        "green_to_lake",
        "zones_to_lake",
        "yellow_warehouse",
        "green_warehouse",
    ] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains(task) && l.contains("Completed")),
            "{task}:\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.lines().any(|l| l.contains("dbt_build")
            && l.contains("Completed")
            && l.contains("ERROR=0 SKIP=0")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("6 completed"), "{}", run.stdout);
    let yellow = parquet_rows(
        &p.path()
            .join("lake/raw/yellow/year=2021/month=02/*.parquet"),
    );
    assert_eq!(yellow, 2000);
    // The warehouse step built the partitioned table from the lake.
    let count = |sql: &str| -> u64 {
        let out = tripline(p.path(), &["sql", "--format", "csv", "-e", sql]).ok();
        out.stdout
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("{sql}: {}", out.stdout))
    };
    assert_eq!(
        count("SELECT count(*) AS n FROM trips.green_partitioned"),
        2000
    );
    // The dbt step built the example project's models in the warehouse: every trip with known zones is in the
    // fact table (a few have none), and the mart and the seeds are there.
    let facts = count("SELECT count(*) AS n FROM dbt_nyc.fact_trips");
    assert!(facts > 3_500 && facts <= 4_000, "{facts}");
    assert!(count("SELECT count(*) AS n FROM dbt_nyc.dm_monthly_zone_revenue") > 0);
    assert_eq!(
        count("SELECT count(*) AS n FROM dbt_nyc.taxi_zone_lookup"),
        265
    );
    // Subflow runs are recorded under the pipeline's run; the dbt task's log has a line per node.
    let runs = runs_json(p.path());
    assert_eq!(
        runs.iter().filter(|r| r["parent_id"].is_string()).count(),
        4
    );
    let top = runs
        .iter()
        .find(|r| r["flow"] == "pipeline")
        .expect("the pipeline run");
    let show = flow(p.path(), &["show", top["id"].as_str().unwrap()]).ok();
    assert!(
        show.stdout.lines().any(|l| l.contains("[dbt_build #1")
            && l.contains("OK created sql incremental model dbt_nyc.fact_trips")),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .lines()
            .any(|l| l.contains("[dbt_build #1") && l.contains("PASS unique_fact_trips_tripid")),
        "{}",
        show.stdout
    );
}

/// A small dbt project on the embedded warehouse: `good`, `bad` (a column that does not exist) and `child` of
/// `bad`; `other`, its value from `var('n')`, tested to be 2.
const BROKEN_DBT: &[(&str, &str)] = &[
    (
        "broken/dbt_project.yml",
        "name: broken\nversion: '1.0.0'\nconfig-version: 2\nprofile: broken\nmodel-paths: [models]\n",
    ),
    (
        "broken/profiles.yml",
        "broken:\n  target: tripline\n  outputs:\n    tripline:\n      type: tripline\n      schema: broken\n      threads: 1\n",
    ),
    ("broken/models/good.sql", "select 1 as id\n"),
    (
        "broken/models/bad.sql",
        "select no_such_column from {{ ref('good') }}\n",
    ),
    (
        "broken/models/child.sql",
        "select * from {{ ref('bad') }}\n",
    ),
    (
        "broken/models/other.sql",
        "select {{ var('n', 1) }} as id\n",
    ),
    (
        "broken/models/schema.yml",
        "version: 2\nmodels:\n  - name: other\n    columns:\n      - name: id\n        data_tests:\n          - accepted_values:\n              values: [2]\n",
    ),
];

const DBT_BROKEN_FLOW: &str = r#"
name: dbt_broken
tasks:
  - id: build
    type: dbt
    project_dir: broken
  - id: after
    type: echo
    depends_on: [build]
    summary: "{{ tasks.build.output.summary }}"
"#;

const DBT_SELECT_FLOW: &str = r#"
name: dbt_select
tasks:
  - id: build
    type: dbt
    command: build
    project_dir: broken
    select: other
    vars: {n: 2}
  - id: after
    type: echo
    depends_on: [build]
    summary: "{{ tasks.build.output.summary }}"
    pass: "{{ tasks.build.output.pass }}"
"#;

#[test]
fn a_failing_dbt_model_or_test_fails_the_dbt_task_naming_them() {
    let p = project(&[
        ("dbt_broken", DBT_BROKEN_FLOW),
        ("dbt_select", DBT_SELECT_FLOW),
    ]);
    write_files(p.path(), BROKEN_DBT);
    let run = flow(p.path(), &["run", "dbt_broken"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("build") && l.contains("Failed"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.contains("dbt build failed"), "{line}");
    assert!(line.contains("model bad:"), "{line}");
    assert!(
        line.contains("test accepted_values_other_id__2: 1 failing row"),
        "{line}"
    );
    assert!(line.contains("ERROR=2 SKIP=1"), "{line}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("after") && l.contains("NotRun")),
        "{}",
        run.stdout
    );
    let runs = runs_json(p.path());
    let show = flow(p.path(), &["show", runs[0]["id"].as_str().unwrap()]).ok();
    for expected in [
        "OK created sql view model broken.good",
        "ERROR creating sql view model broken.bad",
        "SKIP relation broken.child",
        "FAIL 1 accepted_values_other_id__2",
        "Done. PASS=2 WARN=0 ERROR=2 SKIP=1",
    ] {
        assert!(
            show.stdout.contains(expected),
            "{expected}:\n{}",
            show.stdout
        );
    }

    // select, vars and the output reach the flow: `other` alone with n = 2 passes its test.
    let run = flow(p.path(), &["--json", "run", "dbt_select"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let after = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == "after")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(after["output"]["pass"], "2", "{report:#}");
    assert!(
        after["output"]["summary"]
            .as_str()
            .unwrap()
            .contains("PASS=2 WARN=0 ERROR=0 SKIP=0"),
        "{report:#}"
    );
}

#[test]
fn tripline_run_is_recorded_as_a_flow_run() {
    let p = project(&[]);
    let run = Command::new(bin())
        .arg("-C")
        .arg(p.path())
        .arg("run")
        .env("TRIPLINE_PIPELINE_YELLOW_ROWS", "3000")
        .env("TRIPLINE_PIPELINE_GREEN_ROWS", "1000")
        .env_remove("TRIPLINE_LAKE_ROOT")
        .output()
        .unwrap();
    let run: Run = run.into();
    let run = run.ok();
    assert!(
        run.stdout.contains("recorded as flow run"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("dbt build of the dbt project dbt/ in the warehouse"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("sql incremental model dbt_nyc.fact_trips: SELECT"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("24 data tests passed"),
        "{}",
        run.stdout
    );
    let runs = runs_json(p.path());
    assert_eq!(runs[0]["flow"], "run");
    assert_eq!(runs[0]["state"], "Completed");
    let id = runs[0]["id"].as_str().unwrap();
    let show = flow(p.path(), &["show", id]).ok();
    for task in [
        "generate_yellow",
        "load_yellow",
        "generate_green",
        "load_green",
        "load_zones",
        "dbt_build",
    ] {
        assert!(show.stdout.contains(task), "{task}:\n{}", show.stdout);
    }
}
