//! Printing for people and scripts: text and progress on a terminal, JSON with `--json`, silence with `--quiet`.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tripline_ingest::{IngestReport, Progress};

/// How the command prints.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Only errors.
    pub quiet: bool,
    /// JSON on stdout.
    pub json: bool,
}

impl Output {
    /// Print a line for people (not in quiet or JSON mode).
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet && !self.json {
            outln!("{}", line.as_ref());
        }
    }

    /// Print a value as JSON (in JSON mode).
    pub fn json<T: Serialize>(&self, value: &T) {
        if self.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(value).expect("serialisable")
            );
        }
    }

    /// A progress bar over `progress`, drawn on stderr when it is a terminal and output is for people.
    pub fn progress_bar(&self, progress: Arc<Progress>) -> ProgressTicker {
        let bar = if self.quiet || self.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {bytes}/{total_bytes} {wide_msg}")
                .expect("valid template"),
        );
        let ticker_bar = bar.clone();
        let handle = tokio::spawn(async move {
            let start = std::time::Instant::now();
            loop {
                let (bytes, total, rows) = progress.snapshot();
                ticker_bar.set_prefix(progress.source());
                if total > 0 {
                    ticker_bar.set_length(total);
                }
                ticker_bar.set_position(bytes);
                let rate = rows as f64 / start.elapsed().as_secs_f64().max(1e-3);
                ticker_bar.set_message(format!("{rows} rows, {} rows/s", human_count(rate)));
                ticker_bar.tick();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        ProgressTicker { bar, handle }
    }
}

/// A running progress display; finish it before printing results.
pub struct ProgressTicker {
    bar: ProgressBar,
    handle: tokio::task::JoinHandle<()>,
}

impl ProgressTicker {
    /// Stop and clear the bar.
    pub fn finish(self) {
        self.handle.abort();
        self.bar.finish_and_clear();
    }
}

/// 1234567 -> "1.23M".
pub fn human_count(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// 1234567 -> "1.2 MB".
pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    match b {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b} B"),
    }
}

/// Print an ingest report for people.
pub fn print_ingest_report(out: &Output, report: &IngestReport) {
    if out.quiet || out.json {
        return;
    }
    for s in &report.sources {
        match (&s.committed, &s.error) {
            (Some(c), _) => {
                let format = s.format.map(|f| f.to_string()).unwrap_or_default();
                let mut line = format!("{}  [{format}]  {}  -> {}", s.source, s.account, c.target);
                if let Some(bytes) = c.bytes {
                    line.push_str(&format!(" ({})", human_bytes(bytes)));
                }
                outln!("{line}");
                if let Some(n) = c.replaced_rows.filter(|n| *n > 0) {
                    outln!("  replaced {n} rows of an earlier load of this source (no duplicates)");
                }
                if let (Some(new), Some(existing)) = (c.merged_new, c.merged_existing) {
                    outln!("  merged: {new} new rows, {existing} already present (skipped)");
                }
                if let (Some(n), Some(m)) = (s.outside_month.filter(|n| *n > 0), c.month) {
                    outln!("  {n} pickups fall outside {m} (kept, as in the source)");
                }
                for d in &s.drift {
                    outln!("  schema drift: {d}");
                }
                if let Some(q) = &s.quarantine_file {
                    outln!(
                        "  {} bad rows quarantined in {}",
                        s.account.quarantined,
                        q.display()
                    );
                }
            }
            (None, Some(e)) => outln!("{}  FAILED: {e}", s.source),
            (None, None) => {}
        }
    }
    let rate = report.total.read as f64 / report.seconds.max(1e-9);
    outln!(
        "total: {}  ({} sources, {} failed, {:.2} s, {} rows/s)",
        report.total,
        report.sources.len(),
        report.failed,
        report.seconds,
        human_count(rate)
    );
}

/// Standard output that ends the process quietly (exit status 0) when its reader has gone, as a person piping
/// `tripline sql ... | head` expects; other write errors are returned as they are.
pub struct Stdout;

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        reader_gone_ends(std::io::stdout().lock().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        reader_gone_ends(std::io::stdout().lock().flush())
    }
}

fn reader_gone_ends<T>(result: std::io::Result<T>) -> std::io::Result<T> {
    if let Err(e) = &result
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
    result
}
