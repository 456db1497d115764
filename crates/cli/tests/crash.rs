//! A kill -9 at any moment leaves the target as before or as after, and the re-run finishes exactly.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn spawn_ingest(project: &Path, args: &[&str]) -> Child {
    Command::new(bin())
        .arg("-C")
        .arg(project)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tripline")
}

/// Wait until `ready` holds (checked every 20 ms), then kill -9 the child. Fails if the child ends first.
fn kill_when(mut child: Child, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the load ended ({status}) before {what}: make the input larger");
        }
        if ready() {
            break;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// The same source name with two contents: a small earlier version and a large one.
fn two_versions(
    project: &Path,
    kind: &str,
    name: &str,
    small: u64,
    large: u64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (project.join("v1").join(name), project.join("v2").join(name));
    datagen(project, kind, "2021-01", small, "csv", &a, &["--seed", "1"]);
    datagen(project, kind, "2021-01", large, "csv", &b, &["--seed", "2"]);
    (a, b)
}

#[test]
fn kill_9_during_a_postgres_copy_leaves_the_previous_load_and_the_rerun_is_exact() {
    let url = fresh_database("crash_pg");
    let project = tempfile::tempdir().unwrap();
    let (small, large) = two_versions(
        project.path(),
        "yellow",
        "yellow_tripdata_2021-01.csv",
        1_000,
        600_000,
    );
    tripline(
        project.path(),
        &[
            "-q",
            "ingest",
            small.to_str().unwrap(),
            "--kind",
            "yellow",
            "--to",
            &url,
        ],
    )
    .ok();

    let child = spawn_ingest(
        project.path(),
        &[
            "-q",
            "ingest",
            large.to_str().unwrap(),
            "--kind",
            "yellow",
            "--to",
            &url,
        ],
    );
    kill_when(child, "COPY was under way", || {
        psql(
            &url,
            "select coalesce(max(tuples_processed), 0) from pg_stat_progress_copy",
        )
        .parse::<u64>()
        .is_ok_and(|n| n > 50_000)
    });
    // The server notices the dead client and rolls back; the earlier load is intact.
    let deadline = Instant::now() + Duration::from_secs(30);
    while psql(
        &url,
        "select count(*) from pg_stat_activity where query like 'COPY%' and state <> 'idle'",
    ) != "0"
    {
        assert!(Instant::now() < deadline, "the killed COPY never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(psql(&url, "select count(*) from yellow_taxi_data"), "1000");
    assert_eq!(
        psql(&url, "select rows_written from tripline_load_ledger"),
        "1000"
    );

    tripline(
        project.path(),
        &[
            "-q",
            "ingest",
            large.to_str().unwrap(),
            "--kind",
            "yellow",
            "--to",
            &url,
        ],
    )
    .ok();
    assert_eq!(
        psql(&url, "select count(*) from yellow_taxi_data"),
        "600000"
    );
    assert_eq!(
        psql(&url, "select rows_written from tripline_load_ledger"),
        "600000"
    );
}

#[test]
fn kill_9_during_a_lake_write_leaves_the_previous_file_and_the_rerun_is_exact() {
    let project = tempfile::tempdir().unwrap();
    let (small, large) = two_versions(
        project.path(),
        "green",
        "green_tripdata_2021-01.csv",
        1_000,
        600_000,
    );
    tripline(
        project.path(),
        &["-q", "ingest", small.to_str().unwrap(), "--kind", "green"],
    )
    .ok();
    let partition = project.path().join("lake/raw/green/year=2021/month=01");
    let committed = partition.join("green_tripdata_2021-01.parquet");

    let child = spawn_ingest(
        project.path(),
        &["-q", "ingest", large.to_str().unwrap(), "--kind", "green"],
    );
    kill_when(child, "a staging file was being written", || {
        std::fs::read_dir(&partition)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with('.'))
    });
    // Readers still see exactly the earlier version.
    assert_eq!(parquet_rows(&partition.join("*.parquet")), 1_000);
    assert_eq!(parquet_rows(&committed), 1_000);

    tripline(
        project.path(),
        &["-q", "ingest", large.to_str().unwrap(), "--kind", "green"],
    )
    .ok();
    assert_eq!(parquet_rows(&partition.join("*.parquet")), 600_000);
    let names: Vec<String> = std::fs::read_dir(&partition)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["green_tripdata_2021-01.parquet"],
        "the re-run cleaned the killed load's staging file"
    );
}
