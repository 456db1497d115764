//! Group keys by the date of a table's `PARTITION BY DATE(col)` column come from the partition column: the scan no
//! longer reads `col` at all, and every answer equals the one over an unpartitioned copy of the rows.

use arrow::array::{Array, AsArray};
use arrow::util::pretty::pretty_format_batches;
use tripline_warehouse::{RunMode, Warehouse};

/// The text of a statement's result, rows sorted by the query.
async fn rows(w: &Warehouse, sql: &str) -> String {
    let result = w
        .execute(sql, RunMode::Run)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&result.batches).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_keys_of_a_date_partitioned_table_are_read_from_its_partition_column() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open("lake", dir.path()).await.unwrap();
    // Five hundred days of hourly-ish pickups around a year boundary, some NULL.
    let rows_sql = "SELECT CASE WHEN value % 97 = 0 THEN NULL \
                    ELSE to_timestamp_seconds(1696118400 + value * 4271) END AS pickup, \
                    value % 11 AS zone, CAST(value % 1000 AS DOUBLE) / 8.0 AS amount \
                    FROM generate_series(1, 10000)";
    for sql in [
        format!("CREATE TABLE s.plain AS {rows_sql}"),
        format!("CREATE TABLE s.daily PARTITION BY DATE(pickup) CLUSTER BY zone AS {rows_sql}"),
    ] {
        w.execute(&sql, RunMode::Run)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    let queries = [
        "SELECT DATE(pickup) AS d, count(*) AS n, sum(amount) AS a FROM {t} GROUP BY 1 ORDER BY 1",
        "SELECT date_trunc('month', pickup) AS m, zone, sum(amount) AS a, count(*) AS n FROM {t} \
         GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT date_trunc('week', pickup) AS w, date_trunc('quarter', pickup) AS q, \
         date_trunc('year', pickup) AS y, CAST(pickup AS DATE) AS d, count(*) AS n FROM {t} \
         GROUP BY 1, 2, 3, 4 ORDER BY 4",
        "SELECT kind, date_trunc('month', p) AS m, count(*) AS n FROM \
         (SELECT 'x' AS kind, pickup AS p FROM {t} UNION ALL SELECT 'y' AS kind, pickup AS p FROM {t}) u \
         GROUP BY 1, 2 ORDER BY 1, 2",
    ];
    for query in queries {
        let plain = rows(&w, &query.replace("{t}", "s.plain")).await;
        let daily = rows(&w, &query.replace("{t}", "s.daily")).await;
        assert_eq!(plain, daily, "{query}");

        // The partitioned table's scan reads the partition column, not the timestamps.
        let explain = w
            .execute(
                &format!("EXPLAIN {}", query.replace("{t}", "s.daily")),
                RunMode::Run,
            )
            .await
            .unwrap();
        let plan: String = explain
            .batches
            .iter()
            .flat_map(|b| {
                let text = b.column(1).as_string::<i32>();
                (0..text.len())
                    .map(|i| text.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n");
        let scans: Vec<&str> = plan
            .lines()
            .filter(|l| l.trim_start().starts_with("TableScan: s.daily"))
            .collect();
        assert!(!scans.is_empty(), "{plan}");
        for scan in scans {
            assert!(scan.contains("pickup_date"), "{query}\n{plan}");
            assert!(
                !scan.contains("pickup,") && !scan.contains("pickup]"),
                "{query}\n{plan}"
            );
        }
    }
}
