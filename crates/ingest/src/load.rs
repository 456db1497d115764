//! Running a load: each source is read on a blocking thread into validated batches while the sink writes them on
//! the async side; the source is opened and its header checked before the target is touched, and every source is
//! committed or aborted on its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, TimestampMicrosecondArray};
use serde::Serialize;
use tripline_core::{Classify, ErrorDomain, RowAccount, SchemaDrift, TripKind, YearMonth};

use crate::error::{IngestError, Result};
use crate::progress::Progress;
use crate::quarantine::QuarantineFile;
use crate::sink::{Committed, LoadSource, LoadSummary, Sink, SinkLoad};
use crate::source::{self, ParsedBatch, SourceFormat, SourceLocation};

/// A load of one kind of TLC data from one or more sources into a sink.
#[derive(Debug, Clone)]
pub struct Ingest {
    kind: TripKind,
    month: Option<YearMonth>,
    batch_rows: usize,
    quarantine_dir: PathBuf,
    progress: Arc<Progress>,
}

/// What happened to one source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// The source's identity.
    pub source: String,
    /// Its path or URL.
    pub location: String,
    /// The format detected from its content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<SourceFormat>,
    /// The row account.
    pub account: RowAccount,
    /// Pickups outside the source's month (real files have a few); they are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_month: Option<u64>,
    /// How the file's layout differed from the unified schema.
    pub drift: Vec<SchemaDrift>,
    /// Where the rows went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed: Option<Committed>,
    /// The quarantine file, when rows were set aside.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_file: Option<PathBuf>,
    /// Why the source failed, if it did; nothing of it was committed then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who must act on the error.
    #[serde(skip)]
    pub error_domain: Option<ErrorDomain>,
    /// Wall time of this source's load.
    pub seconds: f64,
}

/// What a whole load did.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// The kind loaded.
    pub kind: TripKind,
    /// One entry per source, in order.
    pub sources: Vec<SourceReport>,
    /// Sum of the accounts of the committed sources.
    pub total: RowAccount,
    /// Sources that failed.
    pub failed: usize,
    /// Wall time.
    pub seconds: f64,
}

enum Message {
    Opened(SourceFormat),
    Batch(ParsedBatch),
}

struct ReaderEnd {
    drift: Vec<SchemaDrift>,
    hash: String,
}

impl Ingest {
    /// A load of `kind` with defaults: month from the file name, 65,536-row batches, `./quarantine`.
    pub fn new(kind: TripKind) -> Self {
        Self {
            kind,
            month: None,
            batch_rows: 65_536,
            quarantine_dir: PathBuf::from("quarantine"),
            progress: Arc::new(Progress::new()),
        }
    }

    /// The month every source belongs to (otherwise it is read from each source's name).
    pub fn with_month(mut self, month: Option<YearMonth>) -> Self {
        self.month = month;
        self
    }

    /// Rows per batch.
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// Where quarantine files go.
    pub fn with_quarantine_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.quarantine_dir = dir.into();
        self
    }

    /// Counters to watch while the load runs.
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Load every source into `sink`, each in its own commit. A failed source is reported and the others go on.
    pub async fn run<S: Sink>(&self, sources: &[SourceLocation], sink: &mut S) -> IngestReport {
        let start = Instant::now();
        let mut report = IngestReport {
            kind: self.kind,
            sources: Vec::new(),
            total: RowAccount::default(),
            failed: 0,
            seconds: 0.0,
        };
        for location in sources {
            let source_start = Instant::now();
            let mut entry = SourceReport {
                source: location.name.clone(),
                location: location.display(),
                format: None,
                account: RowAccount::default(),
                outside_month: None,
                drift: Vec::new(),
                committed: None,
                quarantine_file: None,
                error: None,
                error_domain: None,
                seconds: 0.0,
            };
            match self.load_one(location, sink, &mut entry).await {
                Ok(()) => report.total += entry.account,
                Err(e) => {
                    tracing::warn!(source = %location.name, "load failed: {e}");
                    entry.error_domain = Some(e.domain());
                    entry.error = Some(e.to_string());
                    report.failed += 1;
                }
            }
            entry.seconds = source_start.elapsed().as_secs_f64();
            report.sources.push(entry);
        }
        report.seconds = start.elapsed().as_secs_f64();
        report
    }

    async fn load_one<S: Sink>(
        &self,
        location: &SourceLocation,
        sink: &mut S,
        entry: &mut SourceReport,
    ) -> Result<()> {
        let kind = self.kind;
        let month = if kind.is_trips() {
            self.month.or_else(|| YearMonth::find_in(&location.name))
        } else {
            None
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(4);
        let reader = {
            let (location, progress, batch_rows) =
                (location.clone(), self.progress.clone(), self.batch_rows);
            tokio::task::spawn_blocking(move || -> Result<ReaderEnd> {
                let mut reader = source::open(&location, kind, batch_rows, progress)?;
                if tx.blocking_send(Message::Opened(reader.format())).is_err() {
                    return Err(IngestError::Cancelled);
                }
                while let Some(batch) = reader.next_batch()? {
                    if tx.blocking_send(Message::Batch(batch)).is_err() {
                        return Err(IngestError::Cancelled);
                    }
                }
                Ok(ReaderEnd {
                    drift: reader.drift().to_vec(),
                    hash: reader.content_hash(),
                })
            })
        };
        // The target is touched only once the source has opened and its header is known to be right.
        let format = match rx.recv().await {
            Some(Message::Opened(format)) => format,
            _ => {
                return Err(join(reader)
                    .await
                    .err()
                    .unwrap_or_else(|| IngestError::Cancelled));
            }
        };
        entry.format = Some(format);
        let mut load = sink
            .begin(&LoadSource {
                name: location.name.clone(),
                kind,
                month,
            })
            .await?;
        let mut quarantine = QuarantineFile::new(&self.quarantine_dir, kind, &location.name);
        let mut account = RowAccount::default();
        let mut outside = 0u64;
        let mut failure: Option<IngestError> = None;
        while let Some(message) = rx.recv().await {
            let Message::Batch(parsed) = message else {
                continue;
            };
            let rows = parsed.batch.num_rows() as u64;
            let bad = parsed.quarantined.len() as u64;
            account.read += rows + bad;
            account.written += rows;
            account.quarantined += bad;
            self.progress.add_rows(rows + bad);
            if let (Some(m), Some(p)) = (month, kind.pickup_column()) {
                outside += count_outside(&parsed, p, m);
            }
            let step = match quarantine.write(&parsed.quarantined) {
                Ok(()) => load.write(&parsed.batch).await,
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                failure = Some(e);
                break;
            }
        }
        drop(rx);
        let end = join(reader).await;
        let end = match (failure, end) {
            (Some(e), _) | (None, Err(e)) => {
                load.abort().await;
                quarantine.abort();
                return Err(e);
            }
            (None, Ok(end)) => end,
        };
        debug_assert!(account.balances());
        let committed = load
            .commit(&LoadSummary {
                account,
                content_hash: end.hash,
            })
            .await;
        let committed = match committed {
            Ok(c) => c,
            Err(e) => {
                quarantine.abort();
                return Err(e);
            }
        };
        entry.quarantine_file = quarantine.commit()?;
        entry.account = account;
        entry.drift = end.drift;
        entry.outside_month = month.map(|_| outside);
        entry.committed = Some(committed);
        Ok(())
    }
}

async fn join(handle: tokio::task::JoinHandle<Result<ReaderEnd>>) -> Result<ReaderEnd> {
    match handle.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(IngestError::Cancelled),
    }
}

fn count_outside(parsed: &ParsedBatch, pickup: usize, month: YearMonth) -> u64 {
    let Some(ts) = parsed
        .batch
        .column(pickup)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
    else {
        return 0;
    };
    let (lo, hi) = (month.start_micros(), month.end_micros());
    ts.iter().flatten().filter(|t| *t < lo || *t >= hi).count() as u64
}
