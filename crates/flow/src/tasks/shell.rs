//! `type: shell` — runs a command with `sh -c`, captures stdout/stderr line by line into the task log.
//!
//! Inputs: `command` (required), `env` (map), `cwd` (relative to the project). Output:
//! `{exit_code, stdout}` where `stdout` is the last 20 lines; when the last non-empty stdout line is a JSON object
//! or array it is also parsed into `json`, so `echo '{"rows": 12}'` gives `{{ tasks.x.output.json.rows }}`.
//! A non-zero exit fails the attempt (retryable) with the tail of stderr in the message.

use std::collections::{BTreeMap, VecDeque};
use std::process::Stdio;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::task::{LogStream, Task, TaskContext, TaskFailure, parse_inputs};

const TAIL_LINES: usize = 20;

/// The `shell` task type.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShellTask;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShellInputs {
    command: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
}

#[async_trait]
impl Task for ShellTask {
    fn type_name(&self) -> &str {
        "shell"
    }

    fn check(&self, inputs: &Json) -> Result<(), String> {
        parse_inputs::<ShellInputs>(inputs).map(|_| ())
    }

    async fn run(&self, ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        let inputs: ShellInputs = parse_inputs(&inputs).map_err(TaskFailure::fatal)?;
        let cwd = inputs
            .cwd
            .as_deref()
            .map(|c| ctx.resolve_path(c))
            .unwrap_or_else(|| ctx.project_dir.clone());
        ctx.log.info(format!("$ {}", inputs.command));
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&inputs.command)
            .current_dir(&cwd)
            .envs(&inputs.env)
            .env("TRIPLINE_RUN_ID", &ctx.run_id)
            .env("TRIPLINE_TASK_ID", &ctx.task_id)
            .env("TRIPLINE_ATTEMPT", ctx.attempt.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TaskFailure::retryable(format!("cannot start `sh` in {}: {e}", cwd.display()))
            })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| TaskFailure::fatal("no stdout pipe"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| TaskFailure::fatal("no stderr pipe"))?;
        let log_out = ctx.log.clone();
        let out_reader = tokio::spawn(async move {
            let mut tail = VecDeque::new();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log_out.line(LogStream::Stdout, line.clone());
                tail.push_back(line);
                if tail.len() > TAIL_LINES {
                    tail.pop_front();
                }
            }
            tail
        });
        let log_err = ctx.log.clone();
        let err_reader = tokio::spawn(async move {
            let mut tail = VecDeque::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log_err.line(LogStream::Stderr, line.clone());
                tail.push_back(line);
                if tail.len() > 5 {
                    tail.pop_front();
                }
            }
            tail
        });
        let status = child
            .wait()
            .await
            .map_err(|e| TaskFailure::retryable(format!("waiting for the command: {e}")))?;
        let out_tail = out_reader.await.unwrap_or_default();
        let err_tail = err_reader.await.unwrap_or_default();
        let Some(code) = status.code() else {
            return Err(TaskFailure::retryable(format!(
                "command killed by a signal ({status})"
            )));
        };
        if code != 0 {
            let stderr: Vec<String> = err_tail.into_iter().collect();
            let detail = if stderr.is_empty() {
                String::new()
            } else {
                format!(": {}", stderr.join(" | "))
            };
            return Err(TaskFailure::retryable(format!(
                "command exited with code {code}{detail}"
            )));
        }
        let lines: Vec<String> = out_tail.into_iter().collect();
        let mut output = json!({"exit_code": code, "stdout": lines.join("\n")});
        if let Some(last) = lines.iter().rev().find(|l| !l.trim().is_empty())
            && let Ok(parsed @ (Json::Object(_) | Json::Array(_))) =
                serde_json::from_str::<Json>(last.trim())
        {
            output["json"] = parsed;
        }
        Ok(output)
    }
}
