//! Helpers for driving the real `tripline` binary, PostgreSQL and DuckDB from tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tripline"))
}

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "tripline failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run `tripline -C project ARGS...`.
pub fn tripline(project: &Path, args: &[&str]) -> Run {
    Command::new(bin())
        .arg("-C")
        .arg(project)
        .args(args)
        .env_remove("TRIPLINE_LAKE_ROOT")
        .env_remove("TRIPLINE_POSTGRES_URL")
        .output()
        .expect("run tripline")
        .into()
}

/// `tripline --json ingest SOURCE --kind KIND` into the project's lake; must succeed; returns the report.
pub fn ingest_json(project: &Path, source: &str, kind: &str) -> serde_json::Value {
    tripline(project, &["--json", "ingest", source, "--kind", kind])
        .ok()
        .json()
}

/// Generate a file with the real binary and return the report JSON.
pub fn datagen(
    project: &Path,
    kind: &str,
    month: &str,
    rows: u64,
    format: &str,
    out: &Path,
    extra: &[&str],
) -> serde_json::Value {
    let rows = rows.to_string();
    let mut args = vec![
        "--json", "datagen", "--kind", kind, "--month", month, "--rows", &rows, "--format", format,
    ];
    let out = out.to_str().unwrap();
    args.extend(["--output", out]);
    args.extend(extra);
    tripline(project, &args).ok().json()
}

/// The throwaway PostgreSQL the test command starts (`scripts/test`).
pub fn pg_url() -> String {
    std::env::var("TRIPLINE_TEST_PG_URL").expect(
        "TRIPLINE_TEST_PG_URL is not set: run the tests with scripts/test, which starts a throwaway PostgreSQL",
    )
}

/// A fresh database on the test server, so tests do not see each other's tables.
pub fn fresh_database(name: &str) -> String {
    let base = pg_url();
    let name = format!("t_{name}_{}", std::process::id());
    psql(&base, &format!("DROP DATABASE IF EXISTS {name}"));
    psql(&base, &format!("CREATE DATABASE {name}"));
    match base.rsplit_once('/') {
        Some((server, _db)) => format!("{server}/{name}"),
        None => panic!("bad TRIPLINE_TEST_PG_URL {base}"),
    }
}

/// Run SQL with psql and return its unaligned, tuples-only output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            url,
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run a DuckDB query through Python and return the first row as text, fields joined by `|`.
pub fn duckdb(sql: &str) -> String {
    let script = format!(
        "import duckdb\nrows = duckdb.connect().execute({sql:?}).fetchall()\nprint('|'.join(str(v) for v in rows[0]))"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 with duckdb");
    assert!(
        out.status.success(),
        "duckdb failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The shared real TLC samples (beside the checkout).
pub fn shared_data() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    assert!(
        root.exists(),
        "the shared TLC samples are missing at {}",
        root.display()
    );
    root
}

/// The example project's zone lookup.
pub fn zones_csv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nyc-taxi/seeds/taxi_zone_lookup.csv")
}

/// Number of rows in all Parquet files under a directory, counted by DuckDB.
pub fn parquet_rows(glob: &Path) -> u64 {
    duckdb(&format!(
        "select count(*) from read_parquet('{}')",
        glob.display()
    ))
    .parse()
    .unwrap()
}
