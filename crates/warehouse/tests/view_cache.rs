//! Views' results kept for reuse (`Warehouse::cache_view_results`): read once, reused, recomputed after a write
//! under the view (views under views included), never kept beyond the budget, and never changing an answer.

use arrow::array::{Array, Int64Array};
use tripline_warehouse::{RunMode, Warehouse};

async fn open() -> (tempfile::TempDir, Warehouse) {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    (dir, w)
}

async fn run(w: &Warehouse, sql: &str) {
    w.execute(sql, RunMode::Run)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The single integer `sql` returns.
async fn one(w: &Warehouse, sql: &str) -> i64 {
    let r = w.execute(sql, RunMode::Run).await.unwrap();
    let col = r.batches[0].column(0);
    let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(col.len(), 1, "{sql}");
    col.value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_is_computed_once_and_recomputed_after_a_write_under_it() {
    let (_dir, w) = open().await;
    run(
        &w,
        "CREATE TABLE s.t AS SELECT * FROM (VALUES (1, 10), (1, 20), (2, 30)) AS v(k, x)",
    )
    .await;
    run(&w, "CREATE TABLE s.other AS SELECT 1 AS y").await;
    run(&w, "CREATE VIEW s.firsts AS SELECT k, x FROM (SELECT *, row_number() OVER (PARTITION BY k ORDER BY x) AS rn FROM s.t) WHERE rn = 1").await;
    run(
        &w,
        "CREATE VIEW s.total AS SELECT sum(x) AS x FROM s.firsts",
    )
    .await;
    w.cache_view_results(64 << 20);
    // Only the views named are kept.
    assert_eq!(one(&w, "SELECT count(*) FROM s.firsts").await, 2);
    assert_eq!(w.view_cache_counts(), (0, 0));
    w.keep_view_result("s.firsts");
    w.keep_view_result("s.total");

    assert_eq!(one(&w, "SELECT count(*) FROM s.firsts").await, 2);
    assert_eq!(one(&w, "SELECT sum(x) FROM s.firsts WHERE k = 2").await, 30);
    assert_eq!(one(&w, "SELECT max(x) FROM s.firsts").await, 30);
    assert_eq!(w.view_cache_counts(), (1, 2), "computed once, then reused");

    // A write elsewhere keeps the result; a write under the view does not.
    run(&w, "INSERT INTO s.other VALUES (2)").await;
    assert_eq!(one(&w, "SELECT count(*) FROM s.firsts").await, 2);
    assert_eq!(w.view_cache_counts(), (1, 3));
    run(&w, "INSERT INTO s.t VALUES (3, 5)").await;
    assert_eq!(one(&w, "SELECT count(*) FROM s.firsts").await, 3);
    assert_eq!(w.view_cache_counts().0, 2);

    // A view over the view: a table replaced two levels down is seen.
    assert_eq!(one(&w, "SELECT x FROM s.total").await, 45);
    run(
        &w,
        "CREATE OR REPLACE TABLE s.t AS SELECT * FROM (VALUES (7, 100)) AS v(k, x)",
    )
    .await;
    assert_eq!(one(&w, "SELECT x FROM s.total").await, 100);
    run(&w, "MERGE INTO s.t USING (SELECT 8 AS k, 1 AS x) src ON s.t.k = src.k WHEN NOT MATCHED THEN INSERT (k, x) VALUES (src.k, src.x)").await;
    assert_eq!(one(&w, "SELECT x FROM s.total").await, 101);
    run(&w, "DELETE FROM s.t WHERE k = 7").await;
    assert_eq!(one(&w, "SELECT x FROM s.total").await, 1);

    // Replacing the view under a view is a write under it too.
    run(
        &w,
        "CREATE OR REPLACE VIEW s.firsts AS SELECT k, x * 2 AS x FROM s.t",
    )
    .await;
    assert_eq!(one(&w, "SELECT x FROM s.total").await, 2);

    // Forgotten (its readers are done): not kept any more.
    let (computed, _) = w.view_cache_counts();
    w.forget_view_result("s.total");
    w.forget_view_result("s.firsts");
    assert_eq!(one(&w, "SELECT x FROM s.total").await, 2);
    assert_eq!(one(&w, "SELECT x FROM s.total").await, 2);
    assert_eq!(w.view_cache_counts().0, computed);

    // Off: every read runs the query; nothing more is counted.
    w.cache_view_results(0);
    let before = w.view_cache_counts();
    assert_eq!(one(&w, "SELECT x FROM s.total").await, 2);
    assert_eq!(w.view_cache_counts(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_bigger_than_the_budget_is_not_kept() {
    let (_dir, w) = open().await;
    run(
        &w,
        "CREATE TABLE s.big AS SELECT value AS v FROM generate_series(1, 200000)",
    )
    .await;
    run(
        &w,
        "CREATE VIEW s.evens AS SELECT v FROM s.big WHERE v % 2 = 0",
    )
    .await;
    w.cache_view_results(64 << 10);
    w.keep_view_result("s.evens");
    for _ in 0..3 {
        assert_eq!(one(&w, "SELECT count(*) FROM s.evens").await, 100_000);
    }
    // Tried once, found too big, then read as usual.
    assert_eq!(w.view_cache_counts(), (1, 0));
}

/// The text of `EXPLAIN sql`'s physical plan.
async fn physical_plan(w: &Warehouse, sql: &str) -> String {
    let r = w
        .execute(&format!("EXPLAIN {sql}"), RunMode::Run)
        .await
        .unwrap();
    let mut out = String::new();
    for batch in &r.batches {
        let kind =
            arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let plan =
            arrow::compute::cast(batch.column(1), &arrow::datatypes::DataType::Utf8).unwrap();
        let kind = kind
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let plan = plan
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        for i in 0..batch.num_rows() {
            if kind.value(i) == "physical_plan" {
                out.push_str(plan.value(i));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_result_knows_its_column_ranges_so_a_join_collects_the_small_side() {
    let (_dir, w) = open().await;
    run(
        &w,
        "CREATE TABLE s.trips AS SELECT value AS id, value % 50 + 1 AS zone FROM range(0, 200000)",
    )
    .await;
    run(
        &w,
        "CREATE TABLE s.zones AS SELECT value + 1 AS zone, concat('zone ', value) AS name FROM range(0, 50)",
    )
    .await;
    run(
        &w,
        "CREATE VIEW s.legs AS SELECT id, zone FROM s.trips WHERE id % 2 = 0",
    )
    .await;
    w.cache_view_results(64 << 20);
    w.keep_view_result("s.legs");
    assert_eq!(one(&w, "SELECT count(*) FROM s.legs").await, 100_000);

    // Two lookups, like trips to pickup and dropoff zones: the second join's other side is the first join, whose
    // size is estimated from the key's range (every key distinct would make it 50 rows).
    let join = "SELECT l.id, a.name, b.name FROM s.legs AS l \
                JOIN s.zones AS a ON l.zone = a.zone JOIN s.zones AS b ON l.zone = b.zone";
    let plan = physical_plan(&w, join).await;
    let top = plan
        .find("HashJoinExec")
        .unwrap_or_else(|| panic!("{plan}"));
    let build = &plan[top..];
    let build = build[build.find('\n').unwrap() + 1..]
        .lines()
        .next()
        .unwrap_or_default();
    assert!(
        !build.contains("CoalescePartitionsExec") && !build.contains("HashJoinExec"),
        "the outer join collects the 50 zones, not the 100,000 rows of the inner join:\n{plan}"
    );
    assert_eq!(
        one(&w, &format!("SELECT count(*) FROM ({join})")).await,
        100_000
    );
    assert_eq!(
        w.view_cache_counts(),
        (1, 2),
        "computed once; the plan and the join read it"
    );
}
