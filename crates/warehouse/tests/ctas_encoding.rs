//! The Parquet encodings `CREATE TABLE ... AS` writes: a column whose values hardly repeat is written plain, not
//! through a dictionary that would be as large as the column; a column that repeats keeps its dictionary; a column
//! Snappy cannot shrink is stored uncompressed, one it can stays compressed; and the table reads back the same.

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray};
use parquet::basic::{Compression, Encoding};
use parquet::file::reader::{FileReader, SerializedFileReader};
use tripline_warehouse::{RunMode, Warehouse};

/// Per column name: whether any of the table's files dictionary-encodes it, and whether any compresses it.
fn dictionary_columns(table_dir: &Path) -> Vec<(String, bool, bool)> {
    let mut out: Vec<(String, bool, bool)> = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(table_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        files += 1;
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        for rg in reader.metadata().row_groups() {
            for column in rg.columns() {
                let name = column.column_path().string();
                let dict = column
                    .encodings()
                    .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY));
                let compressed = column.compression() != Compression::UNCOMPRESSED;
                match out.iter_mut().find(|(n, _, _)| *n == name) {
                    Some((_, d, c)) => {
                        *d |= dict;
                        *c |= compressed;
                    }
                    None => out.push((name, dict, compressed)),
                }
            }
        }
    }
    assert!(files > 0, "no Parquet files in {}", table_dir.display());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_unique_column_is_written_plain_and_a_repeating_one_with_a_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    let create = "CREATE TABLE s.trips AS \
         SELECT concat('trip-', CAST(v AS VARCHAR), '-', CAST(v * 7919 AS VARCHAR)) AS tripid, \
                to_timestamp_seconds(1704067200 + v) AS pickup, \
                v % 7 AS zone, \
                CASE WHEN v % 3 = 0 THEN 'Cash' ELSE 'Credit card' END AS payment, \
                sin(CAST(v AS DOUBLE)) * 1000.0 AS fare \
         FROM (SELECT value AS v FROM generate_series(1, 50000))";
    w.execute(create, RunMode::Run)
        .await
        .unwrap_or_else(|e| panic!("{create}: {e}"));

    let columns = dictionary_columns(&dir.path().join("lake/warehouse/s/trips"));
    let column = |name: &str| {
        columns
            .iter()
            .find(|(n, _, _)| n == name)
            .cloned()
            .unwrap_or_else(|| panic!("no column {name} in {columns:?}"))
    };
    let dict = |name: &str| column(name).1;
    let compressed = |name: &str| column(name).2;
    assert!(!dict("tripid"), "{columns:?}");
    assert!(!dict("pickup"), "{columns:?}");
    assert!(dict("zone"), "{columns:?}");
    assert!(dict("payment"), "{columns:?}");
    // Unique doubles whose mantissas look random: nothing for a dictionary or for Snappy.
    assert!(!dict("fare"), "{columns:?}");
    assert!(!compressed("fare"), "{columns:?}");
    // Unique, but text of a few repeating words and digits: Snappy pays.
    assert!(compressed("tripid"), "{columns:?}");

    let check = "SELECT count(DISTINCT tripid), count(*), min(pickup) = TIMESTAMP '2024-01-01 00:00:01', \
                 sum(zone), sum(CASE WHEN payment = 'Cash' THEN 1 ELSE 0 END), \
                 sum(CASE WHEN fare = sin(CAST(tripid_n AS DOUBLE)) * 1000.0 THEN 1 ELSE 0 END) \
                 FROM (SELECT *, CAST(split_part(tripid, '-', 2) AS BIGINT) AS tripid_n FROM s.trips)";
    let result = w.execute(check, RunMode::Run).await.unwrap();
    let row = &result.batches[0];
    let int = |i: usize| {
        row.column(i)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0)
    };
    assert_eq!(int(0), 50_000);
    assert_eq!(int(1), 50_000);
    assert!(row.column(2).as_boolean().value(0));
    assert_eq!(int(3), (1..=50_000i64).map(|v| v % 7).sum::<i64>());
    assert_eq!(int(4), 50_000 / 3);
    assert_eq!(int(5), 50_000, "every fare reads back bit for bit");
    assert_eq!(row.column(0).null_count(), 0);
}
