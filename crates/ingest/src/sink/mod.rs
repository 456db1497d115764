//! Sinks: where validated batches go. A sink begins a load per source, takes its batches, and commits them all at
//! once or not at all; the same trait serves batch ingestion now and streaming later.

pub mod lake;
pub mod postgres;

use std::future::Future;

use arrow::array::RecordBatch;
use serde::Serialize;
use tripline_core::{RowAccount, TripKind, YearMonth};

use crate::error::Result;

/// What a sink is told about the source of a load.
#[derive(Debug, Clone)]
pub struct LoadSource {
    /// The source's identity: re-loading the same identity replaces its rows.
    pub name: String,
    /// The kind of trips.
    pub kind: TripKind,
    /// The month the source covers, when known from the command line or its name.
    pub month: Option<YearMonth>,
}

/// What a load turned out to be, handed to the sink at commit.
#[derive(Debug, Clone)]
pub struct LoadSummary {
    /// The row account.
    pub account: RowAccount,
    /// Hash of the source bytes.
    pub content_hash: String,
}

/// Where a committed load went and what it changed there.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Committed {
    /// The table or file, for people.
    pub target: String,
    /// The month partition written (lake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<YearMonth>,
    /// Bytes of the committed file (lake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Rows of an earlier load of the same source that this load replaced (PostgreSQL append).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_rows: Option<u64>,
    /// Rows new to the table (PostgreSQL merge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_new: Option<u64>,
    /// Rows already present and skipped (PostgreSQL merge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_existing: Option<u64>,
}

/// A target that takes loads.
pub trait Sink {
    /// One load in progress.
    type Load: SinkLoad;
    /// Start loading one source; nothing is visible until the load commits.
    fn begin(&mut self, source: &LoadSource) -> impl Future<Output = Result<Self::Load>>;
}

/// One load in progress into a sink.
pub trait SinkLoad {
    /// Add valid rows.
    fn write(&mut self, batch: &RecordBatch) -> impl Future<Output = Result<()>>;
    /// Make every row written visible at once, and record the load.
    fn commit(self, summary: &LoadSummary) -> impl Future<Output = Result<Committed>>;
    /// Drop the load; the target stays as it was.
    fn abort(self) -> impl Future<Output = ()>;
}
