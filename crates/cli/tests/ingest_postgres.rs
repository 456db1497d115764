//! Generate -> ingest into a real PostgreSQL through the real binary: counts and sums against DuckDB on the same
//! file, the load ledger, and the three modes.

mod common;

use common::*;

fn ingest_pg(
    project: &std::path::Path,
    url: &str,
    file: &std::path::Path,
    kind: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        "--json",
        "ingest",
        file.to_str().unwrap(),
        "--kind",
        kind,
        "--to",
        url,
    ];
    args.extend(extra);
    tripline(project, &args).ok().json()
}

#[test]
fn a_month_loads_with_the_count_and_sum_duckdb_reads_from_the_same_file() {
    let url = fresh_database("pg_month");
    let project = tempfile::tempdir().unwrap();
    let csv = project.path().join("yellow_tripdata_2021-01.csv");
    datagen(
        project.path(),
        "yellow",
        "2021-01",
        40_000,
        "csv",
        &csv,
        &[],
    );
    let report = ingest_pg(project.path(), &url, &csv, "yellow", &[]);
    assert_eq!(report["total"]["written"], 40_000);

    let pg = psql(
        &url,
        "select count(*), round(sum(total_amount)::numeric, 2) from yellow_taxi_data",
    );
    let source = duckdb(&format!(
        "select count(*), round(sum(total_amount), 2) from read_csv('{}', header = true)",
        csv.display()
    ));
    assert_eq!(pg, source);
    let per_month = psql(
        &url,
        "select to_char(tpep_pickup_datetime, 'YYYY-MM'), count(*) from yellow_taxi_data group by 1 order by 2 desc limit 1",
    );
    assert!(per_month.starts_with("2021-01|"), "{per_month}");
    assert_eq!(
        psql(
            &url,
            "select rows_read, rows_written, rows_quarantined from tripline_load_ledger"
        ),
        "40000|40000|0"
    );
}

#[test]
fn real_samples_load_with_their_exact_counts() {
    let url = fresh_database("pg_real");
    let project = tempfile::tempdir().unwrap();
    let sample = shared_data().join("samples/yellow_tripdata_2021-01_head22792.csv");
    ingest_pg(
        project.path(),
        &url,
        &sample,
        "yellow",
        &["--table", "yellow_taxi_trips"],
    );
    ingest_pg(project.path(), &url, &zones_csv(), "zones", &[]);
    assert_eq!(
        psql(&url, "select count(*) from yellow_taxi_trips"),
        "22792"
    );
    assert_eq!(psql(&url, "select count(*) from zones"), "265");
    // The course's first SQL: trips joined to zones.
    let joined = psql(
        &url,
        "select count(*) from yellow_taxi_trips t join zones z on t.pulocationid = z.locationid",
    );
    assert_eq!(joined, "22792");
}

#[test]
fn append_rerun_replaces_the_sources_rows_and_keeps_other_sources() {
    let url = fresh_database("pg_append");
    let project = tempfile::tempdir().unwrap();
    let jan = project.path().join("green_tripdata_2021-01.csv.gz");
    let feb = project.path().join("green_tripdata_2021-02.parquet");
    datagen(
        project.path(),
        "green",
        "2021-01",
        10_000,
        "csv.gz",
        &jan,
        &[],
    );
    datagen(
        project.path(),
        "green",
        "2021-02",
        7_000,
        "parquet",
        &feb,
        &[],
    );
    ingest_pg(project.path(), &url, &jan, "green", &[]);
    ingest_pg(project.path(), &url, &feb, "green", &[]);
    let again = ingest_pg(project.path(), &url, &jan, "green", &[]);
    assert_eq!(again["sources"][0]["committed"]["replaced_rows"], 10_000);
    assert_eq!(psql(&url, "select count(*) from green_taxi_data"), "17000");
    assert_eq!(
        psql(
            &url,
            "select string_agg(source || '=' || rows_written, ',' order by source) from tripline_load_ledger"
        ),
        "green_tripdata_2021-01.csv.gz=10000,green_tripdata_2021-02.parquet=7000"
    );
}

#[test]
fn replace_mode_makes_the_table_exactly_this_load() {
    let url = fresh_database("pg_replace");
    let project = tempfile::tempdir().unwrap();
    let a = project.path().join("yellow_tripdata_2021-01.csv");
    let b = project.path().join("yellow_tripdata_2021-02.csv");
    datagen(project.path(), "yellow", "2021-01", 3_000, "csv", &a, &[]);
    datagen(project.path(), "yellow", "2021-02", 2_000, "csv", &b, &[]);
    ingest_pg(project.path(), &url, &a, "yellow", &[]);
    ingest_pg(project.path(), &url, &b, "yellow", &["--mode", "replace"]);
    assert_eq!(psql(&url, "select count(*) from yellow_taxi_data"), "2000");
    assert_eq!(psql(&url, "select count(*) from tripline_load_ledger"), "1");
}

#[test]
fn merge_mode_inserts_only_new_trips_across_overlapping_sources() {
    let url = fresh_database("pg_merge");
    let project = tempfile::tempdir().unwrap();
    let full = project.path().join("yellow_tripdata_2021-04.csv");
    datagen(
        project.path(),
        "yellow",
        "2021-04",
        5_000,
        "csv",
        &full,
        &[],
    );
    // A second file that repeats the first 2,000 trips of the first one.
    let text = std::fs::read_to_string(&full).unwrap();
    let head: Vec<&str> = text.lines().take(2_001).collect();
    let overlap = project.path().join("yellow_overlap_2021-04.csv");
    std::fs::write(&overlap, head.join("\n") + "\n").unwrap();

    let first = ingest_pg(project.path(), &url, &full, "yellow", &["--mode", "merge"]);
    let distinct = psql(&url, "select count(*) from yellow_taxi_data");
    assert_eq!(
        first["sources"][0]["committed"]["merged_new"]
            .as_u64()
            .unwrap()
            .to_string(),
        distinct
    );
    let second = ingest_pg(
        project.path(),
        &url,
        &overlap,
        "yellow",
        &["--mode", "merge"],
    );
    assert_eq!(second["sources"][0]["committed"]["merged_new"], 0);
    assert_eq!(
        psql(&url, "select count(*) from yellow_taxi_data"),
        distinct
    );
    assert_eq!(
        psql(
            &url,
            "select count(distinct unique_row_id) from yellow_taxi_data"
        ),
        distinct
    );
}

#[test]
fn a_table_created_by_another_tool_is_refused_with_advice() {
    let url = fresh_database("pg_foreign");
    psql(&url, "create table yellow_taxi_data (\"VendorID\" int)");
    let project = tempfile::tempdir().unwrap();
    let sample = shared_data().join("samples/rides_yellow_2020-07_head265.csv");
    let run = tripline(
        project.path(),
        &[
            "ingest",
            sample.to_str().unwrap(),
            "--kind",
            "yellow",
            "--to",
            &url,
        ],
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--mode replace"), "{}", run.stderr);
    assert_eq!(psql(&url, "select count(*) from yellow_taxi_data"), "0");
}
