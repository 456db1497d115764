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
