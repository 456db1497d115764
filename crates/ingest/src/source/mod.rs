//! Sources: where trip files come from (a file, a glob, an http(s) URL) and how their bytes become validated Arrow
//! batches of the unified schema. The format is detected from the content, never from the name: gzip by its magic
//! bytes, Parquet by `PAR1`, anything else is read as CSV.

mod csv;
mod parquet;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use tripline_core::{QuarantinedRow, SchemaDrift, TripKind};
use xxhash_rust::xxh3::Xxh3;

pub use self::csv::CsvTripReader;
pub use self::parquet::ParquetTripReader;
use crate::error::{IngestError, Result};
use crate::progress::Progress;

/// One file to load: a local path or a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    /// The identity of the source in ledgers and lake file names: its file name.
    pub name: String,
    /// Where it is.
    pub at: SourceAt,
}

/// Where a source's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAt {
    /// A local file.
    File(PathBuf),
    /// An http(s) URL, streamed.
    Http(String),
}

impl SourceLocation {
    /// The path or URL, for messages.
    pub fn display(&self) -> String {
        match &self.at {
            SourceAt::File(p) => p.display().to_string(),
            SourceAt::Http(u) => u.clone(),
        }
    }

    /// Expand a command-line source: an http(s) URL, a glob (`data/yellow_*.csv.gz`) or a path.
    pub fn resolve(spec: &str) -> Result<Vec<SourceLocation>> {
        if spec.starts_with("http://") || spec.starts_with("https://") {
            let path = spec.split(['?', '#']).next().unwrap_or(spec);
            let name = path
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("download")
                .to_string();
            return Ok(vec![SourceLocation {
                name,
                at: SourceAt::Http(spec.to_string()),
            }]);
        }
        if let Some((scheme, _)) = spec.split_once("://")
            && scheme != "file"
        {
            return Err(IngestError::Unsupported(format!(
                "reading sources from {scheme}:// (use a local path, a glob or an http(s) URL)"
            )));
        }
        let spec = spec.strip_prefix("file://").unwrap_or(spec);
        let paths: Vec<PathBuf> = if spec.contains(['*', '?', '[']) {
            let matches = glob::glob(spec)
                .map_err(|e| IngestError::Usage(format!("bad glob '{spec}': {e}")))?;
            let mut paths: Vec<PathBuf> = matches
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .collect();
            paths.sort();
            if paths.is_empty() {
                return Err(IngestError::NoMatch(spec.to_string()));
            }
            paths
        } else {
            vec![PathBuf::from(spec)]
        };
        Ok(paths
            .into_iter()
            .map(|p| {
                let name = p.file_name().map_or_else(
                    || p.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                SourceLocation {
                    name,
                    at: SourceAt::File(p),
                }
            })
            .collect())
    }
}

/// The format a source turned out to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// Plain CSV.
    Csv,
    /// Gzip-compressed CSV.
    #[serde(rename = "csv.gz")]
    CsvGz,
    /// Parquet.
    Parquet,
}

impl std::fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Csv => "csv",
            Self::CsvGz => "csv.gz",
            Self::Parquet => "parquet",
        })
    }
}

/// A batch of validated rows and the rows of the same stretch of the source that were set aside.
#[derive(Debug)]
pub struct ParsedBatch {
    /// Valid rows, in the unified schema of the kind.
    pub batch: RecordBatch,
    /// Rows that failed validation, in source order.
    pub quarantined: Vec<QuarantinedRow>,
}

/// Reads a source as validated batches.
pub trait TripReader: Send {
    /// The next batch; `None` at the end of the source.
    fn next_batch(&mut self) -> Result<Option<ParsedBatch>>;
    /// How the file's layout differs from the unified schema.
    fn drift(&self) -> &[SchemaDrift];
    /// The detected format.
    fn format(&self) -> SourceFormat;
    /// Hash of all source bytes read so far (complete once the reader is exhausted).
    fn content_hash(&self) -> String;
}

/// Open a source and detect its format.
pub fn open(
    location: &SourceLocation,
    kind: TripKind,
    batch_rows: usize,
    progress: Arc<Progress>,
) -> Result<Box<dyn TripReader>> {
    let name = location.display();
    let (raw, len): (Box<dyn Read + Send>, Option<u64>) = match &location.at {
        SourceAt::File(path) => {
            let file = File::open(path).map_err(|e| IngestError::Fetch {
                source_name: name.clone(),
                message: match e.kind() {
                    std::io::ErrorKind::NotFound => "file not found".into(),
                    std::io::ErrorKind::PermissionDenied => "permission denied".into(),
                    _ => format!("cannot open: {e}"),
                },
                user: true,
            })?;
            let len = file.metadata().ok().map(|m| m.len());
            if len.is_some_and(|l| l > 0) && is_parquet_file(path) {
                progress.start_source(&location.name, len);
                return Ok(Box::new(ParquetTripReader::open(
                    file, &name, kind, batch_rows, progress,
                )?));
            }
            (Box::new(file), len)
        }
        SourceAt::Http(url) => http_get(url)?,
    };
    progress.start_source(&location.name, len);
    let hashing = HashingReader::new(raw, progress.clone());
    let hash = hashing.hash.clone();
    let mut buffered = BufReader::with_capacity(1 << 20, hashing);
    let head = buffered
        .fill_buf()
        .map_err(|e| read_error(&name, &e))?
        .to_vec();
    if head.is_empty() {
        return Err(IngestError::bad(&name, "the source is empty (0 bytes)"));
    }
    if head.starts_with(b"PAR1") {
        // Parquet needs random access to its footer: spool a streamed download to a temporary file first.
        let mut tmp = tempfile::tempfile().map_err(|e| read_error(&name, &e))?;
        std::io::copy(&mut buffered, &mut tmp).map_err(|e| read_error(&name, &e))?;
        return Ok(Box::new(ParquetTripReader::open(
            tmp, &name, kind, batch_rows, progress,
        )?));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        let gz = flate2::bufread::MultiGzDecoder::new(buffered);
        let reader = CsvTripReader::new(
            Box::new(gz),
            &name,
            kind,
            batch_rows,
            SourceFormat::CsvGz,
            hash,
        )?;
        return Ok(Box::new(reader));
    }
    Ok(Box::new(CsvTripReader::new(
        Box::new(buffered),
        &name,
        kind,
        batch_rows,
        SourceFormat::Csv,
        hash,
    )?))
}

fn is_parquet_file(path: &std::path::Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PAR1"
}

/// Describe a read failure of a source's bytes (truncation and corruption included).
pub(crate) fn read_error(name: &str, e: &std::io::Error) -> IngestError {
    let message = match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            "the file ends early: truncated download or truncated .gz".to_string()
        }
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
            format!("corrupt compressed data ({e}): the .gz is damaged or truncated")
        }
        _ => format!("read failed: {e}"),
    };
    IngestError::bad(name, message)
}

fn http_get(url: &str) -> Result<(Box<dyn Read + Send>, Option<u64>)> {
    let fetch = |message: String, user: bool| IngestError::Fetch {
        source_name: url.to_string(),
        message,
        user,
    };
    let response = ureq::get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => fetch(
            format!(
                "HTTP {code}{}",
                if code == 404 {
                    " Not Found: check the URL"
                } else {
                    ""
                }
            ),
            code < 500,
        ),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            fetch("connection refused: is the server up?".into(), false)
        }
        other => fetch(other.to_string(), false),
    })?;
    let len = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    Ok((Box::new(response.into_body().into_reader()), len))
}

/// Counts and hashes the raw bytes of a source as they stream past.
struct HashingReader<R> {
    inner: R,
    hash: Arc<std::sync::Mutex<Xxh3>>,
    progress: Arc<Progress>,
}

impl<R> HashingReader<R> {
    fn new(inner: R, progress: Arc<Progress>) -> Self {
        Self {
            inner,
            hash: Arc::new(std::sync::Mutex::new(Xxh3::new())),
            progress,
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.lock().expect("hash lock").update(&buf[..n]);
        self.progress.add_bytes(n as u64);
        Ok(n)
    }
}

/// How a file's columns map onto the unified schema of a kind.
pub(crate) struct ColumnMap {
    /// For each table column, the file column that feeds it.
    pub table_to_file: Vec<Option<usize>>,
    /// File columns that are not in the schema, and optional table columns the file lacks.
    pub drift: Vec<SchemaDrift>,
    /// Required table columns the file lacks.
    pub missing: Vec<&'static str>,
}

/// Match file column names to table columns (any case, known aliases). `Err` names a column that appears twice.
pub(crate) fn map_columns(kind: TripKind, names: &[String]) -> Result<ColumnMap, String> {
    let mut table_to_file = vec![None; kind.columns().len()];
    let mut drift = Vec::new();
    for (f, name) in names.iter().enumerate() {
        match kind.find_column(name) {
            Some(c) if table_to_file[c].is_some() => {
                return Err(format!("column '{name}' appears twice"));
            }
            Some(c) => table_to_file[c] = Some(f),
            None => drift.push(SchemaDrift {
                column: name.clone(),
                change: "not in the unified schema: ignored".into(),
            }),
        }
    }
    let mut missing = Vec::new();
    for (spec, f) in kind.columns().iter().zip(&table_to_file) {
        match (f, spec.required) {
            (Some(_), _) => {}
            (None, true) => missing.push(spec.name),
            (None, false) => drift.push(SchemaDrift {
                column: spec.name.into(),
                change: "not in this file: filled with nulls".into(),
            }),
        }
    }
    Ok(ColumnMap {
        table_to_file,
        drift,
        missing,
    })
}

/// The running hash of a streamed source, shared with its reader.
pub(crate) type SharedHash = Arc<std::sync::Mutex<Xxh3>>;

pub(crate) fn hex(hash: &SharedHash) -> String {
    format!("{:016x}", hash.lock().expect("hash lock").digest())
}
