//! Bad input gets a clear error and loses nothing: the corpus in `tests/bad-input/cases.toml`, plus the cases that
//! need a live system (truncated gzip, HTTP 404, refused PostgreSQL, full disk).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use common::*;

#[derive(serde::Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    file: String,
    kind: String,
    exit: i32,
    stderr: Option<String>,
    account: Option<[u64; 3]>,
    #[serde(default)]
    quarantined: Vec<Quarantined>,
}

#[derive(serde::Deserialize)]
struct Quarantined {
    line: u64,
    column: String,
    value: String,
    reason: String,
}

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-input")
}

fn lake_parquet_files(project: &Path) -> Vec<String> {
    let root = project.join("lake/raw");
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                found.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    found
}

#[test]
fn every_corpus_case_gives_its_error_or_account() {
    let text = std::fs::read_to_string(corpus_dir().join("cases.toml")).unwrap();
    let corpus: Corpus = toml::from_str(&text).unwrap();
    for case in corpus.case {
        let project = tempfile::tempdir().unwrap();
        let file = corpus_dir().join(&case.file);
        let run = tripline(
            project.path(),
            &[
                "--json",
                "ingest",
                file.to_str().unwrap(),
                "--kind",
                &case.kind,
            ],
        );
        assert_eq!(
            run.code, case.exit,
            "{}: stdout {} stderr {}",
            case.file, run.stdout, run.stderr
        );
        if let Some(expected) = &case.stderr {
            assert!(
                run.stderr.contains(expected),
                "{}: stderr was:\n{}",
                case.file,
                run.stderr
            );
            assert!(
                run.stderr.contains(&case.file),
                "{}: the error must name the file:\n{}",
                case.file,
                run.stderr
            );
            assert!(
                lake_parquet_files(project.path()).is_empty(),
                "{}: a failed load left files",
                case.file
            );
        }
        if let Some([read, written, quarantined]) = case.account {
            let json = run.json();
            let a = &json["total"];
            assert_eq!(
                (
                    a["read"].as_u64(),
                    a["written"].as_u64(),
                    a["quarantined"].as_u64()
                ),
                (Some(read), Some(written), Some(quarantined)),
                "{}",
                case.file
            );
        }
        if !case.quarantined.is_empty() {
            let q = project
                .path()
                .join("quarantine/yellow")
                .join(format!("{}.quarantine.csv", case.file));
            let mut reader =
                csv::Reader::from_path(&q).unwrap_or_else(|e| panic!("{}: {e}", q.display()));
            let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            assert_eq!(rows.len(), case.quarantined.len(), "{}", case.file);
            for (row, want) in rows.iter().zip(&case.quarantined) {
                assert_eq!(&row[0], case.file.as_str());
                assert_eq!(row[1].parse::<u64>().unwrap(), want.line, "{row:?}");
                assert_eq!(
                    (&row[2], &row[3], &row[4]),
                    (
                        want.column.as_str(),
                        want.value.as_str(),
                        want.reason.as_str()
                    )
                );
                let original = std::fs::read_to_string(&file).unwrap();
                let line = original.lines().nth(want.line as usize - 1).unwrap();
                assert_eq!(&row[5], line, "the whole record is kept");
            }
        }
    }
}

#[test]
fn dirty_generated_rows_are_all_quarantined_and_the_clean_ones_all_load() {
    let project = tempfile::tempdir().unwrap();
    let csv = project.path().join("yellow_tripdata_2021-06.csv");
    let generated = datagen(
        project.path(),
        "yellow",
        "2021-06",
        30_000,
        "csv",
        &csv,
        &["--dirty-rate", "0.01"],
    );
    let dirty = generated["dirty_rows"].as_u64().unwrap();
    assert!(dirty > 100, "{generated}");
    let report = ingest_json(project.path(), csv.to_str().unwrap(), "yellow");
    assert_eq!(report["total"]["read"], 30_000);
    assert_eq!(report["total"]["quarantined"].as_u64().unwrap(), dirty);
    assert_eq!(report["total"]["written"].as_u64().unwrap(), 30_000 - dirty);
    let q = project
        .path()
        .join("quarantine/yellow/yellow_tripdata_2021-06.csv.quarantine.csv");
    let lines = std::fs::read_to_string(q).unwrap().lines().count() as u64;
    assert_eq!(lines, dirty + 1);
}

#[test]
fn a_truncated_gzip_fails_plainly_and_commits_nothing() {
    let project = tempfile::tempdir().unwrap();
    let gz = project.path().join("yellow_tripdata_2021-07.csv.gz");
    datagen(
        project.path(),
        "yellow",
        "2021-07",
        20_000,
        "csv.gz",
        &gz,
        &[],
    );
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    let run = tripline(
        project.path(),
        &["ingest", gz.to_str().unwrap(), "--kind", "yellow"],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("yellow_tripdata_2021-07.csv.gz") && run.stderr.contains("truncated"),
        "{}",
        run.stderr
    );
    assert!(lake_parquet_files(project.path()).is_empty());
}

#[test]
fn a_missing_file_is_named() {
    let project = tempfile::tempdir().unwrap();
    let run = tripline(
        project.path(),
        &[
            "ingest",
            "nope/yellow_tripdata_2021-01.csv",
            "--kind",
            "yellow",
        ],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("nope/yellow_tripdata_2021-01.csv: file not found"),
        "{}",
        run.stderr
    );
    let run = tripline(
        project.path(),
        &["ingest", "nope/*.csv", "--kind", "yellow"],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no files match 'nope/*.csv'"),
        "{}",
        run.stderr
    );
}

/// A one-shot HTTP server on 127.0.0.1 serving `body` at `/ok/<name>` and 404 elsewhere.
pub fn serve(name: &'static str, body: Vec<u8>, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            if path == format!("/ok/{name}") {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                let _ = stream.write_all(&body);
            } else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    format!("http://{addr}")
}

#[test]
fn an_http_source_streams_in_and_a_404_is_named() {
    let project = tempfile::tempdir().unwrap();
    let gz = project.path().join("green_tripdata_2021-08.csv.gz");
    datagen(
        project.path(),
        "green",
        "2021-08",
        15_000,
        "csv.gz",
        &gz,
        &[],
    );
    let base = serve(
        "green_tripdata_2021-08.csv.gz",
        std::fs::read(&gz).unwrap(),
        2,
    );
    let url = format!("{base}/ok/green_tripdata_2021-08.csv.gz");
    let report = ingest_json(project.path(), &url, "green");
    assert_eq!(report["total"]["written"], 15_000);
    assert_eq!(report["sources"][0]["format"], "csv.gz");
    assert!(
        project
            .path()
            .join("lake/raw/green/year=2021/month=08/green_tripdata_2021-08.parquet")
            .exists()
    );

    let missing = format!("{base}/trip-data/green_tripdata_2030-01.csv.gz");
    let run = tripline(project.path(), &["ingest", &missing, "--kind", "green"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&missing) && run.stderr.contains("HTTP 404"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_refused_postgres_connection_names_the_server() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again: nobody listens
    let project = tempfile::tempdir().unwrap();
    let sample = shared_data().join("samples/rides_yellow_2020-07_head265.csv");
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let run = tripline(
        project.path(),
        &[
            "ingest",
            sample.to_str().unwrap(),
            "--kind",
            "yellow",
            "--to",
            &url,
        ],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!("127.0.0.1:{port}"))
            && run.stderr.contains("is the server running"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_full_disk_is_named_and_leaves_no_partial_file() {
    // A 1 MiB tmpfs as the lake: needs root and mount, which the test command has; say so when it is not possible.
    let project = tempfile::tempdir().unwrap();
    let lake = project.path().join("small-lake");
    std::fs::create_dir_all(&lake).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            lake.to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a small tmpfs here (not root?)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&lake);
    let csv = project.path().join("yellow_tripdata_2021-09.csv");
    datagen(
        project.path(),
        "yellow",
        "2021-09",
        200_000,
        "csv",
        &csv,
        &[],
    );
    let run = tripline(
        project.path(),
        &[
            "ingest",
            csv.to_str().unwrap(),
            "--kind",
            "yellow",
            "--to",
            lake.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("disk full"), "{}", run.stderr);
    let left: Vec<String> = lake_parquet_files(&lake.parent().unwrap().join("small-lake-view"));
    assert!(left.is_empty());
    let partition = lake.join("raw/yellow/year=2021/month=09");
    let files: Vec<_> = std::fs::read_dir(&partition)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        files.is_empty(),
        "no committed or staged file may remain: {files:?}"
    );
}

#[test]
fn usage_and_configuration_errors_exit_2_and_name_what_is_wrong() {
    let project = tempfile::tempdir().unwrap();
    let run = tripline(project.path(), &["ingest", "x.csv", "--kind", "taxi"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("unknown kind 'taxi'"), "{}", run.stderr);

    std::fs::write(project.path().join("tripline.toml"), "[lake]\nroot = 5\n").unwrap();
    let run = tripline(project.path(), &["ingest", "x.csv", "--kind", "yellow"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("tripline.toml") && run.stderr.contains("root"),
        "{}",
        run.stderr
    );

    std::fs::remove_file(project.path().join("tripline.toml")).unwrap();
    let out = std::process::Command::new(bin())
        .arg("-C")
        .arg(project.path())
        .args(["run"])
        .env("TRIPLINE_PIPELINE_MONTH", "2021-13")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TRIPLINE_") && stderr.contains("2021-13"),
        "{stderr}"
    );

    let sample = shared_data().join("samples/rides_yellow_2020-07_head265.csv");
    let run = tripline(
        project.path(),
        &[
            "ingest",
            sample.to_str().unwrap(),
            "--kind",
            "yellow",
            "--mode",
            "merge",
        ],
    );
    assert_eq!(run.code, 2, "--mode merge does not apply to the lake");
    assert!(
        run.stderr.contains("--mode merge applies to PostgreSQL"),
        "{}",
        run.stderr
    );
}
