//! Reading Delta tables: which files a query opens (partition values and file statistics), that no row is lost
//! to a statistic, and what the plan knows about a table before reading it.

use arrow::array::{Array, Int64Array};
use datafusion::common::ScalarValue;
use datafusion::common::stats::Precision;
use datafusion::physical_plan::{StatisticsArgs, StatisticsContext};
use tripline_warehouse::{RunMode, Warehouse};

async fn warehouse(dir: &tempfile::TempDir) -> Warehouse {
    Warehouse::open("lake", dir.path()).await.unwrap()
}

async fn run(w: &Warehouse, sql: &str) -> tripline_warehouse::StatementResult {
    w.execute(sql, RunMode::Run)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn files_planned(w: &Warehouse, sql: &str) -> u64 {
    w.execute(sql, RunMode::DryRun)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .scan
        .files_read
}

fn ints(result: &tripline_warehouse::StatementResult) -> Vec<Option<i64>> {
    result
        .batches
        .iter()
        .flat_map(|b| {
            let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_filter_opens_only_its_partitions_and_null_dates_have_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let w = warehouse(&dir).await;
    run(
        &w,
        "CREATE TABLE s.trips PARTITION BY DATE(pickup) AS SELECT * FROM (VALUES \
         (1, TIMESTAMP '2024-03-01 09:00:00'), (2, TIMESTAMP '2024-03-01 10:00:00'), \
         (3, TIMESTAMP '2024-03-02 11:00:00'), (4, TIMESTAMP '2024-03-03 12:00:00'), \
         (5, CAST(NULL AS TIMESTAMP))) AS t(id, pickup)",
    )
    .await;

    let one_day = "SELECT id FROM s.trips WHERE pickup_date = DATE '2024-03-01' ORDER BY id";
    assert_eq!(ints(&run(&w, one_day).await), vec![Some(1), Some(2)]);
    assert_eq!(files_planned(&w, one_day).await, 1);

    let later = "SELECT id FROM s.trips WHERE pickup_date > DATE '2024-03-01' ORDER BY id";
    assert_eq!(ints(&run(&w, later).await), vec![Some(3), Some(4)]);
    assert_eq!(files_planned(&w, later).await, 2);

    // The row without a date is in a partition of its own: found by IS NULL, never by a comparison.
    let null_day = "SELECT id FROM s.trips WHERE pickup_date IS NULL";
    assert_eq!(ints(&run(&w, null_day).await), vec![Some(5)]);
    assert_eq!(files_planned(&w, null_day).await, 1);
    let not_march_first = "SELECT count(*) FROM s.trips WHERE pickup_date <> DATE '2024-03-01'";
    assert_eq!(ints(&run(&w, not_march_first).await), vec![Some(2)]);

    // A filter mixing a partition column with a data column still reads only the matching partitions.
    let mixed =
        "SELECT id FROM s.trips WHERE pickup_date = DATE '2024-03-02' OR id = 4 ORDER BY id";
    assert_eq!(ints(&run(&w, mixed).await), vec![Some(3), Some(4)]);

    let none = "SELECT count(*) FROM s.trips WHERE pickup_date = DATE '2023-01-01'";
    assert_eq!(ints(&run(&w, none).await), vec![Some(0)]);
    assert_eq!(files_planned(&w, none).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_statistics_skip_files_but_never_rows_a_millisecond_statistic_would_hide() {
    let dir = tempfile::tempdir().unwrap();
    let w = warehouse(&dir).await;
    // Three appends, three files with disjoint vendor ranges and sub-millisecond timestamps.
    run(
        &w,
        "CREATE TABLE s.rides AS SELECT * FROM (VALUES \
         (1, TIMESTAMP '2024-03-01 10:00:00.000100'), (1, TIMESTAMP '2024-03-01 10:00:00.000900')) AS t(vendor, at)",
    )
    .await;
    run(
        &w,
        "INSERT INTO s.rides VALUES (2, TIMESTAMP '2024-03-01 11:00:00.000100'), (2, TIMESTAMP '2024-03-01 11:00:00.000900')",
    )
    .await;
    run(
        &w,
        "INSERT INTO s.rides VALUES (3, TIMESTAMP '2024-03-01 12:00:00.000100'), (3, TIMESTAMP '2024-03-01 12:00:00.000900')",
    )
    .await;

    let vendor = "SELECT count(*) FROM s.rides WHERE vendor = 2";
    assert_eq!(ints(&run(&w, vendor).await), vec![Some(2)]);
    assert_eq!(files_planned(&w, vendor).await, 1);
    assert_eq!(
        files_planned(&w, "SELECT count(*) FROM s.rides WHERE vendor >= 2").await,
        2
    );

    // Past the millisecond the statistics may keep: the last microseconds of each file are still found.
    let late =
        "SELECT vendor FROM s.rides WHERE at > TIMESTAMP '2024-03-01 10:00:00.000500' ORDER BY at";
    assert_eq!(
        ints(&run(&w, late).await),
        vec![Some(1), Some(2), Some(2), Some(3), Some(3)]
    );
    let early = "SELECT count(*) FROM s.rides WHERE at < TIMESTAMP '2024-03-01 12:00:00.000500'";
    assert_eq!(ints(&run(&w, early).await), vec![Some(5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_knows_a_tables_row_count_and_column_ranges_before_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = warehouse(&dir).await;
    run(
        &w,
        "CREATE TABLE s.zones AS SELECT value AS zone, value * 10 AS weight FROM range(1, 264)",
    )
    .await;
    let plan = w
        .session()
        .sql("SELECT zone, weight FROM s.zones")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let stats = StatisticsContext::new()
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .unwrap();
    assert_eq!(stats.num_rows, Precision::Exact(263));
    let zone = &stats.column_statistics[0];
    assert_eq!(
        zone.min_value,
        Precision::Inexact(ScalarValue::Int64(Some(1)))
    );
    assert_eq!(
        zone.max_value,
        Precision::Inexact(ScalarValue::Int64(Some(263)))
    );
    assert_eq!(zone.null_count, Precision::Exact(0));
    let weight = &stats.column_statistics[1];
    assert_eq!(
        weight.max_value,
        Precision::Inexact(ScalarValue::Int64(Some(2630)))
    );

    // count(*) over the whole table is answered from the row counts.
    assert_eq!(
        ints(&run(&w, "SELECT count(*) FROM s.zones").await),
        vec![Some(263)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_files_reads_as_empty_and_fills_again() {
    let dir = tempfile::tempdir().unwrap();
    let w = warehouse(&dir).await;
    run(
        &w,
        "CREATE TABLE s.none AS SELECT CAST(1 AS BIGINT) AS x WHERE false",
    )
    .await;
    assert_eq!(
        ints(&run(&w, "SELECT count(*) FROM s.none").await),
        vec![Some(0)]
    );
    run(&w, "INSERT INTO s.none VALUES (5), (6)").await;
    assert_eq!(
        ints(&run(&w, "SELECT x FROM s.none WHERE x > 5").await),
        vec![Some(6)]
    );
    run(&w, "DELETE FROM s.none WHERE x >= 5").await;
    assert_eq!(
        ints(&run(&w, "SELECT count(*) FROM s.none").await),
        vec![Some(0)]
    );
}
