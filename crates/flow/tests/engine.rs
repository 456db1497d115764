//! The engine's behaviour on the SQLite store: retries, timeouts, caching, failure propagation, cancellation,
//! templating, subflows, concurrency, logs and downloads.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{TestProject, max_overlap};
use serde_json::json;
use tripline_flow::params::{Params, parse_assignments};
use tripline_flow::store::State;
use tripline_flow::{CancellationToken, FlowError, RunFilter};

#[tokio::test]
async fn retries_happen_with_the_configured_delays() {
    let p = TestProject::new(&[(
        "flaky",
        r#"
name: flaky
tasks:
  - id: third_time_lucky
    type: shell
    # fails on attempts 1 and 2, succeeds on 3
    command: 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo "attempt $n"; [ $n -ge 3 ]'
    retries: 3
    retry_delay: [50ms, 120ms]
"#,
    )]);
    let engine = p.engine();
    let report = engine.run("flaky", Params::new()).await.unwrap();
    assert_eq!(report.state, State::Completed, "{report:?}");
    let task = report.task("third_time_lucky").unwrap();
    assert_eq!(task.attempts, 3);

    let detail = engine.show_run(&report.run_id).await.unwrap();
    let attempts = &detail.attempts;
    assert_eq!(
        attempts.iter().map(|a| a.state).collect::<Vec<_>>(),
        [State::Failed, State::Failed, State::Completed]
    );
    let gap1 = attempts[1].started_ms - attempts[0].ended_ms.unwrap();
    let gap2 = attempts[2].started_ms - attempts[1].ended_ms.unwrap();
    assert!(gap1 >= 50, "first retry waited {gap1}ms, configured 50ms");
    assert!(
        gap2 >= 120,
        "second retry waited {gap2}ms, configured 120ms"
    );
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("command exited with code 1")
    );
    // Each attempt's output is in the log, tagged with its attempt number.
    let lines: Vec<(u32, &str)> = detail
        .logs
        .iter()
        .filter(|l| l.stream == "stdout")
        .map(|l| (l.attempt, l.line.as_str()))
        .collect();
    assert_eq!(
        lines,
        [(1, "attempt 1"), (2, "attempt 2"), (3, "attempt 3")]
    );
}

#[tokio::test]
async fn exhausted_retries_fail_the_task_with_the_last_error() {
    let p = TestProject::new(&[(
        "always_fails",
        r#"
name: always_fails
tasks:
  - id: boom
    type: shell
    command: "echo bad things >&2; exit 7"
    retries: 2
    retry_delay: {exponential: 10ms, max: 40ms, jitter: 0.5}
"#,
    )]);
    let report = p.engine().run("always_fails", Params::new()).await.unwrap();
    assert_eq!(report.state, State::Failed);
    let t = report.task("boom").unwrap();
    assert_eq!(t.attempts, 3);
    assert_eq!(
        t.reason.as_deref(),
        Some("command exited with code 7: bad things (after 3 attempts)")
    );
    assert_eq!(
        report.reason.as_deref(),
        Some("task `boom` failed: command exited with code 7: bad things (after 3 attempts)")
    );
}

#[tokio::test]
async fn a_failing_task_makes_downstream_not_run_with_the_reason() {
    let p = TestProject::new(&[(
        "chain",
        r#"
name: chain
tasks:
  - id: extract
    type: shell
    command: "exit 3"
  - id: load
    type: shell
    depends_on: [extract]
    command: "echo load >> effects"
  - id: report
    type: shell
    depends_on: [load]
    command: "echo report >> effects"
  - id: independent
    type: shell
    command: "echo independent >> effects"
"#,
    )]);
    let report = p.engine().run("chain", Params::new()).await.unwrap();
    assert_eq!(report.state, State::Failed);
    assert_eq!(report.state_of("extract"), State::Failed);
    assert_eq!(report.state_of("load"), State::NotRun);
    assert_eq!(
        report.task("load").unwrap().reason.as_deref(),
        Some("upstream task `extract` failed")
    );
    assert_eq!(report.state_of("report"), State::NotRun);
    assert_eq!(
        report.task("report").unwrap().reason.as_deref(),
        Some("upstream task `load` notrun")
    );
    assert_eq!(report.state_of("independent"), State::Completed);
    assert_eq!(p.read("effects"), "independent\n");
    assert_eq!(report.task("load").unwrap().attempts, 0);
}

#[tokio::test]
async fn a_cached_task_is_skipped_on_rerun_and_recomputed_when_inputs_change() {
    let p = TestProject::new(&[(
        "cached",
        r#"
name: cached
params:
  month: {type: month, default: "2021-01"}
tasks:
  - id: expensive
    type: shell
    command: "echo {{ params.month }} >> computed; echo '{\"month\": \"{{ params.month }}\"}'"
    cache: {expire: 1d}
  - id: after
    type: shell
    command: "echo {{ tasks.expensive.output.json.month }}"
"#,
    )]);
    let engine = p.engine();
    let first = engine.run("cached", Params::new()).await.unwrap();
    assert_eq!(first.state_of("expensive"), State::Completed);
    let again = engine.run("cached", Params::new()).await.unwrap();
    assert_eq!(again.state, State::Completed);
    assert_eq!(again.state_of("expensive"), State::Cached);
    assert_eq!(
        again.task("expensive").unwrap().output,
        first.task("expensive").unwrap().output,
        "cached output is reused"
    );
    assert_eq!(
        again.task("after").unwrap().output.as_ref().unwrap()["stdout"],
        "2021-01"
    );
    assert_eq!(
        p.read("computed"),
        "2021-01\n",
        "the cached task did not run again"
    );

    let changed = engine
        .run("cached", parse_assignments(["month=2021-02"]).unwrap())
        .await
        .unwrap();
    assert_eq!(
        changed.state_of("expensive"),
        State::Completed,
        "new inputs, new cache key"
    );
    assert_eq!(p.read("computed"), "2021-01\n2021-02\n");
}

#[tokio::test]
async fn a_cached_result_expires() {
    let p = TestProject::new(&[(
        "short_cache",
        r#"
name: short_cache
tasks:
  - id: t
    type: shell
    command: "echo run >> computed"
    cache: {expire: 300ms}
"#,
    )]);
    let engine = p.engine();
    assert_eq!(
        engine
            .run("short_cache", Params::new())
            .await
            .unwrap()
            .state_of("t"),
        State::Completed
    );
    assert_eq!(
        engine
            .run("short_cache", Params::new())
            .await
            .unwrap()
            .state_of("t"),
        State::Cached
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        engine
            .run("short_cache", Params::new())
            .await
            .unwrap()
            .state_of("t"),
        State::Completed
    );
    assert_eq!(p.read("computed"), "run\nrun\n");
}

#[tokio::test]
async fn an_upstream_result_change_invalidates_the_cache() {
    let p = TestProject::new(&[(
        "upstream",
        r#"
name: upstream
tasks:
  - id: source
    type: shell
    command: "cat version"
  - id: derived
    type: shell
    depends_on: [source]
    command: "echo derived >> computed"
    cache: true
"#,
    )]);
    std::fs::write(p.file("version"), "v1\n").unwrap();
    let engine = p.engine();
    engine.run("upstream", Params::new()).await.unwrap();
    assert_eq!(
        engine
            .run("upstream", Params::new())
            .await
            .unwrap()
            .state_of("derived"),
        State::Cached
    );
    std::fs::write(p.file("version"), "v2\n").unwrap();
    assert_eq!(
        engine
            .run("upstream", Params::new())
            .await
            .unwrap()
            .state_of("derived"),
        State::Completed
    );
    assert_eq!(p.read("computed"), "derived\nderived\n");
}

#[tokio::test]
async fn a_timed_out_attempt_fails_and_is_retried() {
    let p = TestProject::new(&[(
        "slow",
        r#"
name: slow
tasks:
  - id: sleepy
    type: shell
    command: "sleep 5"
    timeout: 200ms
    retries: 1
    retry_delay: 10ms
"#,
    )]);
    let started = Instant::now();
    let report = p.engine().run("slow", Params::new()).await.unwrap();
    assert_eq!(report.state_of("sleepy"), State::Failed);
    let t = report.task("sleepy").unwrap();
    assert_eq!(t.attempts, 2);
    assert_eq!(
        t.reason.as_deref(),
        Some("timed out after 200ms (after 2 attempts)")
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn cancellation_leaves_running_tasks_cancelled() {
    let p = TestProject::new(&[(
        "long",
        r#"
name: long
tasks:
  - id: quick
    type: shell
    command: "echo quick"
  - id: slow
    type: shell
    depends_on: [quick]
    command: "sleep 30"
  - id: after
    type: shell
    depends_on: [slow]
    command: "echo after >> effects"
"#,
    )]);
    let engine = p.engine();
    let token = CancellationToken::new();
    let run = tokio::spawn({
        let (engine, token) = (engine.clone(), token.clone());
        async move { engine.run_with_cancel("long", Params::new(), token).await }
    });
    wait_for_task_state(&engine, "slow", State::Running).await;
    token.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.state, State::Cancelled);
    assert_eq!(report.state_of("quick"), State::Completed);
    assert_eq!(report.state_of("slow"), State::Cancelled);
    assert_eq!(
        report.task("slow").unwrap().reason.as_deref(),
        Some("cancelled while running")
    );
    assert_eq!(report.state_of("after"), State::Cancelled);
    assert_eq!(p.read("effects"), "");
    // The store agrees with the report.
    let detail = engine.show_run(&report.run_id).await.unwrap();
    assert_eq!(detail.run.state, State::Cancelled);
    assert!(detail.attempts.iter().all(|a| a.state != State::Running));
}

#[tokio::test]
async fn cancel_by_run_id_stops_a_run_and_resume_finishes_it() {
    let p = TestProject::new(&[(
        "long",
        r#"
name: long
tasks:
  - id: slow
    type: shell
    command: "if [ -f go ]; then echo fast; else sleep 30; fi"
  - id: after
    type: shell
    depends_on: [slow]
    command: "echo after >> effects"
"#,
    )]);
    let engine = p.engine();
    let run = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run("long", Params::new()).await }
    });
    let run_id = wait_for_task_state(&engine, "slow", State::Running).await;
    assert_eq!(
        engine.cancel(&run_id).await.unwrap(),
        State::Running,
        "an active run is flagged"
    );
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.state, State::Cancelled);
    assert_eq!(report.state_of("slow"), State::Cancelled);
    assert_eq!(report.state_of("after"), State::Cancelled);

    std::fs::write(p.file("go"), "").unwrap();
    let resumed = engine.resume(&run_id).await.unwrap();
    assert_eq!(resumed.state, State::Completed);
    assert_eq!(resumed.task("slow").unwrap().attempts, 2);
    assert_eq!(p.read("effects"), "after\n");
}

async fn wait_for_task_state(engine: &tripline_flow::Engine, task: &str, state: State) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let runs = engine
            .store()
            .list_flow_runs(&RunFilter::default())
            .await
            .unwrap();
        if let Some(run) = runs.first() {
            let tasks = engine.store().task_runs(&run.id).await.unwrap();
            if tasks.iter().any(|t| t.task_id == task && t.state == state) {
                return run.id.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "task {task} never reached {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn templates_see_params_and_upstream_outputs() {
    let p = TestProject::new(&[(
        "templated",
        r#"
name: templated
params:
  month: {type: month}
  service: {type: enum, values: [yellow, green], default: yellow}
tasks:
  - id: locate
    type: shell
    command: "echo some chatter; echo '{\"path\": \"{{ params.service }}_{{ params.month }}.csv\"}'"
  - id: use
    type: shell
    # no depends_on: the reference to tasks.locate makes it a dependency
    command: "echo {{ tasks.locate.output.json.path }} in {{ flow.name }}"
"#,
    )]);
    let report = p
        .engine()
        .run("templated", parse_assignments(["month=2021-3"]).unwrap())
        .await
        .unwrap();
    assert_eq!(report.state, State::Completed, "{report:?}");
    let out = report.task("use").unwrap().output.clone().unwrap();
    assert_eq!(
        out,
        json!({"exit_code": 0, "stdout": "yellow_2021-03.csv in templated"})
    );
    assert_eq!(
        report.task("locate").unwrap().output.as_ref().unwrap()["json"],
        json!({"path": "yellow_2021-03.csv"})
    );
}

#[tokio::test]
async fn bad_params_are_rejected_before_anything_runs() {
    let p = TestProject::new(&[(
        "typed",
        r#"
name: typed
params:
  month: {type: month}
  n: {type: int, default: 3}
tasks:
  - id: t
    type: shell
    command: "echo {{ params.month }} {{ params.n }}"
"#,
    )]);
    let engine = p.engine();
    let err = engine.run("typed", Params::new()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "param `month`: missing required parameter (type month); pass month=..."
    );
    let err = engine
        .run(
            "typed",
            parse_assignments(["month=2021-01", "n=many"]).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"param `n`: expected an integer, got "many""#
    );
    let err = engine.run("nope", Params::new()).await.unwrap_err();
    assert!(matches!(err, FlowError::UnknownFlow(..)), "{err}");
    assert!(
        engine
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_subflow_runs_as_a_child_run_with_its_params() {
    let p = TestProject::new(&[
        (
            "child",
            r#"
name: child
params:
  month: {type: month}
tasks:
  - id: work
    type: shell
    command: "echo '{\"done\": \"{{ params.month }}\"}'"
"#,
        ),
        (
            "parent",
            r#"
name: parent
params:
  month: {type: month, default: "2020-05"}
tasks:
  - id: sub
    type: flow
    flow: child
    params: {month: "{{ params.month }}"}
  - id: after
    type: shell
    command: "echo {{ tasks.sub.output.outputs.work.json.done }}"
"#,
        ),
    ]);
    let engine = p.engine();
    let report = engine.run("parent", Params::new()).await.unwrap();
    assert_eq!(report.state, State::Completed, "{report:?}");
    assert_eq!(
        report.task("after").unwrap().output.as_ref().unwrap()["stdout"],
        "2020-05"
    );
    let child_id = report.task("sub").unwrap().output.as_ref().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let child = engine.show_run(&child_id).await.unwrap();
    assert_eq!(child.run.parent_id.as_deref(), Some(report.run_id.as_str()));
    assert_eq!(child.run.params["month"], "2020-05");
    let top = engine
        .list_runs(&RunFilter {
            top_level_only: true,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(top.len(), 1);
}

#[tokio::test]
async fn concurrency_is_bounded_by_the_flow_limit() {
    let tasks: String = (0..5)
        .map(|i| format!("  - id: t{i}\n    type: shell\n    command: \"sleep 0.2\"\n"))
        .collect();
    let p = TestProject::new(&[(
        "wide",
        &format!("name: wide\nconcurrency: 2\ntasks:\n{tasks}"),
    )]);
    let engine = p.engine();
    let report = engine.run("wide", Params::new()).await.unwrap();
    assert_eq!(report.state, State::Completed);
    let detail = engine.show_run(&report.run_id).await.unwrap();
    let intervals: Vec<(i64, i64)> = detail
        .attempts
        .iter()
        .map(|a| (a.started_ms, a.ended_ms.unwrap()))
        .collect();
    assert_eq!(max_overlap(&intervals), 2);
}

#[tokio::test]
async fn show_run_has_states_attempts_timings_and_logs() {
    let p = TestProject::new(&[(
        "hello",
        "name: hello\ntasks:\n  - id: greet\n    type: shell\n    command: \"echo hello; echo oops >&2\"\n",
    )]);
    let engine = p.engine();
    let report = engine.run("hello", Params::new()).await.unwrap();
    let detail = engine.show_run(&report.run_id).await.unwrap();
    assert_eq!(detail.run.state, State::Completed);
    assert!(detail.run.duration().is_some());
    assert_eq!(detail.tasks[0].state, State::Completed);
    assert!(detail.tasks[0].started_ms.unwrap() <= detail.tasks[0].ended_ms.unwrap());
    let logs: Vec<(&str, &str)> = detail
        .logs
        .iter()
        .map(|l| (l.stream.as_str(), l.line.as_str()))
        .collect();
    assert!(
        logs.contains(&("info", "$ echo hello; echo oops >&2")),
        "{logs:?}"
    );
    assert!(logs.contains(&("stdout", "hello")), "{logs:?}");
    assert!(logs.contains(&("stderr", "oops")), "{logs:?}");
}

#[tokio::test]
async fn download_fetches_a_url_into_a_file() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let resp = if req.starts_with("GET /data/trips.csv ") {
                let body = "a,b\n1,2\n";
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            s.write_all(resp.as_bytes()).unwrap();
        }
    });
    let flow = format!(
        r#"
name: fetch
params:
  file: {{type: string, default: trips.csv}}
tasks:
  - id: download
    type: download
    url: "http://127.0.0.1:{port}/data/{{{{ params.file }}}}"
  - id: count
    type: shell
    command: "wc -l < {{{{ tasks.download.output.path }}}}"
"#
    );
    let p = TestProject::new(&[("fetch", &flow)]);
    let engine = p.engine();
    let report = engine.run("fetch", Params::new()).await.unwrap();
    assert_eq!(report.state, State::Completed, "{report:?}");
    let out = report.task("download").unwrap().output.clone().unwrap();
    assert_eq!(out["bytes"], 8);
    assert!(
        out["path"]
            .as_str()
            .unwrap()
            .ends_with("/download/trips.csv"),
        "{out}"
    );
    assert_eq!(
        report.task("count").unwrap().output.as_ref().unwrap()["stdout"],
        "2"
    );

    let missing = engine
        .run("fetch", parse_assignments(["file=nope.csv"]).unwrap())
        .await
        .unwrap();
    assert_eq!(missing.state_of("download"), State::Failed);
    assert!(
        missing
            .task("download")
            .unwrap()
            .reason
            .as_deref()
            .unwrap()
            .contains("HTTP 404")
    );
    server.join().unwrap();
}
