//! A process killed with SIGKILL in the middle of a flow leaves its run Crashed; `resume` finishes it and every
//! task's effect happens exactly once.

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestProject;
use tripline_flow::RunFilter;
use tripline_flow::store::State;

const APPENDER: &str = r#"
name: appender
tasks:
  - id: first
    type: shell
    command: "echo first >> effects"
  - id: slow
    type: shell
    depends_on: [first]
    command: "sleep 3 && echo slow >> effects"
  - id: last
    type: shell
    depends_on: [slow]
    command: "echo last >> effects"
"#;

/// The `flowrun` example next to this test binary (cargo builds examples with the tests); built on demand if not.
fn flowrun_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf();
    let path = profile_dir.join("examples").join("flowrun");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "tripline-flow", "--example", "flowrun"])
            .status()
            .unwrap();
        assert!(status.success(), "building the flowrun example failed");
    }
    assert!(path.exists(), "{} missing", path.display());
    path
}

#[tokio::test]
async fn kill_dash_nine_mid_flow_then_resume_runs_each_task_exactly_once() {
    let p = TestProject::new(&[("appender", APPENDER)]);
    let mut child = Command::new(flowrun_binary())
        .arg(p.path())
        .args(["run", "appender"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so the kill takes the whole tree, like a machine or container dying.
        .process_group(0)
        .spawn()
        .unwrap();

    let engine = p.engine();
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        assert!(Instant::now() < deadline, "the slow task never started");
        if let Ok(runs) = engine.store().list_flow_runs(&RunFilter::default()).await
            && let Some(run) = runs.first()
        {
            let tasks = engine.store().task_runs(&run.id).await.unwrap_or_default();
            if tasks
                .iter()
                .any(|t| t.task_id == "slow" && t.state == State::Running)
            {
                break run.id.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
    assert_eq!(p.read("effects"), "first\n");

    // Re-opening the store notices the dead owner.
    let run = &engine.list_runs(&RunFilter::default()).await.unwrap()[0];
    assert_eq!(run.id, run_id);
    assert_eq!(run.state, State::Crashed);
    assert!(
        run.reason
            .as_deref()
            .unwrap()
            .contains("died while running it"),
        "{:?}",
        run.reason
    );
    let detail = engine.show_run(&run_id).await.unwrap();
    let state_of = |id: &str| {
        detail
            .tasks
            .iter()
            .find(|t| t.task_id == id)
            .map(|t| t.state)
    };
    assert_eq!(state_of("first"), Some(State::Completed));
    assert_eq!(state_of("slow"), Some(State::Crashed));
    assert_eq!(state_of("last"), Some(State::Pending));

    let report = engine.resume(&run_id).await.unwrap();
    assert_eq!(report.state, State::Completed, "{report:?}");
    assert_eq!(p.read("effects"), "first\nslow\nlast\n");
    assert_eq!(
        report.task("first").unwrap().attempts,
        1,
        "completed work is not redone"
    );
    assert_eq!(
        report.task("slow").unwrap().attempts,
        2,
        "the crashed attempt counts"
    );

    // Resuming a completed run changes nothing.
    let again = engine.resume(&run_id).await.unwrap();
    assert_eq!(again.state, State::Completed);
    assert_eq!(p.read("effects"), "first\nslow\nlast\n");
}

#[tokio::test]
async fn resume_of_a_failed_run_reruns_only_what_did_not_succeed() {
    let p = TestProject::new(&[(
        "fragile",
        r#"
name: fragile
tasks:
  - id: ok
    type: shell
    command: "echo ok >> effects"
  - id: needs_file
    type: shell
    depends_on: [ok]
    command: "cat input && echo needs_file >> effects"
  - id: after
    type: shell
    depends_on: [needs_file]
    command: "echo after >> effects"
"#,
    )]);
    let engine = p.engine();
    let failed = engine.run("fragile", Default::default()).await.unwrap();
    assert_eq!(failed.state, State::Failed);
    assert_eq!(failed.state_of("after"), State::NotRun);
    std::fs::write(p.file("input"), "now it exists\n").unwrap();
    let resumed = engine.resume(&failed.run_id).await.unwrap();
    assert_eq!(resumed.state, State::Completed);
    assert_eq!(p.read("effects"), "ok\nneeds_file\nafter\n");
}

#[tokio::test]
async fn a_running_run_of_a_live_process_cannot_be_resumed() {
    let p = TestProject::new(&[("appender", APPENDER)]);
    let engine = p.engine();
    let run = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run("appender", Default::default()).await }
    });
    let other = p.engine();
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let runs = other.list_runs(&RunFilter::default()).await.unwrap();
        if let Some(r) = runs.first().filter(|r| r.state == State::Running) {
            break r.id.clone();
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let err = other.resume(&id).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("flow run `{id}` cannot be resumed: it is Running")
    );
    engine.cancel(&id).await.unwrap();
    assert_eq!(run.await.unwrap().unwrap().state, State::Cancelled);
}
