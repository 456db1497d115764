//! The PostgreSQL store: workers sharing one queue never run the same flow run twice. Needs a server:
//! `eval "$(scripts/pg-throwaway start)"` exports TRIPLINE_TEST_PG_URL; without it these tests print a note and pass.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{TestProject, fast_options, max_overlap};
use tripline_flow::params::Params;
use tripline_flow::store::{PostgresStore, State};
use tripline_flow::{
    CancellationToken, Engine, Project, RunFilter, TaskRegistry, Worker, WorkerOptions,
};

fn pg_url() -> Option<String> {
    let url = std::env::var("TRIPLINE_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("note: TRIPLINE_TEST_PG_URL is not set; skipping this PostgreSQL test");
    }
    url
}

/// An engine on its own PostgreSQL connection, all engines of one test sharing the schema `schema`.
async fn pg_engine(p: &TestProject, url: &str, schema: &str) -> Engine {
    let registry = TaskRegistry::with_builtins();
    let project = Project::load(p.path(), &registry).unwrap();
    let store = Arc::new(
        PostgresStore::connect_with_schema(url, schema)
            .await
            .expect("PostgreSQL reachable"),
    );
    Engine::with_options(project, registry, store, fast_options())
}

fn unique_schema(test: &str) -> String {
    format!("t_{test}_{:08x}", fastrand_u32())
}

fn fastrand_u32() -> u32 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos())
        ^ std::process::id()
}

const MONTHLY: &str = r#"
name: monthly
params:
  month: {type: month}
tasks:
  - id: extract
    type: shell
    command: "sleep 0.05; echo {{ params.month }} {{ run.id }} >> effects"
  - id: report
    type: shell
    depends_on: [extract]
    command: "echo '{\"month\": \"{{ params.month }}\"}'"
"#;

#[tokio::test]
async fn two_workers_share_a_backfill_of_24_months_without_running_anything_twice() {
    let Some(url) = pg_url() else { return };
    let p = TestProject::new(&[("monthly", MONTHLY)]);
    let schema = unique_schema("backfill");
    let a = pg_engine(&p, &url, &schema).await;
    let b = pg_engine(&p, &url, &schema).await;
    let backfill = a
        .backfill("monthly", Params::new(), "month", "2019-01..2020-12", 3)
        .await
        .unwrap();
    assert_eq!(backfill.run_ids.len(), 24);

    let options = WorkerOptions {
        max_runs: 3,
        schedules: false,
        poll_interval: std::time::Duration::from_millis(50),
        ..WorkerOptions::default()
    };
    let (wa, wb) = (
        Worker::new(a.clone(), options.clone()),
        Worker::new(b.clone(), options),
    );
    let (sa, sb) = tokio::join!(
        wa.run_until_idle(CancellationToken::new()),
        wb.run_until_idle(CancellationToken::new())
    );
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    eprintln!(
        "worker a ran {} runs, worker b ran {}",
        sa.runs.len(),
        sb.runs.len()
    );

    let mut executed: Vec<&String> = sa
        .runs
        .iter()
        .chain(sb.runs.iter())
        .map(|(id, _)| id)
        .collect();
    executed.sort();
    let distinct: BTreeSet<&String> = executed.iter().copied().collect();
    assert_eq!(executed.len(), 24, "every run executed once");
    assert_eq!(distinct.len(), 24, "no run executed twice");

    let effects = p.read("effects");
    let lines: Vec<&str> = effects.lines().collect();
    assert_eq!(
        lines.len(),
        24,
        "each month's task ran exactly once:\n{effects}"
    );
    let months: BTreeSet<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(months.len(), 24);

    let runs = a
        .list_runs(&RunFilter {
            backfill_id: Some(backfill.id.clone()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert!(runs.iter().all(|r| r.state == State::Completed), "{runs:?}");
    let intervals = common::work_intervals(&a, &runs).await;
    assert!(
        max_overlap(&intervals) <= 3,
        "backfill limit of 3 exceeded across workers: {intervals:?}"
    );
}

#[tokio::test]
async fn the_postgres_store_records_retries_cache_hits_and_logs() {
    let Some(url) = pg_url() else { return };
    let p = TestProject::new(&[(
        "mixed",
        r#"
name: mixed
tasks:
  - id: flaky
    type: shell
    command: 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo "attempt $n"; [ $n -ge 2 ]'
    retries: 2
    retry_delay: 50ms
  - id: cached
    type: shell
    command: "echo computed >> effects"
    cache: {expire: 1h}
"#,
    )]);
    let engine = pg_engine(&p, &url, &unique_schema("mixed")).await;
    let first = engine.run("mixed", Params::new()).await.unwrap();
    assert_eq!(first.state, State::Completed, "{first:?}");
    assert_eq!(first.task("flaky").unwrap().attempts, 2);
    let detail = engine.show_run(&first.run_id).await.unwrap();
    assert_eq!(
        detail
            .attempts
            .iter()
            .filter(|a| a.task_id == "flaky")
            .count(),
        2
    );
    assert!(detail.logs.iter().any(|l| l.line == "attempt 2"));
    let second = engine.run("mixed", Params::new()).await.unwrap();
    assert_eq!(second.state_of("cached"), State::Cached);
    assert_eq!(p.read("effects"), "computed\n");
}

#[tokio::test]
async fn a_crashed_run_on_postgres_is_detected_and_resumed_once() {
    let Some(url) = pg_url() else { return };
    let p = TestProject::new(&[("monthly", MONTHLY)]);
    let schema = unique_schema("crash");
    let engine = pg_engine(&p, &url, &schema).await;
    let id = engine
        .submit(
            "monthly",
            [("month".to_string(), "2020-02".into())]
                .into_iter()
                .collect(),
            None,
        )
        .await
        .unwrap();
    // Simulate a dead owner: claim it as a process that does not exist, then let crash detection run.
    let ghost = tripline_flow::store::Owner {
        id: "ghost".into(),
        pid: 999_999_999,
        host: tripline_flow::store::host_name(),
    };
    let claimed = engine
        .store()
        .claim_next(&ghost, tripline_flow::store::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, id);
    assert_eq!(engine.detect_crashed().await.unwrap(), vec![id.clone()]);
    let other = pg_engine(&p, &url, &schema).await;
    let (r1, r2) = tokio::join!(engine.resume(&id), other.resume(&id));
    let ok: Vec<_> = [r1, r2].into_iter().filter_map(Result::ok).collect();
    assert!(!ok.is_empty());
    assert_eq!(
        p.read("effects").lines().count(),
        1,
        "the run executed once"
    );
}
