//! `tripline run` on the example project: the README's main command, end to end.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn example_project_copy() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nyc-taxi");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("tripline.toml"), dir.path().join("tripline.toml")).unwrap();
    std::fs::create_dir_all(dir.path().join("seeds")).unwrap();
    std::fs::copy(
        src.join("seeds/taxi_zone_lookup.csv"),
        dir.path().join("seeds/taxi_zone_lookup.csv"),
    )
    .unwrap();
    dir
}

fn run_pipeline(project: &Path, extra: &[&str]) -> Run {
    Command::new(bin())
        .arg("-C")
        .arg(project)
        .args(extra)
        .arg("run")
        .env("TRIPLINE_PIPELINE_YELLOW_ROWS", "20000")
        .env("TRIPLINE_PIPELINE_GREEN_ROWS", "5000")
        .env_remove("TRIPLINE_LAKE_ROOT")
        .env_remove("DBT_TARGET")
        .env_remove("DBT_PROFILES_DIR")
        .output()
        .unwrap()
        .into()
}

#[test]
fn the_main_job_generates_loads_and_reports_and_a_rerun_changes_nothing() {
    let project = example_project_copy();
    let run = run_pipeline(project.path(), &[]).ok();
    assert!(
        run.stdout
            .contains("read 20000 = written 20000 + quarantined 0"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("read 5000 = written 5000 + quarantined 0"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("read 265 = written 265 + quarantined 0"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("done: the lake is at"),
        "{}",
        run.stdout
    );

    let lake = project.path().join("lake/raw");
    let month = "year=2024/month=01";
    assert_eq!(
        parquet_rows(&lake.join(format!("yellow/{month}/*.parquet"))),
        20_000
    );
    assert_eq!(
        parquet_rows(&lake.join(format!("green/{month}/*.parquet"))),
        5_000
    );
    assert_eq!(parquet_rows(&lake.join("zones/*.parquet")), 265);

    let again = run_pipeline(project.path(), &["--json"]).ok().json();
    assert_eq!(again["loads"][0]["total"]["written"], 20_000);
    assert_eq!(
        parquet_rows(&lake.join("*/*/*/*.parquet")),
        25_000,
        "a re-run replaces, never duplicates"
    );
}

/// As the README runs it: `-C` a project directory relative to where the user stands. Paths that one task hands
/// to the next (the generated files to the loads) must not be resolved against the project twice.
#[test]
fn the_main_job_works_with_a_relative_project_directory() {
    let project = example_project_copy();
    let parent = project.path().parent().unwrap();
    let relative = project.path().file_name().unwrap();
    let run: Run = Command::new(bin())
        .current_dir(parent)
        .arg("-C")
        .arg(relative)
        .args(["run", "--no-dbt"])
        .env("TRIPLINE_PIPELINE_YELLOW_ROWS", "2000")
        .env("TRIPLINE_PIPELINE_GREEN_ROWS", "500")
        .env_remove("TRIPLINE_LAKE_ROOT")
        .output()
        .unwrap()
        .into();
    let run = run.ok();
    let shown = Path::new(relative).join("data/yellow_tripdata_2024-01.csv.gz");
    assert!(
        run.stdout.contains(&format!("-> {}", shown.display())),
        "the generated file is shown relative to the working directory: {}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("read 2000 = written 2000 + quarantined 0"),
        "{}",
        run.stdout
    );
    let lake = project.path().join("lake/raw");
    assert_eq!(parquet_rows(&lake.join("*/*/*/*.parquet")), 2_500);
    assert_eq!(parquet_rows(&lake.join("zones/*.parquet")), 265);
}

/// Copy a directory tree, leaving out dbt's `target/`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&entry.path(), &to.join(entry.file_name()));
            }
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn with_a_dbt_project_the_main_job_builds_the_models_and_a_rerun_adds_no_trip_twice() {
    let project = example_project_copy();
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nyc-taxi/dbt"),
        &project.path().join("dbt"),
    );
    let run = run_pipeline(project.path(), &[]).ok();
    for line in [
        "dbt build of the dbt project dbt/ in the warehouse",
        "seed file dbt_nyc.taxi_zone_lookup: INSERT 265",
        "sql incremental model dbt_nyc.fact_trips: SELECT",
        "sql table model dbt_nyc.dm_monthly_zone_revenue: SELECT",
        "data tests passed",
        "ERROR=0 SKIP=0",
        "the dbt models are warehouse tables in dataset dbt_nyc",
    ] {
        assert!(run.stdout.contains(line), "{line}:\n{}", run.stdout);
    }
    let facts = || -> u64 {
        let out = tripline(
            project.path(),
            &[
                "sql",
                "--format",
                "csv",
                "-e",
                "select count(*) as n, count(distinct tripid) as d from dbt_nyc.fact_trips",
            ],
        )
        .ok();
        let row = out.stdout.lines().nth(1).unwrap().to_string();
        let (n, d) = row.split_once(',').unwrap();
        assert_eq!(n, d, "tripid is unique");
        n.parse().unwrap()
    };
    let first = facts();
    assert!(first > 20_000 && first <= 25_000, "{first}");

    // The second run regenerates nothing and the incremental fact table merges nothing new.
    let again = run_pipeline(project.path(), &["--json"]).ok().json();
    assert_eq!(again["dbt"]["error"], 0, "{again:#}");
    let fact = again["dbt"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "fact_trips")
        .unwrap();
    assert_eq!(fact["message"], "MERGE 0", "{fact:#}");
    assert_eq!(facts(), first);

    // --no-dbt stops after the loads.
    let no_dbt = Command::new(bin())
        .arg("-C")
        .arg(project.path())
        .args(["run", "--no-dbt"])
        .env("TRIPLINE_PIPELINE_YELLOW_ROWS", "20000")
        .env("TRIPLINE_PIPELINE_GREEN_ROWS", "5000")
        .env_remove("TRIPLINE_LAKE_ROOT")
        .output()
        .unwrap();
    let no_dbt: Run = no_dbt.into();
    let no_dbt = no_dbt.ok();
    assert!(!no_dbt.stdout.contains("dbt build of"), "{}", no_dbt.stdout);
    assert!(no_dbt.stdout.contains("no dbt step"), "{}", no_dbt.stdout);
}
