//! Helpers of the `tripline dbt` tests: write a dbt project, point a profile at the test PostgreSQL, read
//! `run_results.json`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;

/// Write files (relative path -> text) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Copy a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The example dbt project of the repository.
pub fn example_project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nyc-taxi/dbt")
}

/// `DBT_POSTGRES_*` variables for a `postgres://user[:pass]@host:port/db` URL.
pub fn pg_env(url: &str) -> Vec<(String, String)> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let (auth, rest) = rest.split_once('@').unwrap_or(("postgres", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, db) = rest.split_once('/').unwrap_or((rest, "postgres"));
    let db = db.split('?').next().unwrap_or(db);
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    vec![
        ("DBT_POSTGRES_HOST".into(), host.into()),
        ("DBT_POSTGRES_PORT".into(), port.into()),
        ("DBT_POSTGRES_USER".into(), user.into()),
        ("DBT_POSTGRES_PASSWORD".into(), password.into()),
        ("DBT_POSTGRES_DBNAME".into(), db.into()),
    ]
}

/// Run `tripline -C project dbt ARGS...` with extra environment variables.
pub fn dbt(project: &Path, env: &[(String, String)], args: &[&str]) -> Run {
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("-C").arg(project).arg("dbt").args(args);
    cmd.env_remove("TRIPLINE_LAKE_ROOT")
        .env_remove("TRIPLINE_POSTGRES_URL")
        .env_remove("DBT_PROFILES_DIR")
        .env_remove("DBT_TARGET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tripline dbt").into()
}

/// Status of each node in `target/run_results.json`, by unique id.
pub fn statuses(dbt_dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dbt_dir.join("target/run_results.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The `Done. PASS=..` line of a run's output.
pub fn done_line(run: &Run) -> String {
    run.stdout
        .lines()
        .find(|l| l.contains("Done. PASS="))
        .unwrap_or_else(|| {
            panic!(
                "no summary line\nstdout:\n{}\nstderr:\n{}",
                run.stdout, run.stderr
            )
        })
        .to_string()
}

/// The first row of a query on the embedded warehouse, fields joined by `|`.
pub fn warehouse_row(project: &Path, sql: &str) -> String {
    let run = tripline(project, &["sql", "--format", "csv", "-e", sql]).ok();
    let mut lines = run.stdout.lines();
    lines.next();
    lines.next().unwrap_or_default().replace(',', "|")
}
