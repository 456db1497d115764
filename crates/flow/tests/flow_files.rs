//! Bad flow files are rejected with the file, the line and what is wrong; good ones load.

use std::path::Path;

use tripline_flow::{Flow, Project, TaskRegistry};

fn error_of(yaml: &str) -> String {
    let err = Flow::from_yaml(
        yaml,
        Path::new("flows/bad.yaml"),
        &TaskRegistry::with_builtins(),
    )
    .unwrap_err();
    err.to_string()
}

#[test]
fn the_example_from_the_docs_loads() {
    let yaml = r#"
name: yellow_to_lake
description: Download one month of yellow taxi trips and report its size
params:
  month: {type: month, default: "2021-01"}
  service: {type: enum, values: [yellow, green], default: yellow}
schedules:
  - cron: "0 9 1 * *"
    timezone: America/New_York
tasks:
  - id: download
    type: download
    url: "https://example/{{ params.service }}_tripdata_{{ params.month }}.csv.gz"
    retries: 3
    retry_delay: [1s, 10s, 60s]
  - id: report
    type: shell
    depends_on: [download]
    command: "wc -c {{ tasks.download.output.path }}"
    cache: {expire: 1d}
"#;
    let flow = Flow::from_yaml(
        yaml,
        Path::new("flows/yellow_to_lake.yaml"),
        &TaskRegistry::with_builtins(),
    )
    .unwrap();
    assert_eq!(flow.name(), "yellow_to_lake");
    assert_eq!(flow.spec().tasks.len(), 2);
    assert_eq!(flow.deps_of(1), &[0]);
    assert_eq!(flow.spec().tasks[0].retries, 3);
}

#[test]
fn a_cycle_names_the_tasks_in_it() {
    let yaml = "name: f
tasks:
  - id: a
    type: shell
    command: echo a
    depends_on: [c]
  - id: b
    type: shell
    command: echo b
    depends_on: [a]
  - id: c
    type: shell
    command: echo c
    depends_on: [b]
";
    assert_eq!(
        error_of(yaml),
        "flows/bad.yaml:3: dependency cycle: a -> b -> c -> a"
    );
}

#[test]
fn an_unknown_task_type_lists_the_known_ones() {
    let yaml = "name: f
tasks:
  - id: ok
    type: shell
    command: echo
  - id: load
    type: ingest
    source: x.csv
";
    assert_eq!(
        error_of(yaml),
        "flows/bad.yaml:6: task `load`: unknown task type `ingest` (known types: download, flow, shell)"
    );
}

#[test]
fn an_unknown_dependency_is_named() {
    let yaml = "name: f
tasks:
  - id: a
    type: shell
    command: echo
    depends_on: [dowload]
";
    assert_eq!(
        error_of(yaml),
        "flows/bad.yaml:3: task `a` depends on unknown task `dowload` (tasks: a)"
    );
}

#[test]
fn an_unknown_key_is_reported_with_its_line() {
    let yaml = "name: f
tasks:
  - id: a
    type: shell
    command: echo
schedule: daily
";
    let msg = error_of(yaml);
    assert!(
        msg.starts_with("flows/bad.yaml:6: unknown field `schedule`, expected one of"),
        "{msg}"
    );

    let yaml = "name: f
tasks:
  - id: a
    type: shell
    comand: echo
";
    assert_eq!(
        error_of(yaml),
        "flows/bad.yaml:3: task `a` (shell): unknown field `comand`, expected one of `command`, `env`, `cwd`"
    );
}

#[test]
fn a_missing_task_input_is_reported() {
    let yaml = "name: f\ntasks:\n  - id: get\n    type: download\n";
    assert_eq!(
        error_of(yaml),
        "flows/bad.yaml:3: task `get` (download): missing field `url`"
    );
}

#[test]
fn a_bad_cron_or_time_zone_names_the_schedule() {
    let yaml = "name: f
schedules:
  - cron: \"0 9 1 * *\"
  - cron: \"0 25 * * *\"
tasks:
  - id: a
    type: shell
    command: echo
";
    let msg = error_of(yaml);
    assert!(
        msg.starts_with("flows/bad.yaml:4: schedule 2: schedule: bad cron expression `0 25 * * *`"),
        "{msg}"
    );

    let yaml = "name: f
schedules:
  - cron: \"0 9 1 * *\"
    timezone: Mars/Olympus
tasks:
  - id: a
    type: shell
    command: echo
";
    assert_eq!(
        error_of(yaml),
        "flows/bad.yaml:3: schedule 1: schedule: unknown time zone `Mars/Olympus` (use an IANA name like America/New_York)"
    );
}

#[test]
fn a_schedule_must_supply_required_params() {
    let yaml = "name: f
params:
  month: {type: month}
schedules:
  - cron: \"0 9 1 * *\"
tasks:
  - id: a
    type: shell
    command: echo {{ params.month }}
";
    assert_eq!(
        error_of(yaml),
        "flows/bad.yaml:5: schedule 1: param `month`: missing required parameter (type month); pass month=..."
    );
}

#[test]
fn a_bad_param_declaration_or_default_is_reported_at_its_line() {
    let yaml = "name: f
params:
  service: {type: enum, values: [yellow, green], default: blue}
tasks:
  - id: a
    type: shell
    command: echo
";
    assert_eq!(
        error_of(yaml),
        r#"flows/bad.yaml:3: param `service`: bad default: expected one of [yellow, green], got "blue""#
    );

    let yaml = "name: f
params:
  month: {type: monthly}
tasks:
  - id: a
    type: shell
    command: echo
";
    let msg = error_of(yaml);
    assert!(
        msg.starts_with("flows/bad.yaml:3: params.month.type: unknown variant `monthly`"),
        "{msg}"
    );
}

#[test]
fn templates_must_refer_to_declared_params_and_existing_tasks() {
    let yaml = "name: f
params:
  month: {type: month}
tasks:
  - id: a
    type: shell
    command: echo {{ params.mnth }}
";
    assert_eq!(
        error_of(yaml),
        "flows/bad.yaml:5: task `a`: `command` uses undeclared param `mnth` (declared: month)"
    );

    let yaml = "name: f
tasks:
  - id: a
    type: shell
    command: cat {{ tasks.downlod.output.path }}
";
    assert_eq!(
        error_of(yaml),
        "flows/bad.yaml:3: task `a`: `command` refers to unknown task `downlod`"
    );

    let yaml = "name: f
tasks:
  - id: a
    type: shell
    command: echo {{ oops
";
    let msg = error_of(yaml);
    assert!(
        msg.starts_with("flows/bad.yaml:3: task `a`: bad template in `command`: syntax error"),
        "{msg}"
    );
}

#[test]
fn yaml_syntax_errors_carry_the_line() {
    let yaml = "name: f\ntasks:\n  - id: a\n    type: shell\n   command: [\n";
    let msg = error_of(yaml);
    assert!(msg.starts_with("flows/bad.yaml:5: "), "{msg}");
}

#[test]
fn duplicate_task_ids_and_bad_retry_delays_are_rejected() {
    let yaml = "name: f
tasks:
  - id: a
    type: shell
    command: echo
  - id: a
    type: shell
    command: echo
";
    assert_eq!(error_of(yaml), "flows/bad.yaml:3: duplicate task id `a`");

    let yaml = "name: f
tasks:
  - id: a
    type: shell
    command: echo
    retries: 2
    retry_delay: [1s, 10 parsecs]
";
    let msg = error_of(yaml);
    assert!(msg.starts_with("flows/bad.yaml:"), "{msg}");
    assert!(msg.contains("retry_delay"), "{msg}");
}

#[test]
fn a_project_rejects_a_subflow_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("flows")).unwrap();
    std::fs::write(
        dir.path().join("flows/parent.yaml"),
        "name: parent\ntasks:\n  - id: sub\n    type: flow\n    flow: missing_child\n",
    )
    .unwrap();
    let err = Project::load(dir.path(), &TaskRegistry::with_builtins())
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("parent.yaml:3: task `sub`: subflow `missing_child` is not a flow of this project (flows: parent)"), "{err}");
}
