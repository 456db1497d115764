//! Opening the warehouse lists the lake's tables; each table opens when a statement first reads it. A table that
//! cannot be opened fails only the statements that read it, with its own error; views over views, readers in
//! parallel, and DDL on tables not read yet behave as if everything had been opened up front.

use std::path::Path;

use arrow::array::{Array, Int64Array};
use tripline_warehouse::{RunMode, Warehouse};

async fn run(w: &Warehouse, sql: &str) {
    w.execute(sql, RunMode::Run)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The single integer `sql` returns.
async fn one(w: &Warehouse, sql: &str) -> i64 {
    let r = w
        .execute(sql, RunMode::Run)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let col = r.batches[0].column(0);
    let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(col.len(), 1, "{sql}");
    col.value(0)
}

async fn make_lake(project: &Path) {
    let w = Warehouse::open("lake", project).await.unwrap();
    run(
        &w,
        "CREATE TABLE s.good AS SELECT * FROM (VALUES (1, 10), (2, 20), (3, 30)) AS v(k, x)",
    )
    .await;
    run(&w, "CREATE TABLE s.bad AS SELECT 1 AS k").await;
    run(&w, "CREATE VIEW s.v AS SELECT k, x * 2 AS x2 FROM s.good").await;
    run(
        &w,
        "CREATE VIEW t.vv AS SELECT sum(x2) AS total FROM s.v WHERE k > 1",
    )
    .await;
    // An external table over the Parquet files of s.good.
    run(
        &w,
        "CREATE EXTERNAL TABLE s.ext OPTIONS (format = 'PARQUET', uris = ['warehouse/s/good/*.parquet'])",
    )
    .await;
}

/// Break a table: its first commit no longer parses.
fn break_delta_log(project: &Path, table: &str) {
    let log = project.join(format!("lake/warehouse/s/{table}/_delta_log"));
    let first = log.join("00000000000000000000.json");
    assert!(first.exists(), "{}", first.display());
    std::fs::write(&first, "{ this is not a commit\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_table_fails_only_its_readers_with_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    make_lake(dir.path()).await;
    break_delta_log(dir.path(), "bad");

    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    // Every table is still listed.
    let shown = w.execute("SHOW TABLES", RunMode::Run).await.unwrap();
    assert_eq!(shown.row_count(), 5);

    assert_eq!(one(&w, "SELECT count(*) FROM s.good").await, 3);
    assert_eq!(one(&w, "SELECT total FROM t.vv").await, 100);
    assert_eq!(one(&w, "SELECT sum(x) FROM s.ext").await, 60);

    let err = w
        .execute("SELECT * FROM s.bad", RunMode::Run)
        .await
        .expect_err("a table whose log does not parse");
    let msg = err.to_string();
    assert!(msg.contains("s.bad"), "names the table: {msg}");
    assert!(
        !msg.contains("not found"),
        "says what is wrong, not that it is missing: {msg}"
    );
    // The next read tries again and fails the same way; other tables are unaffected.
    assert!(
        w.execute("SELECT * FROM s.bad", RunMode::Run)
            .await
            .is_err()
    );
    assert_eq!(one(&w, "SELECT count(*) FROM s.v").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_views_open_what_they_read_and_parallel_readers_agree() {
    let dir = tempfile::tempdir().unwrap();
    make_lake(dir.path()).await;

    // The first statement reads a view over a view over a table, none of them opened yet.
    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    assert_eq!(one(&w, "SELECT total FROM t.vv").await, 100);

    // Readers in parallel of tables no one has opened.
    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    let queries = [
        "SELECT count(*) FROM s.good",
        "SELECT sum(x) FROM s.good",
        "SELECT sum(x2) FROM s.v",
        "SELECT count(*) FROM s.ext",
        "SELECT total FROM t.vv",
    ];
    let answers = futures::future::join_all(queries.iter().map(|q| one(&w, q))).await;
    assert_eq!(answers, vec![3, 60, 120, 3, 100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_on_tables_not_read_yet() {
    let dir = tempfile::tempdir().unwrap();
    make_lake(dir.path()).await;

    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    // Written before it was ever read: the insert sees the table's rows.
    run(&w, "INSERT INTO s.good VALUES (4, 40)").await;
    assert_eq!(one(&w, "SELECT sum(x) FROM s.good").await, 100);

    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    run(&w, "DROP TABLE s.bad").await;
    let err = w
        .execute("SELECT * FROM s.bad", RunMode::Run)
        .await
        .expect_err("dropped");
    assert!(err.to_string().contains("s.bad"), "{err}");
    run(&w, "CREATE TABLE s.bad AS SELECT 5 AS k").await;
    assert_eq!(one(&w, "SELECT k FROM s.bad").await, 5);

    // Replaced before it was read: readers see the new version.
    run(
        &w,
        "CREATE OR REPLACE TABLE s.good AS SELECT * FROM (VALUES (9, 1)) AS v(k, x)",
    )
    .await;
    assert_eq!(one(&w, "SELECT total FROM t.vv").await, 2);

    // A fresh warehouse sees all of it.
    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    assert_eq!(one(&w, "SELECT k FROM s.bad").await, 5);
    assert_eq!(one(&w, "SELECT sum(x) FROM s.good").await, 1);
}
