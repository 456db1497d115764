//! Quarantine files: every rejected row of a source, with its line, column, value and reason, in a CSV beside the
//! project (`quarantine/<kind>/<source>.quarantine.csv`). Written under a temporary name and moved into place with the load's
//! commit, so the file always describes the committed load: a clean re-run removes it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tripline_core::{QuarantinedRow, TripKind};

use crate::error::{IngestError, Result};

/// The quarantine file of one source, created on the first bad row.
pub struct QuarantineFile {
    path: PathBuf,
    partial: PathBuf,
    source: String,
    writer: Option<BufWriter<File>>,
    rows: u64,
}

impl QuarantineFile {
    /// The quarantine file for `source` of `kind` under `dir`.
    pub fn new(dir: &Path, kind: TripKind, source: &str) -> Self {
        let path = dir
            .join(kind.name())
            .join(format!("{source}.quarantine.csv"));
        let partial = path.with_extension(format!("csv.{}.partial", std::process::id()));
        Self {
            path,
            partial,
            source: source.to_string(),
            writer: None,
            rows: 0,
        }
    }

    /// Where the file is (once committed).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Record rejected rows.
    pub fn write(&mut self, rows: &[QuarantinedRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let err = |source| IngestError::Quarantine {
            path: self.partial.display().to_string(),
            source,
        };
        if self.writer.is_none() {
            std::fs::create_dir_all(self.partial.parent().expect("has a parent")).map_err(err)?;
            let mut w = BufWriter::new(File::create(&self.partial).map_err(err)?);
            w.write_all(b"source,line,column,value,reason,record\n")
                .map_err(err)?;
            self.writer = Some(w);
        }
        let w = self.writer.as_mut().expect("created above");
        for row in rows {
            let line = format!(
                "{},{},{},{},{},{}\n",
                csv_field(&self.source),
                row.line,
                csv_field(row.column.as_deref().unwrap_or("")),
                csv_field(&row.value),
                csv_field(&row.reason),
                csv_field(&row.record)
            );
            w.write_all(line.as_bytes())
                .map_err(|source| IngestError::Quarantine {
                    path: self.partial.display().to_string(),
                    source,
                })?;
        }
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Make the file describe the committed load: move it into place, or remove an old one if no row was bad.
    pub fn commit(mut self) -> Result<Option<PathBuf>> {
        let err = |path: &Path| {
            let path = path.display().to_string();
            move |source| IngestError::Quarantine { path, source }
        };
        match self.writer.take() {
            Some(mut w) => {
                w.flush().map_err(err(&self.partial))?;
                std::fs::rename(&self.partial, &self.path).map_err(err(&self.path))?;
                Ok(Some(self.path.clone()))
            }
            None => {
                match std::fs::remove_file(&self.path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(err(&self.path)(e));
                    }
                    _ => {}
                }
                Ok(None)
            }
        }
    }

    /// Forget the rows of a load that did not commit.
    pub fn abort(mut self) {
        self.writer.take();
        let _ = std::fs::remove_file(&self.partial);
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
