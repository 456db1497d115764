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

/// Data files under a Delta table's folder, committed or not, including files still being written (the local
/// store writes `name.parquet#N` and renames it when complete).
fn data_files(table: &Path) -> usize {
    fn walk(dir: &Path, n: &mut usize) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "_delta_log") {
                    walk(&path, n);
                }
            } else if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().contains(".parquet"))
            {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(table, &mut n);
    n
}

/// Commits in a Delta table's log.
fn commits(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count()
}

fn sql_row(project: &Path, sql: &str) -> serde_json::Value {
    let run = tripline(project, &["--json", "sql", "-e", sql]).ok();
    run.json()["statements"][0]["rows"][0].clone()
}

/// A lake with one large month of yellow trips and an external table over it.
fn lake_for_crash(project: &Path, rows: u64) {
    let file = project.join("yellow_tripdata_2021-01.parquet");
    datagen(project, "yellow", "2021-01", rows, "parquet", &file, &[]);
    ingest_json(project, file.to_str().unwrap(), "yellow");
    tripline(
        project,
        &[
            "sql",
            "-e",
            "CREATE EXTERNAL TABLE trips.ext OPTIONS (format = 'PARQUET', uris = ['lake/raw/yellow/*'])",
        ],
    )
    .ok();
}

#[test]
fn kill_9_during_create_table_as_leaves_the_previous_version_readable() {
    let project = tempfile::tempdir().unwrap();
    let project = project.path();
    lake_for_crash(project, 1_500_000);
    tripline(
        project,
        &[
            "sql",
            "-e",
            "CREATE TABLE trips.t AS SELECT * FROM trips.ext WHERE VendorID = 1 LIMIT 1000",
        ],
    )
    .ok();
    let table = project.join("lake/warehouse/trips/t");
    let (files_before, commits_before) = (data_files(&table), commits(&table));

    let replace = "CREATE OR REPLACE TABLE trips.t PARTITION BY DATE(tpep_pickup_datetime) CLUSTER BY VendorID \
                   AS SELECT * FROM trips.ext";
    let child = spawn_ingest(project, &["sql", "-e", replace]);
    kill_when(child, "the new version's files were being written", || {
        data_files(&table) > files_before + 2
    });

    assert_eq!(commits(&table), commits_before, "no commit was made");
    let row = sql_row(project, "SELECT count(*) AS n FROM trips.t");
    assert_eq!(row["n"], 1000, "the previous version is what readers see");

    // The re-run replaces the table in one commit; the killed run's files are never read.
    tripline(project, &["sql", "-e", replace]).ok();
    let row = sql_row(
        project,
        "SELECT count(*) AS n, count(DISTINCT tpep_pickup_datetime_date) AS days FROM trips.t",
    );
    assert_eq!(row["n"], 1_500_000);
    assert_eq!(commits(&table), commits_before + 1);
}

#[test]
fn kill_9_during_merge_leaves_the_table_as_before_and_the_rerun_adds_no_duplicates() {
    let project = tempfile::tempdir().unwrap();
    let project = project.path();
    lake_for_crash(project, 1_500_000);
    // The target holds a tenth of the trips with a key; the merge source is all of them with the same keys.
    let keyed = "SELECT row_number() OVER (ORDER BY tpep_pickup_datetime, tpep_dropoff_datetime, total_amount, \
                 PULocationID, DOLocationID, trip_distance) AS id, * FROM trips.ext";
    tripline(
        project,
        &[
            "sql",
            "-e",
            &format!(
                "CREATE TABLE trips.src AS {keyed};
                 CREATE TABLE trips.target AS SELECT * FROM trips.src WHERE id % 10 = 0"
            ),
        ],
    )
    .ok();
    let table = project.join("lake/warehouse/trips/target");
    let (files_before, commits_before) = (data_files(&table), commits(&table));
    let merge = "MERGE INTO trips.target t USING trips.src s ON t.id = s.id \
                 WHEN MATCHED THEN UPDATE SET total_amount = s.total_amount + 1 \
                 WHEN NOT MATCHED THEN INSERT ROW";
    let child = spawn_ingest(project, &["sql", "-e", merge]);
    kill_when(child, "the merge's files were being written", || {
        data_files(&table) > files_before
    });
    assert_eq!(commits(&table), commits_before, "no commit was made");
    let row = sql_row(project, "SELECT count(*) AS n FROM trips.target");
    assert_eq!(row["n"], 150_000, "the table is as before the merge");

    tripline(project, &["sql", "-e", merge]).ok();
    let row = sql_row(
        project,
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, \
                sum(CASE WHEN id % 10 = 0 THEN 1 ELSE 0 END) AS updated FROM trips.target",
    );
    assert_eq!(row["n"], 1_500_000);
    assert_eq!(row["ids"], 1_500_000);
    assert_eq!(row["updated"], 150_000);
    let check = sql_row(
        project,
        "SELECT count(*) AS n FROM trips.target t JOIN trips.src s ON t.id = s.id \
         WHERE (s.id % 10 = 0 AND t.total_amount <> s.total_amount + 1) \
            OR (s.id % 10 <> 0 AND t.total_amount <> s.total_amount)",
    );
    assert_eq!(
        check["n"], 0,
        "matched rows updated once, new rows inserted as they were"
    );
}
