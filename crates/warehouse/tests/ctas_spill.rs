//! A partitioned and clustered `CREATE TABLE ... AS` sorts its rows (partition, then cluster columns) before writing
//! them. The sort must spill to disk when the rows do not fit its memory budget, with every sort partition running at
//! once, and the table must hold every row, once, with each file in cluster order.

use std::fs::File;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tripline_warehouse::{RunMode, Warehouse};

const ROWS: i64 = 1_500_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sorted_ctas_larger_than_its_memory_budget_spills_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    // About 90 MB of rows in Arrow against a 24 MiB budget, sorted in 4 partitions at once.
    w.set_sort_memory(24 << 20);
    w.execute(
        "SET datafusion.execution.target_partitions = 4",
        RunMode::Run,
    )
    .await
    .unwrap();
    let create = format!(
        "CREATE TABLE s.trips PARTITION BY DATE(pickup) CLUSTER BY vendor, zone AS \
         SELECT v AS id, \
                to_timestamp_seconds(1704067200 + (v * 7919) % (20 * 86400)) AS pickup, \
                (v * 31) % 3 AS vendor, \
                (v * 17) % 265 AS zone, \
                concat('note-', CAST(v % 1000 AS VARCHAR)) AS note, \
                CAST(v % 97 AS DOUBLE) * 1.5 AS fare \
         FROM (SELECT value AS v FROM generate_series(1, {ROWS}))"
    );
    w.execute(&create, RunMode::Run)
        .await
        .unwrap_or_else(|e| panic!("{create}: {e}"));

    let check = w
        .execute(
            "SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(id) AS s FROM s.trips",
            RunMode::Run,
        )
        .await
        .unwrap();
    let row = &check.batches[0];
    let col = |i: usize| row.column(i).as_primitive::<Int64Type>().value(0);
    assert_eq!(col(0), ROWS, "row count");
    assert_eq!(col(1), ROWS, "distinct ids");
    assert_eq!(col(2), ROWS * (ROWS + 1) / 2, "sum of ids");

    // Twenty pickup dates, twenty partitions; within each file, rows run in (vendor, zone) order.
    let table_dir = dir.path().join("lake/warehouse/s/trips");
    let mut partitions = 0;
    for entry in std::fs::read_dir(&table_dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.contains('=') {
            continue;
        }
        partitions += 1;
        for file in std::fs::read_dir(&path).unwrap() {
            let file = file.unwrap().path();
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap())
                .unwrap()
                .build()
                .unwrap();
            let mut last: Option<(i64, i64)> = None;
            for batch in reader {
                let batch = batch.unwrap();
                let vendor = batch
                    .column_by_name("vendor")
                    .unwrap()
                    .as_primitive::<Int64Type>();
                let zone = batch
                    .column_by_name("zone")
                    .unwrap()
                    .as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    let key = (vendor.value(i), zone.value(i));
                    if let Some(prev) = last {
                        assert!(prev <= key, "{}: {prev:?} before {key:?}", file.display());
                    }
                    last = Some(key);
                }
                assert_eq!(vendor.null_count(), 0);
            }
        }
    }
    assert_eq!(partitions, 20, "one directory per pickup date");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sort_budget_too_small_for_one_batch_fails_with_a_memory_error_and_writes_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    // The budget binds: 64 KiB cannot hold one batch of the sort's input.
    w.set_sort_memory(64 << 10);
    let create = "CREATE TABLE s.t PARTITION BY DATE(pickup) AS \
         SELECT v AS id, to_timestamp_seconds(1704067200 + v) AS pickup \
         FROM (SELECT value AS v FROM generate_series(1, 200000))";
    let err = w
        .execute(create, RunMode::Run)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("memory"), "{err}");
    let listed = w.execute("SHOW TABLES", RunMode::Run).await.unwrap();
    assert_eq!(listed.row_count(), 0, "a failed CTAS leaves no table");
}
