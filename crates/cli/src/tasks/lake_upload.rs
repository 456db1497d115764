//! `type: lake_upload` — copies a local file into the lake at a key (the course's "upload to GCS" step) through the
//! lake's object store: a local directory, `s3://` or `gs://`. Large files go up in parts; the object appears whole
//! or not at all.
//!
//! Inputs: `path` (the local file, relative to the project), `key` (the object key under the lake root, e.g.
//! `landing/yellow/yellow_tripdata_2021-01.csv.gz`), `to` (a lake root; default the project's). Output:
//! `{key, location, bytes, summary}`.

use std::sync::Arc;

use async_trait::async_trait;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::io::AsyncWriteExt;
use tripline_flow::task::parse_inputs;
use tripline_flow::{Task, TaskContext, TaskFailure};
use tripline_lake::Lake;

use super::{TaskEnv, check_keys, task_failure};

/// The `lake_upload` task type.
#[derive(Debug, Clone)]
pub struct LakeUploadTask {
    env: Arc<TaskEnv>,
}

impl LakeUploadTask {
    /// The task type over a project.
    pub fn new(env: Arc<TaskEnv>) -> Self {
        Self { env }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadInputs {
    path: String,
    key: String,
    #[serde(default)]
    to: Option<String>,
}

#[async_trait]
impl Task for LakeUploadTask {
    fn type_name(&self) -> &str {
        "lake_upload"
    }

    fn check(&self, inputs: &Json) -> Result<(), String> {
        check_keys(inputs, &["path", "key", "to"], &["path", "key"])
    }

    async fn run(&self, ctx: &TaskContext, inputs: Json) -> Result<Json, TaskFailure> {
        let inputs: UploadInputs = parse_inputs(&inputs).map_err(TaskFailure::fatal)?;
        let root = inputs
            .to
            .clone()
            .unwrap_or_else(|| self.env.config.lake.root.clone());
        let lake = Lake::open(&root, &self.env.project_dir)
            .map_err(|e| task_failure(crate::Failure::from_error(e)))?;
        let key = ObjectPath::parse(inputs.key.trim_matches('/'))
            .map_err(|e| TaskFailure::fatal(format!("key `{}`: {e}", inputs.key)))?;
        let local = ctx.resolve_path(&inputs.path);
        let mut file = tokio::fs::File::open(&local)
            .await
            .map_err(|e| TaskFailure::fatal(format!("{}: {e}", local.display())))?;
        let location = lake.display(&key);
        ctx.log
            .info(format!("uploading {} -> {location}", local.display()));
        let mut writer = BufWriter::new(lake.store().clone(), key.clone());
        let copied = tokio::io::copy(&mut file, &mut writer).await;
        let bytes = match copied {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(TaskFailure::retryable(format!(
                    "uploading {} to {location}: {e}",
                    local.display()
                )));
            }
        };
        writer.shutdown().await.map_err(|e| {
            TaskFailure::retryable(format!("completing the upload to {location}: {e}"))
        })?;
        let stored = lake
            .store()
            .head(&key)
            .await
            .map_err(|e| TaskFailure::retryable(format!("checking {location}: {e}")))?
            .size;
        if stored != bytes {
            return Err(TaskFailure::retryable(format!(
                "{location} holds {stored} bytes after uploading {bytes}"
            )));
        }
        Ok(json!({
            "key": key.to_string(),
            "location": location,
            "bytes": bytes,
            "summary": format!("{bytes} bytes -> {location}"),
        }))
    }
}
