//! The example dbt project (`examples/nyc-taxi/dbt`) through the real binary: generated green and yellow trips are
//! ingested into the lake and into PostgreSQL, `dbt build` runs on both adapters with every test passing, each model
//! has the same rows and revenue on both, and a second build is incremental and adds nothing twice.

mod common;
mod dbt_common;

use std::path::Path;

use common::*;
use dbt_common::*;

const GREEN_ROWS: u64 = 1_500;
const YELLOW_ROWS: u64 = 4_000;

/// A tripline project with the example dbt project and a month of generated trips.
fn project_with_trips(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    copy_dir(&example_project(), &dir.join("dbt"));
    let green = dir.join("green_tripdata_2024-01.parquet");
    let yellow = dir.join("yellow_tripdata_2024-01.csv.gz");
    datagen(dir, "green", "2024-01", GREEN_ROWS, "parquet", &green, &[]);
    datagen(
        dir,
        "yellow",
        "2024-01",
        YELLOW_ROWS,
        "csv.gz",
        &yellow,
        &[],
    );
    (green, yellow)
}

/// Rows and revenue of each model, as `model|rows|revenue` (revenue rounded to cents).
fn totals(query: impl Fn(&str) -> String) -> Vec<String> {
    let money = |text: &str| -> String {
        let v: f64 = text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {text:?}"));
        format!("{v:.2}")
    };
    let mut out = Vec::new();
    for (model, amount) in [
        ("stg_green_tripdata", "total_amount"),
        ("stg_yellow_tripdata", "total_amount"),
        ("fact_trips", "total_amount"),
        ("dm_monthly_zone_revenue", "revenue_monthly_total_amount"),
    ] {
        let row = query(&format!(
            "select count(*), cast(sum({amount}) as double precision) from dbt_nyc.{model}"
        ));
        let (n, sum) = row
            .split_once('|')
            .unwrap_or_else(|| panic!("{model}: {row}"));
        out.push(format!("{model}|{n}|{}", money(sum)));
    }
    for model in ["dim_zones", "taxi_zone_lookup", "payment_type_lookup"] {
        out.push(format!(
            "{model}|{}",
            query(&format!("select count(*) from dbt_nyc.{model}"))
        ));
    }
    out
}

fn assert_clean_build(run: &Run) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let done = done_line(run);
    assert!(
        done.contains("ERROR=0") && done.contains("SKIP=0") && done.contains("WARN=0"),
        "{done}\n{}",
        run.stdout
    );
}

/// `tripline ingest --to postgres://` into a fresh database; returns its URL.
fn ingest_postgres(dir: &Path, green: &Path, yellow: &Path, name: &str) -> String {
    let url = fresh_database(name);
    for (file, kind) in [(green, "green"), (yellow, "yellow")] {
        tripline(
            dir,
            &[
                "--json",
                "ingest",
                file.to_str().unwrap(),
                "--kind",
                kind,
                "--to",
                &url,
            ],
        )
        .ok();
    }
    url
}

#[test]
fn the_example_project_builds_on_postgres_and_a_second_build_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (green, yellow) = project_with_trips(dir.path());
    let dbt_dir = dir.path().join("dbt");
    let url = ingest_postgres(dir.path(), &green, &yellow, "dbt_nyc_pg");
    let env = pg_env(&url);
    let run = dbt(dir.path(), &env, &["build", "--target", "postgres"]);
    assert_clean_build(&run);
    assert!(
        run.stdout
            .contains("OK created sql incremental model dbt_nyc.fact_trips"),
        "{}",
        run.stdout
    );
    let statuses_first = statuses(&dbt_dir);
    assert!(
        statuses_first
            .values()
            .all(|s| s == "success" || s == "pass"),
        "{statuses_first:#?}"
    );
    let first = totals(|sql| psql(&url, sql));
    let fact_rows: u64 = first[2].split('|').nth(1).unwrap().parse().unwrap();
    assert!(fact_rows > (GREEN_ROWS + YELLOW_ROWS) / 2, "{first:?}");
    // (The singular test assert_mart_revenue_matches_fact checks the mart adds up to the fact table.)

    let again = dbt(dir.path(), &env, &["build", "--target", "postgres"]);
    assert_clean_build(&again);
    assert_eq!(totals(|sql| psql(&url, sql)), first);
    let executed =
        std::fs::read_to_string(dbt_dir.join("target/run/nyc_taxi/models/core/fact_trips.sql"))
            .unwrap();
    assert!(executed.contains("merge into"), "{executed}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dbt_dir.join("target/manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(manifest["nodes"]["model.nyc_taxi.fact_trips"]["compiled_code"].is_string());
    assert!(
        dbt_dir
            .join("target/compiled/nyc_taxi/models/core/fact_trips.sql")
            .is_file()
    );

    // --full-refresh rebuilds the incremental model from scratch, with the same rows.
    let full = dbt(
        dir.path(),
        &env,
        &[
            "run",
            "--target",
            "postgres",
            "-s",
            "fact_trips",
            "--full-refresh",
        ],
    );
    assert_eq!(full.code, 0, "{}", full.stdout);
    assert_eq!(statuses(&dbt_dir).len(), 1);
    assert_eq!(totals(|sql| psql(&url, sql)), first);
}

#[test]
fn the_example_project_builds_alike_on_the_warehouse_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (green, yellow) = project_with_trips(dir.path());
    let dbt_dir = dir.path().join("dbt");

    // The embedded warehouse over the lake.
    ingest_json(dir.path(), green.to_str().unwrap(), "green");
    ingest_json(dir.path(), yellow.to_str().unwrap(), "yellow");
    let run = dbt(dir.path(), &[], &["build"]);
    assert_clean_build(&run);
    assert!(
        run.stdout
            .contains("OK created sql incremental model dbt_nyc.fact_trips"),
        "{}",
        run.stdout
    );
    let statuses_first = statuses(&dbt_dir);
    assert!(
        statuses_first
            .values()
            .all(|s| s == "success" || s == "pass"),
        "{statuses_first:#?}"
    );
    let warehouse = totals(|sql| warehouse_row(dir.path(), sql));

    // PostgreSQL, over the tables `tripline ingest --to postgres://` makes.
    let url = fresh_database("dbt_nyc");
    for (file, kind) in [(&green, "green"), (&yellow, "yellow")] {
        tripline(
            dir.path(),
            &[
                "--json",
                "ingest",
                file.to_str().unwrap(),
                "--kind",
                kind,
                "--to",
                &url,
            ],
        )
        .ok();
    }
    let env = pg_env(&url);
    let run = dbt(dir.path(), &env, &["build", "--target", "postgres"]);
    assert_clean_build(&run);
    let postgres = totals(|sql| psql(&url, sql));
    assert_eq!(warehouse, postgres, "the same models on both adapters");
    let fact_rows: u64 = warehouse[2].split('|').nth(1).unwrap().parse().unwrap();
    assert!(fact_rows > (GREEN_ROWS + YELLOW_ROWS) / 2, "{warehouse:?}");

    // A second build is incremental: fact_trips merges, nothing is duplicated (its unique test runs again).
    let again = dbt(dir.path(), &[], &["build"]);
    assert_clean_build(&again);
    assert_eq!(totals(|sql| warehouse_row(dir.path(), sql)), warehouse);
    let again = dbt(dir.path(), &env, &["build", "--target", "postgres"]);
    assert_clean_build(&again);
    assert_eq!(totals(|sql| psql(&url, sql)), postgres);

    // The artifacts dbt consumers read.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dbt_dir.join("target/manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(manifest["nodes"]["model.nyc_taxi.fact_trips"]["compiled_code"].is_string());
    assert!(
        dbt_dir
            .join("target/compiled/nyc_taxi/models/core/fact_trips.sql")
            .is_file()
    );
    let executed =
        std::fs::read_to_string(dbt_dir.join("target/run/nyc_taxi/models/core/fact_trips.sql"))
            .unwrap();
    assert!(executed.contains("merge into"), "{executed}");
}
