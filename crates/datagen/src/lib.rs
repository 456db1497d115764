//! Deterministic synthetic NYC TLC trip data, any size, as CSV (the TLC's CSV-era layout), gzipped CSV or
//! Parquet (the unified schema of `tripline_core`).
//!
//! The same kind, month, seed, row count and dirty rate always give byte-identical files: every row is drawn
//! from its own random stream, derived from the seed and the row's index, so nothing depends on batch sizes.
//!
//! ```no_run
//! use tripline_core::{TripKind, YearMonth};
//! use tripline_datagen::{OutputFormat, TripGenerator};
//!
//! let month: YearMonth = "2021-01".parse().unwrap();
//! let report = TripGenerator::new(TripKind::Yellow, month)
//!     .with_seed(7)
//!     .with_dirty_rate(0.01)
//!     .write(100_000, OutputFormat::CsvGz, "yellow_tripdata_2021-01.csv.gz".as_ref())?;
//! println!("{} rows, {} of them dirty", report.rows, report.dirty_rows);
//! # Ok::<(), tripline_datagen::DatagenError>(())
//! ```
//!
//! What the data looks like:
//! - pickups on every day of the month with an hour-of-day profile (quiet 2-5 am, rush hours on weekdays, late
//!   nights on weekends); about 0.1% fall on the last day of the previous month, as in real files;
//! - zones weighted by kind (yellow: Manhattan and the airports; green: outer boroughs and upper Manhattan;
//!   for-hire: the whole city), distances from approximate zone positions, durations from the hour's speed;
//! - fares from the meter rules of the month, surcharges that existed in that month (columns that did not exist
//!   yet are null), and `total_amount` the exact sum of its parts in cents (in CSV, which has no `airport_fee` or
//!   `cbd_congestion_fee` column, as in the TLC's CSV files, the total still includes those fees);
//! - the null patterns of the real files (a block of nulls in about 4% of 2020+ yellow/green rows; for-hire
//!   zones often null).
//!
//! Dirty rows (see [`TripGenerator::with_dirty_rate`]) are what an ingest must quarantine; clean rows never look
//! dirty.

mod clock;
mod columnar;
mod csv;
mod rng;
mod trips;
mod zones;

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use arrow::record_batch::RecordBatch;
use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::Serialize;
use tripline_core::{Classify, ColumnType, ErrorDomain, TripKind, YearMonth};

use crate::columnar::Columns;
use crate::csv::Line;
use crate::rng::{Rng, mix};
use crate::trips::{Trip, TripModel};

/// Rows per Arrow batch when writing Parquet.
const PARQUET_BATCH_ROWS: usize = 65_536;
/// Rows per Parquet row group.
const PARQUET_ROW_GROUP_ROWS: usize = 131_072;
/// gzip level of `.csv.gz` output: fast, still about 4x smaller than the CSV.
const GZIP_LEVEL: u32 = 1;

/// Why generating a file failed.
#[derive(Debug, thiserror::Error)]
pub enum DatagenError {
    /// Creating or writing the output file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The Parquet writer failed.
    #[error("{}: writing Parquet failed: {source}", path.display())]
    Parquet {
        /// The output file.
        path: PathBuf,
        /// The Parquet error.
        source: parquet::errors::ParquetError,
    },
    /// The dirty rate is not a probability.
    #[error("{}: dirty rate {rate} is outside 0.0..=1.0", path.display())]
    DirtyRate {
        /// The output file that was not written.
        path: PathBuf,
        /// The rate given.
        rate: f64,
    },
    /// An output format name that is not `csv`, `csv.gz` or `parquet`.
    #[error("unknown output format '{0}': expected csv, csv.gz or parquet")]
    UnknownFormat(String),
}

impl Classify for DatagenError {
    fn domain(&self) -> ErrorDomain {
        match self {
            Self::Io { .. } | Self::Parquet { .. } => ErrorDomain::External,
            Self::DirtyRate { .. } | Self::UnknownFormat(_) => ErrorDomain::User,
        }
    }
}

/// Result of this crate's fallible operations.
pub type Result<T, E = DatagenError> = std::result::Result<T, E>;

/// The file format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// CSV in the layout of the TLC's CSV-era files (`csv`).
    Csv,
    /// The same CSV bytes, gzip-compressed (`csv.gz`).
    #[serde(rename = "csv.gz")]
    CsvGz,
    /// Parquet in the kind's full unified schema, snappy-compressed (`parquet`).
    Parquet,
}

impl OutputFormat {
    /// The file extension and name of the format: `csv`, `csv.gz` or `parquet`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::CsvGz => "csv.gz",
            Self::Parquet => "parquet",
        }
    }

    /// The format a file name's extension asks for, if it is one of the three.
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        [Self::CsvGz, Self::Csv, Self::Parquet]
            .into_iter()
            .find(|f| name.ends_with(&format!(".{}", f.extension())))
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for OutputFormat {
    type Err = DatagenError;

    fn from_str(s: &str) -> Result<Self> {
        [Self::Csv, Self::CsvGz, Self::Parquet]
            .into_iter()
            .find(|f| f.extension().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| DatagenError::UnknownFormat(s.to_owned()))
    }
}

/// What [`TripGenerator::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatagenReport {
    /// Data rows written (header excluded), dirty ones included.
    pub rows: u64,
    /// Rows made invalid on purpose: exactly the rows an ingest must quarantine.
    pub dirty_rows: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// The file written.
    pub path: PathBuf,
}

/// Generates one kind of TLC data for one month. Build it, then call [`batches`](Self::batches) for Arrow
/// batches or [`write`](Self::write) for a file.
///
/// For [`TripKind::Zones`] the zone lookup always has its 265 rows (LocationID 1..=265): the requested row
/// count is ignored, and so are the month and the seed (which still picks the dirty rows, if any).
#[derive(Debug, Clone)]
pub struct TripGenerator {
    kind: TripKind,
    month: YearMonth,
    seed: u64,
    dirty_rate: f64,
    model: TripModel,
}

impl TripGenerator {
    /// A generator of `kind` rows with pickups in `month`, seed 42 and no dirty rows.
    pub fn new(kind: TripKind, month: YearMonth) -> Self {
        Self {
            kind,
            month,
            seed: 42,
            dirty_rate: 0.0,
            model: TripModel::new(kind, month),
        }
    }

    /// Use another seed: different seeds give different data, the same seed the same bytes.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Make each row written by [`write`](Self::write) invalid with probability `rate` (0.0..=1.0; checked by
    /// `write`). Which rows, and how, depends only on the seed and the row index.
    ///
    /// In CSV a dirty row has one of: `abc` in a numeric column, an impossible pickup timestamp
    /// (`2021-02-30 25:61:00`), one field missing, zone ID `999`, or `1.5` in an integer column. In Parquet, whose
    /// columns are typed, a dirty row has a zone ID out of range (0 or 300..=999).
    pub fn with_dirty_rate(mut self, rate: f64) -> Self {
        self.dirty_rate = rate;
        self
    }

    /// The kind of rows generated.
    pub fn kind(&self) -> TripKind {
        self.kind
    }

    /// The month the pickups fall in.
    pub fn month(&self) -> YearMonth {
        self.month
    }

    /// Clean rows in the unified Arrow schema `kind.schema()`, `rows` in total, in batches of `batch_rows` (the
    /// last one shorter; a `batch_rows` of 0 counts as 1). Row `i` is the same whatever the batch size.
    pub fn batches(&self, rows: u64, batch_rows: usize) -> impl Iterator<Item = RecordBatch> + '_ {
        BatchIter::new(self, rows, batch_rows, false)
    }

    /// Write `rows` rows to `path` in `format`, creating missing parent directories; returns a report.
    pub fn write(&self, rows: u64, format: OutputFormat, path: &Path) -> Result<DatagenReport> {
        if !(0.0..=1.0).contains(&self.dirty_rate) {
            return Err(DatagenError::DirtyRate {
                path: path.to_owned(),
                rate: self.dirty_rate,
            });
        }
        let io = |source| DatagenError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let file = File::create(path).map_err(io)?;
        let rows = self.model.row_count(rows);
        let dirty_rows = match format {
            OutputFormat::Csv => {
                let mut out = BufWriter::with_capacity(1 << 20, file);
                let dirty = self.write_csv(rows, &mut out).map_err(io)?;
                out.flush().map_err(io)?;
                dirty
            }
            OutputFormat::CsvGz => {
                let out = BufWriter::with_capacity(1 << 20, file);
                let mut gz = GzEncoder::new(out, GzLevel::new(GZIP_LEVEL));
                let dirty = self.write_csv(rows, &mut gz).map_err(io)?;
                gz.finish().map_err(io)?.flush().map_err(io)?;
                dirty
            }
            OutputFormat::Parquet => self.write_parquet(rows, file, path)?,
        };
        let bytes = fs::metadata(path).map_err(io)?.len();
        Ok(DatagenReport {
            rows,
            dirty_rows,
            bytes,
            path: path.to_owned(),
        })
    }

    /// The random streams of clean rows and of dirtiness, from the seed, kind and month.
    fn streams(&self) -> (u64, u64) {
        let month = (i64::from(self.month.year) * 12 + i64::from(self.month.month)) as u64;
        let base = mix(mix(self.seed)
            ^ mix(0x6b69_6e64_0000 | self.kind as u64)
            ^ mix(month.rotate_left(32)));
        (mix(base ^ 0x0063_6c65_616e), mix(base ^ 0x0064_6972_7479))
    }

    /// Row `index`, clean.
    fn row(&self, clean: u64, index: u64) -> Trip {
        self.model.trip(index, &mut Rng::for_row(clean, index))
    }

    /// Whether row `index` is to be dirty, and if so the stream that decides how.
    fn dirt(&self, dirty: u64, index: u64) -> Option<Rng> {
        if self.dirty_rate <= 0.0 {
            return None;
        }
        let mut rng = Rng::for_row(dirty, index);
        rng.chance(self.dirty_rate).then_some(rng)
    }

    fn write_csv(&self, rows: u64, out: &mut impl Write) -> std::io::Result<u64> {
        let (clean, dirty) = self.streams();
        out.write_all(csv::header(self.kind).as_bytes())?;
        out.write_all(b"\n")?;
        let mut line = Line::new();
        let mut dirty_rows = 0;
        for i in 0..rows {
            line.write_trip(self.kind, &self.row(clean, i));
            if let Some(mut rng) = self.dirt(dirty, i) {
                line.spoil(self.kind, &mut rng);
                dirty_rows += 1;
            }
            out.write_all(&line.buf)?;
        }
        Ok(dirty_rows)
    }

    fn write_parquet(&self, rows: u64, file: File, path: &Path) -> Result<u64> {
        let fail = |source| DatagenError::Parquet {
            path: path.to_owned(),
            source,
        };
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS));
        // Timestamps are nearly unique: a dictionary only costs time before the writer falls back to plain.
        for column in self
            .kind
            .columns()
            .iter()
            .filter(|c| c.ty == ColumnType::Timestamp)
        {
            props = props.set_column_dictionary_enabled(ColumnPath::from(column.name), false);
        }
        let props = props.build();
        let mut writer =
            ArrowWriter::try_new(file, self.kind.schema(), Some(props)).map_err(fail)?;
        let mut batches = BatchIter::new(self, rows, PARQUET_BATCH_ROWS, true);
        for batch in batches.by_ref() {
            writer.write(&batch).map_err(fail)?;
        }
        writer.close().map_err(fail)?;
        Ok(batches.dirty_rows)
    }
}

/// Batches of generated rows; with `dirty`, rows chosen by the dirty rate get an out-of-range zone ID.
struct BatchIter<'a> {
    generator: &'a TripGenerator,
    streams: (u64, u64),
    next: u64,
    end: u64,
    batch_rows: u64,
    dirty: bool,
    dirty_rows: u64,
    columns: Columns,
}

impl<'a> BatchIter<'a> {
    fn new(generator: &'a TripGenerator, rows: u64, batch_rows: usize, dirty: bool) -> Self {
        let end = generator.model.row_count(rows);
        let batch_rows = batch_rows.max(1) as u64;
        let capacity = batch_rows.min(end) as usize;
        Self {
            generator,
            streams: generator.streams(),
            next: 0,
            end,
            batch_rows,
            dirty,
            dirty_rows: 0,
            columns: Columns::new(generator.kind, capacity),
        }
    }
}

impl Iterator for BatchIter<'_> {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        if self.next >= self.end {
            return None;
        }
        let (clean, dirty) = self.streams;
        let stop = self.end.min(self.next + self.batch_rows);
        for i in self.next..stop {
            let mut trip = self.generator.row(clean, i);
            if let Some(mut rng) = self.dirty.then(|| self.generator.dirt(dirty, i)).flatten() {
                let id = if rng.chance(0.2) {
                    0
                } else {
                    rng.int(300, 999) as i32
                };
                trip.set_zone(rng.chance(0.5), id);
                self.dirty_rows += 1;
            }
            self.columns.append(&trip);
        }
        self.next = stop;
        Some(self.columns.finish(self.generator.kind))
    }
}
