//! Generate -> ingest into the lake through the real binary, cross-checked with DuckDB.

mod common;

use common::*;

#[test]
fn generated_month_lands_in_its_partition_with_the_same_count_and_sum_duckdb_reads_from_the_source()
{
    let project = tempfile::tempdir().unwrap();
    let csv = project.path().join("yellow_tripdata_2021-03.csv");
    datagen(
        project.path(),
        "yellow",
        "2021-03",
        50_000,
        "csv",
        &csv,
        &[],
    );

    let run = tripline(
        project.path(),
        &[
            "--json",
            "ingest",
            csv.to_str().unwrap(),
            "--kind",
            "yellow",
        ],
    )
    .ok();
    let report = run.json();
    assert_eq!(report["total"]["read"], 50_000);
    assert_eq!(report["total"]["written"], 50_000);
    assert_eq!(report["total"]["quarantined"], 0);

    let file = project
        .path()
        .join("lake/raw/yellow/year=2021/month=03/yellow_tripdata_2021-03.parquet");
    assert!(file.exists(), "{report}");
    let source = duckdb(&format!(
        "select count(*), round(sum(total_amount), 2) from read_csv('{}', header = true)",
        csv.display()
    ));
    let lake = duckdb(&format!(
        "select count(*), round(sum(total_amount), 2) from read_parquet('{}')",
        file.display()
    ));
    assert_eq!(lake, source);
}

#[test]
fn rerunning_a_load_replaces_its_file_and_never_duplicates_rows() {
    let project = tempfile::tempdir().unwrap();
    let gz = project.path().join("green_tripdata_2021-02.csv.gz");
    datagen(
        project.path(),
        "green",
        "2021-02",
        20_000,
        "csv.gz",
        &gz,
        &[],
    );
    for _ in 0..2 {
        tripline(
            project.path(),
            &["-q", "ingest", gz.to_str().unwrap(), "--kind", "green"],
        )
        .ok();
    }
    let all = project.path().join("lake/raw/green/**/*.parquet");
    assert_eq!(parquet_rows(&all), 20_000);
    let partition = project.path().join("lake/raw/green/year=2021/month=02");
    let names: Vec<_> = std::fs::read_dir(&partition)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "only the committed file, no staging leftovers: {names:?}"
    );
    let record = project
        .path()
        .join("lake/_tripline/loads/green/green_tripdata_2021-02.parquet.json");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    assert_eq!(record["account"]["written"], 20_000);
}

#[test]
fn real_yellow_sample_loads_all_22792_rows_and_reports_drift_and_outside_month_pickups() {
    let project = tempfile::tempdir().unwrap();
    let sample = shared_data().join("samples/yellow_tripdata_2021-01_head22792.csv");
    let report = ingest_json(project.path(), sample.to_str().unwrap(), "yellow");
    let s = &report["sources"][0];
    assert_eq!(s["account"]["read"], 22_792);
    assert_eq!(s["account"]["written"], 22_792);
    assert_eq!(s["committed"]["month"], "2021-01");
    assert_eq!(
        s["outside_month"], 16,
        "the sample has 16 pickups on 2020-12-31: {s}"
    );
    let drift = s["drift"].to_string();
    assert!(
        drift.contains("airport_fee") && drift.contains("cbd_congestion_fee"),
        "{drift}"
    );

    let file = project
        .path()
        .join("lake/raw/yellow/year=2021/month=01/yellow_tripdata_2021-01_head22792.parquet");
    let lake = duckdb(&format!(
        "select count(*), round(sum(total_amount), 2) from read_parquet('{}')",
        file.display()
    ));
    let source = duckdb(&format!(
        "select count(*), round(sum(total_amount), 2) from read_csv('{}', header = true)",
        sample.display()
    ));
    assert_eq!(lake, source);
}

#[test]
fn zone_lookup_loads_265_zones() {
    let project = tempfile::tempdir().unwrap();
    let report = ingest_json(project.path(), zones_csv().to_str().unwrap(), "zones");
    assert_eq!(report["total"]["written"], 265);
    let file = project
        .path()
        .join("lake/raw/zones/taxi_zone_lookup.parquet");
    assert_eq!(
        duckdb(&format!(
            "select count(*), max(LocationID) from read_parquet('{}')",
            file.display()
        )),
        "265|265"
    );
}

#[test]
fn parquet_sources_with_drifted_types_are_unified() {
    // A Parquet file written by DuckDB the way the TLC wrote 2020-2022 files: IDs and counts as doubles,
    // timestamps in nanoseconds, airport_fee spelled Airport_fee.
    let project = tempfile::tempdir().unwrap();
    let sample = shared_data().join("samples/yellow_tripdata_2021-01_head22792.csv");
    let parquet = project.path().join("yellow_tripdata_2021-01.parquet");
    duckdb(&format!(
        "copy (select VendorID::double as VendorID, tpep_pickup_datetime::timestamp_ns as tpep_pickup_datetime, \
         tpep_dropoff_datetime, passenger_count::double as passenger_count, trip_distance, RatecodeID::double as \
         RatecodeID, store_and_fwd_flag, PULocationID::bigint as PULocationID, DOLocationID, payment_type, \
         fare_amount, extra, mta_tax, tip_amount, tolls_amount, improvement_surcharge, total_amount, \
         congestion_surcharge, 0.0 as Airport_fee from read_csv('{}', header = true)) to '{}' (format parquet)",
        sample.display(),
        parquet.display()
    ));
    let report = ingest_json(project.path(), parquet.to_str().unwrap(), "yellow");
    let s = &report["sources"][0];
    assert_eq!(s["format"], "parquet");
    assert_eq!(s["account"]["written"], 22_792);
    let drift = s["drift"].to_string();
    assert!(
        drift.contains(
            r#"{"change":"Float64 in file, Int32 in table: converted","column":"VendorID"}"#
        ),
        "{drift}"
    );
    let file = project
        .path()
        .join("lake/raw/yellow/year=2021/month=01/yellow_tripdata_2021-01.parquet");
    let types = duckdb(&format!(
        "select typeof(VendorID), typeof(tpep_pickup_datetime), typeof(airport_fee) from read_parquet('{}') limit 1",
        file.display()
    ));
    assert_eq!(types, "INTEGER|TIMESTAMP|DOUBLE");
}

#[test]
fn a_glob_loads_each_month_into_its_own_partition() {
    let project = tempfile::tempdir().unwrap();
    let data = project.path().join("data");
    for month in ["2021-01", "2021-02", "2021-03"] {
        let out = data.join(format!("fhv_tripdata_{month}.parquet"));
        datagen(project.path(), "fhv", month, 3_000, "parquet", &out, &[]);
    }
    let glob = data.join("fhv_tripdata_2021-*.parquet");
    let report = ingest_json(project.path(), glob.to_str().unwrap(), "fhv");
    assert_eq!(report["sources"].as_array().unwrap().len(), 3);
    assert_eq!(report["total"]["written"], 9_000);
    for m in ["01", "02", "03"] {
        let dir = project
            .path()
            .join(format!("lake/raw/fhv/year=2021/month={m}"));
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);
    }
}
