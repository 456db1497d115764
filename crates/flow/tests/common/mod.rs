//! Helpers shared by the integration tests: a throwaway project directory with flow files, and an engine on it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tripline_flow::store::SqliteStore;
use tripline_flow::{Engine, EngineOptions, Project, TaskRegistry};

/// A temporary project: `flows/<name>.yaml` for each (name, yaml) pair.
pub struct TestProject {
    pub dir: tempfile::TempDir,
}

impl TestProject {
    pub fn new(flows: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("flows")).unwrap();
        for (name, yaml) in flows {
            std::fs::write(dir.path().join("flows").join(format!("{name}.yaml")), yaml).unwrap();
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    /// An engine over the project with the SQLite store in `.tripline/state.db`.
    pub fn engine(&self) -> Engine {
        let registry = TaskRegistry::with_builtins();
        let project = Project::load(self.path(), &registry).expect("project loads");
        let store = Arc::new(SqliteStore::open_in_project(self.path()).expect("store opens"));
        Engine::with_options(project, registry, store, fast_options())
    }
}

pub fn fast_options() -> EngineOptions {
    EngineOptions {
        heartbeat_interval: Duration::from_millis(100),
        ..EngineOptions::default()
    }
}

/// The largest number of [start, end) intervals that overlap at any instant.
pub fn max_overlap(intervals: &[(i64, i64)]) -> usize {
    intervals
        .iter()
        .map(|&(s, _)| intervals.iter().filter(|&&(a, b)| a <= s && s < b).count())
        .max()
        .unwrap_or(0)
}

/// For each run, the span from its first attempt's start to its last attempt's end: when it was really working.
/// (A run's `started_ms` is taken before its claim waits for locks, so it can precede the claim itself.)
pub async fn work_intervals(
    engine: &Engine,
    runs: &[tripline_flow::FlowRunRecord],
) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for r in runs {
        let attempts = engine.store().attempts(&r.id).await.unwrap();
        let start = attempts.iter().map(|a| a.started_ms).min().unwrap();
        let end = attempts.iter().filter_map(|a| a.ended_ms).max().unwrap();
        out.push((start, end));
    }
    out
}
