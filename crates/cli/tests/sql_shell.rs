//! `tripline sql` beyond -e: the shell (driven through a pipe, as a script would), Parquet output, DML through the
//! binary, and the same command passed through to PostgreSQL.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Run `tripline -C project sql ARGS` with `input` on stdin.
fn shell(project: &Path, args: &[&str], input: &str) -> Run {
    let mut child = Command::new(bin())
        .arg("-C")
        .arg(project)
        .arg("sql")
        .args(args)
        .env_remove("TRIPLINE_LAKE_ROOT")
        .env_remove("TRIPLINE_POSTGRES_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tripline");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().into()
}

#[test]
fn the_shell_reads_statements_over_several_lines_and_backslash_commands() {
    let project = tempfile::tempdir().unwrap();
    let project = project.path();
    let run = shell(
        project,
        &["--format", "csv"],
        "CREATE TABLE shop.orders AS\n\
         SELECT * FROM (VALUES (1, 'ann', 10.5), (2, 'bob', 20.0)) AS t(id, customer, amount);\n\
         \\d\n\
         \\d shop.orders\n\
         \\timing on\n\
         SELECT customer,\n  amount\nFROM shop.orders\nWHERE id = 2;\n\
         \\timing off\n\
         -- a comment; not a statement\n\
         UPDATE shop.orders SET amount = amount + 1 WHERE customer = 'ann';\n\
         SELECT sum(amount) AS total FROM shop.orders;\n\
         \\q\n\
         SELECT 'after quit';\n",
    )
    .ok();
    let out = &run.stdout;
    assert!(
        out.contains("shop,orders,DELTA"),
        "\\d lists tables:\n{out}"
    );
    assert!(
        out.contains("\ncustomer,Utf8"),
        "\\d ds.t describes:\n{out}"
    );
    assert!(out.contains("customer,amount\nbob,20.0\n"), "{out}");
    assert!(out.contains("total\n31.5\n"), "the UPDATE ran:\n{out}");
    assert!(!out.contains("after quit"), "\\q stops reading:\n{out}");
    assert_eq!(
        run.stderr.matches("Time: ").count(),
        1,
        "timing shown only while on:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("updated 1 rows of shop.orders"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_failing_statement_in_the_shell_is_reported_and_the_rest_still_runs() {
    let project = tempfile::tempdir().unwrap();
    let run = shell(
        project.path(),
        &["--format", "csv"],
        "SELECT * FROM nowhere.t;\nSELECT 42 AS answer;\n\\bogus\n",
    );
    assert_eq!(run.code, 1, "a piped script with failures exits 1");
    assert!(run.stderr.contains("nowhere"), "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown command \\bogus"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("answer\n42\n"), "{}", run.stdout);
}

#[test]
fn results_are_written_as_parquet_and_read_back_by_duckdb() {
    let project = tempfile::tempdir().unwrap();
    let project = project.path();
    let file = project.join("out.parquet");
    tripline(
        project,
        &[
            "sql",
            "--format",
            "parquet",
            "-o",
            file.to_str().unwrap(),
            "-e",
            "SELECT v AS id, v * 1.5 AS amount FROM (SELECT unnest(range(0, 1000)) AS v)",
        ],
    )
    .ok();
    assert_eq!(
        duckdb(&format!(
            "select count(*), sum(amount) from read_parquet('{}')",
            file.display()
        )),
        "1000|749250.0"
    );
    let both = tripline(project, &["sql", "-e", "SELECT 1", "-f", "x.sql"]);
    assert_eq!(both.code, 2, "{}", both.stderr);
}

#[test]
fn sql_passes_through_to_postgresql() {
    let url = fresh_database("sql_pg");
    let project = tempfile::tempdir().unwrap();
    let project = project.path();
    let sample = shared_data().join("samples/yellow_tripdata_2021-01_head22792.csv");
    tripline(
        project,
        &[
            "ingest",
            sample.to_str().unwrap(),
            "--kind",
            "yellow",
            "--to",
            &url,
        ],
    )
    .ok();
    // The course's SQL refresher on the table ingest loaded, with the result compared to psql's.
    let query = "SELECT count(*) AS trips, sum(total_amount)::text AS total, max(passenger_count) AS most \
                 FROM yellow_taxi_data WHERE pulocationid <> dolocationid";
    let run = tripline(project, &["--json", "sql", "--postgres", &url, "-e", query]).ok();
    let row = run.json()["statements"][0]["rows"][0].clone();
    let expected = psql(&url, query);
    let fields: Vec<&str> = expected.split('|').collect();
    assert_eq!(row["trips"].to_string(), fields[0]);
    assert_eq!(row["total"], fields[1]);
    assert_eq!(row["most"].to_string(), fields[2]);

    // DDL and DML pass through and say what they did; errors carry the server's message.
    let run = tripline(
        project,
        &[
            "sql",
            "--postgres",
            &url,
            "-e",
            "CREATE TABLE notes (id int, body text); INSERT INTO notes VALUES (1, 'a'), (2, 'b')",
        ],
    )
    .ok();
    assert!(run.stderr.contains("2 rows affected"), "{}", run.stderr);
    let shell_run = shell(
        project,
        &["--postgres", &url, "--format", "csv"],
        "\\d\n\\d notes\n",
    );
    assert!(
        shell_run.stdout.contains("public,notes,BASE TABLE"),
        "{}",
        shell_run.stdout
    );
    assert!(
        shell_run.stdout.contains("body,text,YES"),
        "{}",
        shell_run.stdout
    );
    let bad = tripline(
        project,
        &[
            "sql",
            "--postgres",
            &url,
            "-e",
            "SELECT * FROM missing_table",
        ],
    );
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr
            .contains("relation \"missing_table\" does not exist"),
        "{}",
        bad.stderr
    );
    let refused = tripline(
        project,
        &[
            "sql",
            "--postgres",
            "postgres://postgres@127.0.0.1:1/db",
            "-e",
            "SELECT 1",
        ],
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("connection refused"),
        "{}",
        refused.stderr
    );
    let no_url = tripline(project, &["sql", "--postgres", "-e", "SELECT 1"]);
    assert_eq!(no_url.code, 2, "{}", no_url.stderr);
}

/// `tripline sql ... | head`: the reader closes the pipe early; tripline stops quietly, with success and no panic
/// message, in every output format.
#[test]
fn a_reader_that_closes_the_pipe_early_ends_the_output_quietly() {
    use std::io::Read;
    let project = tempfile::tempdir().unwrap();
    for args in [
        vec![
            "--json",
            "sql",
            "-e",
            "SELECT * FROM generate_series(1, 300000)",
        ],
        vec![
            "sql",
            "--format",
            "csv",
            "-e",
            "SELECT * FROM generate_series(1, 300000)",
        ],
        vec!["sql", "-e", "SELECT * FROM generate_series(1, 300000)"],
    ] {
        let mut child = Command::new(bin())
            .arg("-C")
            .arg(project.path())
            .args(&args)
            .env_remove("TRIPLINE_LAKE_ROOT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tripline");
        let mut first = [0u8; 64];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The read end is dropped here: the rest of the output has nowhere to go.
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}\n{stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}
