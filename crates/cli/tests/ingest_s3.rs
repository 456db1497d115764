//! The lake on S3: the same load against a real S3 protocol server on 127.0.0.1 (moto, from PyPI; the test
//! command installs it).

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Moto(Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]'; scripts/test installs it)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto(child, port)
}

/// Run Python with boto3/pyarrow against the server and return stdout.
fn python(port: u16, code: &str) -> String {
    let prelude = format!(
        "import boto3, pyarrow.parquet as pq, pyarrow.fs as fs\n\
         s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', aws_access_key_id='test', \
         aws_secret_access_key='test', region_name='us-east-1')\n\
         pafs = fs.S3FileSystem(endpoint_override='127.0.0.1:{port}', scheme='http', access_key='test', \
         secret_key='test', region='us-east-1')\n"
    );
    let out = Command::new("python3")
        .args(["-c", &(prelude + code)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ingest_s3(project: &std::path::Path, port: u16, file: &std::path::Path) -> Run {
    on_s3(
        project,
        port,
        &[
            "--json",
            "ingest",
            file.to_str().unwrap(),
            "--kind",
            "yellow",
            "--to",
            "s3://tripline/lake",
        ],
    )
}

/// Run tripline with the lake root on the test server (`TRIPLINE_LAKE_ROOT=s3://tripline/lake`).
fn on_s3(project: &std::path::Path, port: u16, args: &[&str]) -> Run {
    Command::new(bin())
        .arg("-C")
        .arg(project)
        .args(args)
        .env("TRIPLINE_LAKE_ROOT", "s3://tripline/lake")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap()
        .into()
}

#[test]
fn a_load_into_an_s3_lake_commits_one_object_per_source_and_reruns_replace_it() {
    let moto = start_moto();
    python(moto.1, "s3.create_bucket(Bucket='tripline')");
    let project = tempfile::tempdir().unwrap();
    let sample = shared_data().join("samples/yellow_tripdata_2021-01_head22792.csv");
    for _ in 0..2 {
        let report = ingest_s3(project.path(), moto.1, &sample).ok().json();
        assert_eq!(report["total"]["written"], 22_792);
        assert!(
            report["sources"][0]["committed"]["target"]
                .as_str()
                .unwrap()
                .starts_with("s3://tripline/lake/raw/yellow/")
        );
    }
    let keys = python(
        moto.1,
        "print('\\n'.join(sorted(o['Key'] for o in s3.list_objects_v2(Bucket='tripline')['Contents'])))",
    );
    assert_eq!(
        keys,
        "lake/_tripline/loads/yellow/yellow_tripdata_2021-01_head22792.parquet.json\n\
         lake/raw/yellow/year=2021/month=01/yellow_tripdata_2021-01_head22792.parquet"
    );
    let rows = python(
        moto.1,
        "print(pq.read_table('tripline/lake/raw/yellow/year=2021/month=01/yellow_tripdata_2021-01_head22792.parquet', \
         filesystem=pafs).num_rows)",
    );
    assert_eq!(rows, "22792");
}

#[test]
fn a_missing_bucket_is_named() {
    let moto = start_moto();
    let project = tempfile::tempdir().unwrap();
    let sample = shared_data().join("samples/rides_yellow_2020-07_head265.csv");
    let run = ingest_s3(project.path(), moto.1, &sample);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("s3://tripline/lake"), "{}", run.stderr);
}

#[test]
fn the_warehouse_on_s3_creates_partitioned_delta_tables_merges_and_reads_them_back() {
    let moto = start_moto();
    python(moto.1, "s3.create_bucket(Bucket='tripline')");
    let project = tempfile::tempdir().unwrap();
    let project = project.path();
    let sample = shared_data().join("samples/yellow_tripdata_2021-01_head22792.csv");
    ingest_s3(project, moto.1, &sample).ok();
    let script = "CREATE EXTERNAL TABLE trips.ext OPTIONS (format = 'PARQUET', uris = ['s3://tripline/lake/raw/yellow/*']);
                  CREATE TABLE trips.yellow PARTITION BY DATE(tpep_pickup_datetime) CLUSTER BY VendorID AS
                    SELECT * FROM trips.ext;
                  DELETE FROM trips.yellow WHERE VendorID = 1;
                  MERGE INTO trips.yellow t USING (SELECT * FROM trips.ext WHERE VendorID = 1) s
                    ON t.tpep_pickup_datetime = s.tpep_pickup_datetime AND t.VendorID = s.VendorID
                    WHEN NOT MATCHED THEN INSERT ROW;
                  SELECT count(*) AS n, round(sum(total_amount), 2) AS total FROM trips.yellow;
                  SELECT count(*) AS n, round(sum(total_amount), 2) AS total FROM trips.ext";
    let report = on_s3(project, moto.1, &["--json", "sql", "-e", script])
        .ok()
        .json();
    let statements = report["statements"].as_array().unwrap();
    assert_eq!(statements[4]["rows"], statements[5]["rows"], "{report:#}");
    assert_eq!(statements[4]["rows"][0]["n"], 22_792);
    assert!(statements[4]["bytes_scanned"].as_u64().unwrap() > 0);
    // A fresh process finds the table in the bucket's catalog; the Delta log is in the bucket.
    let again = on_s3(
        project,
        moto.1,
        &[
            "--json",
            "sql",
            "-e",
            "SELECT count(*) AS n FROM trips.yellow",
        ],
    )
    .ok()
    .json();
    assert_eq!(again["statements"][0]["rows"][0]["n"], 22_792);
    let log = python(
        moto.1,
        "print(sum(1 for o in s3.list_objects_v2(Bucket='tripline', Prefix='lake/warehouse/trips/yellow/_delta_log/')['Contents'] if o['Key'].endswith('.json')))",
    );
    assert_eq!(log, "3", "create, delete and merge: three commits");
    // Nothing was written to the project directory: the lake is the bucket.
    assert!(!project.join("lake").exists());
}
