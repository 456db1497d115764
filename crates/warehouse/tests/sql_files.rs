//! Runs the sqllogictest-style files in `tests/sql/`: each record is `statement ok`, `statement error <text>` or
//! `query` followed by SQL, and for queries `----` and the expected rows (columns joined by ` | `). `LAKE` in an
//! expected value stands for the lake root of the run.

use std::path::Path;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use tripline_warehouse::{RunMode, Warehouse};

enum Record {
    Ok(String),
    Error(String, String),
    Query(String, Vec<String>),
}

fn parse(text: &str) -> Vec<(usize, Record)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        i += 1;
        let mut sql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            sql.push(lines[i]);
            i += 1;
        }
        let sql = sql.join("\n");
        let record = if line == "statement ok" {
            Record::Ok(sql)
        } else if let Some(expected) = line.strip_prefix("statement error ") {
            Record::Error(sql, expected.to_string())
        } else if line == "query" {
            let mut rows = Vec::new();
            if i < lines.len() && lines[i].trim() == "----" {
                i += 1;
                while i < lines.len() && !lines[i].trim().is_empty() {
                    rows.push(lines[i].trim_end().to_string());
                    i += 1;
                }
            }
            Record::Query(sql, rows)
        } else {
            panic!("line {start}: unknown record '{line}'");
        };
        out.push((start, record));
    }
    out
}

async fn run_file(path: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open("lake", dir.path()).await.unwrap();
    let lake = warehouse.lake().local_root().unwrap().display().to_string();
    let lake = lake.trim_end_matches('/').to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.display();
    for (line, record) in parse(&text) {
        match record {
            Record::Ok(sql) => {
                if let Err(e) = warehouse.execute(&sql, RunMode::Run).await {
                    panic!("{name}:{line}: {sql}\nfailed: {e}");
                }
            }
            Record::Error(sql, expected) => match warehouse.execute(&sql, RunMode::Run).await {
                Ok(_) => panic!("{name}:{line}: {sql}\nexpected an error containing '{expected}'"),
                Err(e) => assert!(
                    e.to_string().contains(&expected),
                    "{name}:{line}: {sql}\nerror '{e}' does not contain '{expected}'"
                ),
            },
            Record::Query(sql, expected) => {
                let result = warehouse
                    .execute(&sql, RunMode::Run)
                    .await
                    .unwrap_or_else(|e| panic!("{name}:{line}: {sql}\nfailed: {e}"));
                let options = FormatOptions::default().with_null("NULL");
                let mut rows = Vec::new();
                for batch in &result.batches {
                    let formatters: Vec<_> = batch
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                        .collect();
                    for r in 0..batch.num_rows() {
                        let cells: Vec<String> =
                            formatters.iter().map(|f| f.value(r).to_string()).collect();
                        rows.push(cells.join(" | "));
                    }
                }
                let expected: Vec<String> =
                    expected.iter().map(|r| r.replace("LAKE", &lake)).collect();
                assert_eq!(rows, expected, "{name}:{line}: {sql}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        run_file(&file).await;
    }
}
