//! Cron schedules with time zones, the worker turning them into queued runs, and backfills on SQLite.

mod common;

use std::str::FromStr;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::{TestProject, max_overlap};
use tripline_flow::params::Params;
use tripline_flow::store::State;
use tripline_flow::{CancellationToken, RunFilter, ScheduleSpec, Worker, WorkerOptions};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::<Utc>::from_str(s).unwrap()
}

#[test]
fn next_due_is_computed_in_the_schedules_time_zone() {
    let monthly = ScheduleSpec::new("0 9 1 * *").in_timezone("America/New_York");
    // 09:00 in New York is 14:00 UTC in winter (EST, -5) and 13:00 UTC in summer (EDT, -4).
    assert_eq!(
        monthly.next_after(utc("2024-01-15T00:00:00Z")).unwrap(),
        utc("2024-02-01T14:00:00Z")
    );
    assert_eq!(
        monthly.next_after(utc("2024-03-15T00:00:00Z")).unwrap(),
        utc("2024-04-01T13:00:00Z")
    );
    // Strictly after: a due time is not due again at itself.
    assert_eq!(
        monthly.next_after(utc("2024-02-01T14:00:00Z")).unwrap(),
        utc("2024-03-01T14:00:00Z")
    );
    let daily_utc = ScheduleSpec::new("30 6 * * *");
    assert_eq!(
        daily_utc.next_after(utc("2024-06-01T07:00:00Z")).unwrap(),
        utc("2024-06-02T06:30:00Z")
    );
    let tokyo = ScheduleSpec::new("0 0 * * MON").in_timezone("Asia/Tokyo");
    // Midnight Monday in Tokyo is 15:00 UTC on Sunday.
    assert_eq!(
        tokyo.next_after(utc("2024-06-01T00:00:00Z")).unwrap(),
        utc("2024-06-02T15:00:00Z")
    );
    let due = monthly
        .due_between(
            utc("2024-01-15T00:00:00Z"),
            utc("2024-06-01T00:00:00Z"),
            100,
        )
        .unwrap();
    assert_eq!(due.len(), 4, "{due:?}");
}

const SCHEDULED: &str = r#"
name: monthly
params:
  month: {type: month, default: "2021-01"}
schedules:
  - cron: "0 9 1 * *"
    timezone: America/New_York
    params: {month: "2022-06"}
tasks:
  - id: t
    type: shell
    command: "echo {{ params.month }} >> effects"
"#;

#[tokio::test]
async fn the_worker_queues_each_due_occurrence_once() {
    let p = TestProject::new(&[("monthly", SCHEDULED)]);
    let engine = p.engine();
    let worker = Worker::new(engine.clone(), WorkerOptions::default());
    let t0 = utc("2024-01-15T00:00:00Z");
    assert!(
        worker.enqueue_due(t0).await.unwrap().is_empty(),
        "a new schedule starts from now, no catch-up"
    );
    let queued = worker
        .enqueue_due(t0 + ChronoDuration::days(50))
        .await
        .unwrap();
    assert_eq!(queued.len(), 2, "Feb 1 and Mar 1 are due");
    // A second worker on the same store sees the same occurrences already queued.
    let other = Worker::new(p.engine(), WorkerOptions::default());
    assert!(
        other
            .enqueue_due(t0 + ChronoDuration::days(50))
            .await
            .unwrap()
            .is_empty()
    );
    let runs = engine.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|r| r.state == State::Scheduled && r.params["month"] == "2022-06")
    );
    let mut due: Vec<i64> = runs.iter().map(|r| r.not_before_ms).collect();
    due.sort();
    assert_eq!(
        due,
        [
            utc("2024-02-01T14:00:00Z").timestamp_millis(),
            utc("2024-03-01T14:00:00Z").timestamp_millis()
        ]
    );

    // The worker runs what is due.
    let stats = Worker::new(
        engine.clone(),
        WorkerOptions {
            schedules: false,
            ..WorkerOptions::default()
        },
    )
    .run_until_idle(CancellationToken::new())
    .await
    .unwrap();
    assert_eq!(stats.runs.len(), 2);
    assert_eq!(p.read("effects"), "2022-06\n2022-06\n");
}

#[tokio::test]
async fn a_backfill_queues_one_run_per_month_and_respects_its_limit() {
    let p = TestProject::new(&[(
        "monthly",
        r#"
name: monthly
params:
  month: {type: month}
  service: {type: enum, values: [yellow, green], default: yellow}
tasks:
  - id: t
    type: shell
    command: "sleep 0.1; echo {{ params.service }} {{ params.month }} >> effects"
"#,
    )]);
    let engine = p.engine();
    let mut base = Params::new();
    base.insert("service".into(), "green".into());
    let backfill = engine
        .backfill("monthly", base, "month", "2019-11..2020-04", 2)
        .await
        .unwrap();
    assert_eq!(backfill.run_ids.len(), 6);
    let stats = Worker::new(
        engine.clone(),
        WorkerOptions {
            max_runs: 4,
            schedules: false,
            ..WorkerOptions::default()
        },
    )
    .run_until_idle(CancellationToken::new())
    .await
    .unwrap();
    assert_eq!(stats.runs.len(), 6);
    assert!(stats.runs.iter().all(|(_, s)| *s == State::Completed));
    let mut lines: Vec<String> = p.read("effects").lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "green 2019-11",
            "green 2019-12",
            "green 2020-01",
            "green 2020-02",
            "green 2020-03",
            "green 2020-04"
        ]
    );
    let runs = engine
        .list_runs(&RunFilter {
            backfill_id: Some(backfill.id.clone()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    let intervals = common::work_intervals(&engine, &runs).await;
    assert!(
        max_overlap(&intervals) <= 2,
        "backfill limit of 2 exceeded: {intervals:?}"
    );
}

#[tokio::test]
async fn a_bad_backfill_range_is_a_param_error() {
    let p = TestProject::new(&[("monthly", SCHEDULED)]);
    let err = p
        .engine()
        .backfill("monthly", Params::new(), "month", "2020-13..2021-02", 2)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "param `month`: `2020-13` is not a month like 2019-01"
    );
    let err = p
        .engine()
        .backfill("monthly", Params::new(), "colour", "a,b", 2)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "param `colour`: flow `monthly` has no such parameter"
    );
}

#[tokio::test]
async fn cancelling_a_queued_run_cancels_it_at_once() {
    let p = TestProject::new(&[("monthly", SCHEDULED)]);
    let engine = p.engine();
    let id = engine.submit("monthly", Params::new(), None).await.unwrap();
    assert_eq!(engine.cancel(&id).await.unwrap(), State::Cancelled);
    let stats = Worker::new(
        engine.clone(),
        WorkerOptions {
            schedules: false,
            ..WorkerOptions::default()
        },
    )
    .run_until_idle(CancellationToken::new())
    .await
    .unwrap();
    assert!(stats.runs.is_empty());
}
