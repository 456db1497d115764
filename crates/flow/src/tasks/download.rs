//! `type: download` — HTTP(S) GET of `url` into a file (not resumable).
//!
//! Inputs: `url` (required), `path` (destination; relative to the project; default
//! `<work dir>/<last URL segment>`). The body goes to `<path>.part` and is renamed when complete. Output:
//! `{path, bytes, url}`. HTTP 4xx (except 408 and 429) fails without retry; other errors are retryable.

use std::io::{Read, Write};
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::task::{Task, TaskContext, TaskFailure, parse_inputs};

/// The `download` task type.
#[derive(Debug, Clone, Copy, Default)]
pub struct DownloadTask;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DownloadInputs {
    url: String,
    #[serde(default)]
    path: Option<String>,
}

#[async_trait]
impl Task for DownloadTask {
    fn type_name(&self) -> &str {
        "download"
    }

    fn check(&self, inputs: &Json) -> Result<(), String> {
        parse_inputs::<DownloadInputs>(inputs).map(|_| ())
    }

    async fn run(&self, ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        let inputs: DownloadInputs = parse_inputs(&inputs).map_err(TaskFailure::fatal)?;
        let url = inputs.url.clone();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(TaskFailure::fatal(format!("`{url}` is not an http(s) URL")));
        }
        let dest: PathBuf = match &inputs.path {
            Some(p) => ctx.resolve_path(p),
            None => {
                let name = url
                    .split(['?', '#'])
                    .next()
                    .unwrap_or("")
                    .rsplit('/')
                    .find(|s| !s.is_empty())
                    .unwrap_or("download");
                ctx.work_dir.join(name)
            }
        };
        ctx.log.info(format!("GET {url} -> {}", dest.display()));
        let cancel = ctx.cancel.clone();
        let dest2 = dest.clone();
        let bytes = tokio::task::spawn_blocking(move || fetch(&url, &dest2, &cancel))
            .await
            .map_err(|e| TaskFailure::retryable(format!("download thread: {e}")))??;
        ctx.log.info(format!("{bytes} bytes written"));
        Ok(json!({"path": dest.display().to_string(), "bytes": bytes, "url": inputs.url}))
    }
}

fn fetch(
    url: &str,
    dest: &std::path::Path,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<u64, TaskFailure> {
    let response = ureq::get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code)
            if (400..500).contains(&code) && code != 408 && code != 429 =>
        {
            TaskFailure::fatal(format!("GET {url}: HTTP {code}"))
        }
        other => TaskFailure::retryable(format!("GET {url}: {other}")),
    })?;
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| TaskFailure::retryable(format!("{}: {e}", dir.display())))?;
    }
    let part = dest.with_extension(format!(
        "{}part",
        dest.extension()
            .map(|e| format!("{}.", e.to_string_lossy()))
            .unwrap_or_default()
    ));
    let mut file = std::fs::File::create(&part)
        .map_err(|e| TaskFailure::retryable(format!("{}: {e}", part.display())))?;
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        if cancel.is_cancelled() {
            let _ = std::fs::remove_file(&part);
            return Err(TaskFailure::retryable("cancelled"));
        }
        let n = reader
            .read(&mut buf)
            .map_err(|e| TaskFailure::retryable(format!("GET {url}: reading body: {e}")))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .map_err(|e| TaskFailure::retryable(format!("{}: {e}", part.display())))?;
        total += n as u64;
    }
    file.sync_all()
        .map_err(|e| TaskFailure::retryable(format!("{}: {e}", part.display())))?;
    std::fs::rename(&part, dest)
        .map_err(|e| TaskFailure::retryable(format!("{}: {e}", dest.display())))?;
    Ok(total)
}
