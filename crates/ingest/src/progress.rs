//! Live counters of a running load, read by whatever shows progress (the CLI's progress bar).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes and rows done so far; updated by the load, polled by a display.
#[derive(Debug, Default)]
pub struct Progress {
    bytes: AtomicU64,
    total_bytes: AtomicU64,
    rows: AtomicU64,
    source: Mutex<String>,
}

impl Progress {
    /// A new set of counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new source starts: reset bytes, remember its name and size when known.
    pub fn start_source(&self, name: &str, total_bytes: Option<u64>) {
        self.bytes.store(0, Ordering::Relaxed);
        self.total_bytes
            .store(total_bytes.unwrap_or(0), Ordering::Relaxed);
        *self.source.lock().expect("progress lock") = name.to_string();
    }

    /// Source bytes consumed.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Rows processed (written or quarantined).
    pub fn add_rows(&self, n: u64) {
        self.rows.fetch_add(n, Ordering::Relaxed);
    }

    /// (bytes read of the current source, its total size or 0 when unknown, rows so far over all sources).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.total_bytes.load(Ordering::Relaxed),
            self.rows.load(Ordering::Relaxed),
        )
    }

    /// The name of the source being read.
    pub fn source(&self) -> String {
        self.source.lock().expect("progress lock").clone()
    }
}
