//! Ingestion of NYC TLC trip files: sources (a file, a glob, an http(s) URL; CSV, gzip CSV or Parquet, detected
//! from the content) are parsed strictly into the unified Arrow schema of their kind, bad rows are quarantined with
//! their line and reason, and valid rows go to a sink (PostgreSQL through binary COPY, or the lake) in one atomic
//! commit per source. Every load reports `read = written + quarantined`, and re-running it never duplicates rows.
//!
//! ```no_run
//! # async fn demo() {
//! use tripline_ingest::{Ingest, SourceLocation, sink::lake::LakeSink};
//! let lake = tripline_lake::Lake::open("lake", std::path::Path::new(".")).unwrap();
//! let sources = SourceLocation::resolve("data/yellow_tripdata_2021-*.csv.gz").unwrap();
//! let report = Ingest::new(tripline_core::TripKind::Yellow).run(&sources, &mut LakeSink::new(lake)).await;
//! println!("{}", report.total);
//! # }
//! ```

pub mod error;
mod load;
pub mod progress;
pub mod quarantine;
pub mod sink;
pub mod source;

pub use error::{IngestError, Result};
pub use load::{Ingest, IngestReport, SourceReport};
pub use progress::Progress;
pub use source::{SourceAt, SourceFormat, SourceLocation};
