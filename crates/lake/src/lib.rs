//! The data lake: a root on any object store (`file://` by default, `s3://`, `gs://`), the layout of raw trip
//! files (`raw/<kind>/year=YYYY/month=MM/`), and atomic commits of Parquet files into it.
//!
//! A file is written under a hidden staging name in its final directory and renamed into place only once it is
//! complete, so readers (DataFusion, DuckDB, Spark, anything that lists `*.parquet`) see either the previous file or
//! the new one, never half of one. A load of the same source always commits to the same name, so re-running a load
//! replaces its file instead of adding a second copy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tripline_core::{Classify, ErrorDomain, RowAccount, TripKind, YearMonth};
use url::Url;

pub mod encoding;

/// Errors of the lake, naming the object and the store.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The lake root is not a usable location.
    #[error("lake root '{root}': {message}")]
    Root {
        /// The root as given.
        root: String,
        /// What is wrong with it.
        message: String,
    },
    /// The object store failed.
    #[error("{action} {location}: {source}")]
    Store {
        /// What was being done.
        action: &'static str,
        /// The full location.
        location: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// The local disk is full.
    #[error(
        "disk full while writing {location}: free some space and re-run (nothing was committed)"
    )]
    DiskFull {
        /// The full location.
        location: String,
    },
    /// Encoding Parquet failed.
    #[error("writing Parquet to {location}: {source}")]
    Parquet {
        /// The full location.
        location: String,
        /// The encoder's error.
        source: parquet::errors::ParquetError,
    },
}

impl Classify for LakeError {
    fn domain(&self) -> ErrorDomain {
        match self {
            Self::Root { .. } => ErrorDomain::User,
            Self::Store { .. } | Self::DiskFull { .. } => ErrorDomain::External,
            Self::Parquet { .. } => ErrorDomain::Internal,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = LakeError> = std::result::Result<T, E>;

/// A data lake: an object store and the prefix of the lake root inside it.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    url: Url,
    local_root: Option<PathBuf>,
    /// For object storage: the store at the bucket root and the bucket's URL (`s3://bucket/`).
    bucket: Option<(Arc<dyn ObjectStore>, Url)>,
}

impl Lake {
    /// Open the lake at `root`: an object store URL (`file:///abs`, `s3://bucket/prefix`, `gs://bucket/prefix`) or
    /// a path, taken relative to `base_dir`. S3 and GCS credentials come from the usual environment variables
    /// (`AWS_*`, `GOOGLE_*`), never from the project files.
    pub fn open(root: &str, base_dir: &Path) -> Result<Self> {
        let bad = |message: String| LakeError::Root {
            root: root.to_string(),
            message,
        };
        let url = if root.contains("://") {
            Url::parse(root).map_err(|e| bad(e.to_string()))?
        } else {
            let path = base_dir.join(root);
            std::fs::create_dir_all(&path)
                .map_err(|e| bad(format!("cannot create {}: {e}", path.display())))?;
            let path = path.canonicalize().map_err(|e| bad(e.to_string()))?;
            Url::from_directory_path(&path).map_err(|()| bad("not an absolute path".into()))?
        };
        let bucket_url = || {
            Url::parse(&format!(
                "{}://{}/",
                url.scheme(),
                url.host_str().unwrap_or_default()
            ))
            .map_err(|e| bad(e.to_string()))
        };
        let (store, local_root, bucket): (Arc<dyn ObjectStore>, _, _) = match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("not a local path".into()))?;
                std::fs::create_dir_all(&path)
                    .map_err(|e| bad(format!("cannot create {}: {e}", path.display())))?;
                let fs = LocalFileSystem::new_with_prefix(&path).map_err(|e| bad(e.to_string()))?;
                (tripline_mapped::store(fs), Some(path), None)
            }
            "s3" | "s3a" => {
                let s3 = AmazonS3Builder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                let root: Arc<dyn ObjectStore> = Arc::new(s3);
                (
                    Arc::new(object_store::prefix::PrefixStore::new(
                        root.clone(),
                        url.path().trim_matches('/'),
                    )),
                    None,
                    Some((root, bucket_url()?)),
                )
            }
            "gs" => {
                let gcs = GoogleCloudStorageBuilder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                let root: Arc<dyn ObjectStore> = Arc::new(gcs);
                (
                    Arc::new(object_store::prefix::PrefixStore::new(
                        root.clone(),
                        url.path().trim_matches('/'),
                    )),
                    None,
                    Some((root, bucket_url()?)),
                )
            }
            other => {
                return Err(bad(format!(
                    "unsupported scheme '{other}': use file://, s3:// or gs://"
                )));
            }
        };
        Ok(Self {
            store,
            url,
            local_root,
            bucket,
        })
    }

    /// The object store, rooted at the lake root.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The lake root as a URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// For a lake on object storage: the store at the bucket root and the bucket's URL (`s3://bucket/`), for
    /// libraries that address objects by full URL (Delta tables).
    pub fn bucket(&self) -> Option<(&Arc<dyn ObjectStore>, &Url)> {
        self.bucket.as_ref().map(|(s, u)| (s, u))
    }

    /// The local directory of a `file://` lake.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// The full, user-facing location of a path in the lake (a file path for local lakes).
    pub fn display(&self, path: &ObjectPath) -> String {
        match &self.local_root {
            Some(root) => root.join(path.as_ref()).display().to_string(),
            None => format!("{}/{}", self.url.as_str().trim_end_matches('/'), path),
        }
    }

    /// Start writing a Parquet file that becomes visible at `path` only when committed.
    pub async fn stage_parquet(
        &self,
        path: ObjectPath,
        schema: SchemaRef,
    ) -> Result<StagedParquet> {
        self.clean_stale_staging(&path).await?;
        let staging = staging_path(&path, std::process::id());
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(131_072))
            .build();
        Ok(StagedParquet {
            lake: self.clone(),
            final_path: path,
            staging,
            schema,
            props,
            writer: None,
        })
    }

    /// Remove staging files a killed load of the same target left behind.
    async fn clean_stale_staging(&self, path: &ObjectPath) -> Result<()> {
        let Some(name) = path.filename() else {
            return Ok(());
        };
        let prefix = format!(".{name}.");
        if let Some(root) = &self.local_root {
            // Local multipart uploads stage under names the object store does not list: clean the directory itself.
            let dir = root
                .join(path.as_ref())
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| root.clone());
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            return Ok(());
        }
        let parent: ObjectPath = path
            .parts()
            .take(path.parts().count().saturating_sub(1))
            .collect();
        let stale: Vec<_> = self
            .store
            .list(Some(&parent))
            .try_filter(|m| {
                futures::future::ready(
                    m.location
                        .filename()
                        .is_some_and(|f| f.starts_with(&prefix)),
                )
            })
            .try_collect()
            .await
            .map_err(|source| self.store_error("listing", &parent, source))?;
        for meta in stale {
            self.store
                .delete(&meta.location)
                .await
                .map_err(|source| self.store_error("deleting", &meta.location, source))?;
        }
        Ok(())
    }

    /// Write a small JSON document atomically (a single put).
    pub async fn put_json<T: Serialize>(&self, path: &ObjectPath, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).expect("serialisable");
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(|source| self.store_error("writing", path, source))?;
        Ok(())
    }

    /// Read a JSON document written by [`Lake::put_json`]; `None` when it does not exist.
    pub async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &ObjectPath,
    ) -> Result<Option<T>> {
        match self.store.get(path).await {
            Ok(r) => {
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|source| self.store_error("reading", path, source))?;
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.store_error("reading", path, source)),
        }
    }

    /// All Parquet files under a prefix, with their sizes, in path order.
    pub async fn list_parquet(&self, prefix: &ObjectPath) -> Result<Vec<(ObjectPath, u64)>> {
        let mut files: Vec<(ObjectPath, u64)> = self
            .store
            .list(Some(prefix))
            .try_filter_map(|m| {
                let keep = m
                    .location
                    .filename()
                    .is_some_and(|f| f.ends_with(".parquet") && !f.starts_with('.'));
                futures::future::ready(Ok(keep.then_some((m.location, m.size))))
            })
            .try_collect()
            .await
            .map_err(|source| self.store_error("listing", prefix, source))?;
        files.sort();
        Ok(files)
    }

    fn store_error(
        &self,
        action: &'static str,
        path: &ObjectPath,
        source: object_store::Error,
    ) -> LakeError {
        let location = self.display(path);
        if is_disk_full(&source) {
            LakeError::DiskFull { location }
        } else {
            LakeError::Store {
                action,
                location,
                source,
            }
        }
    }
}

fn is_disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28))
        {
            return true;
        }
        if err.to_string().contains("No space left on device") {
            return true;
        }
        cur = err.source();
    }
    false
}

fn staging_path(path: &ObjectPath, pid: u32) -> ObjectPath {
    let name = path.filename().unwrap_or("file");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let staged = format!(".{name}.{pid}-{nanos}.partial");
    let parent: ObjectPath = path
        .parts()
        .take(path.parts().count().saturating_sub(1))
        .collect();
    parent.join(staged.as_str())
}

/// A Parquet file being written; invisible to readers until [`StagedParquet::commit`].
pub struct StagedParquet {
    lake: Lake,
    final_path: ObjectPath,
    staging: ObjectPath,
    schema: SchemaRef,
    /// The writer's settings before the first batch fits them to its columns ([`encoding::fit_encodings`]).
    props: WriterProperties,
    /// Opened by the first batch (or by a commit of no rows).
    writer: Option<AsyncArrowWriter<BufWriter>>,
}

impl StagedParquet {
    /// Append a batch.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.writer.is_none() {
            let props = encoding::fit_encodings(&self.props, batch);
            self.writer = Some(self.open(props)?);
        }
        let writer = self.writer.as_mut().expect("opened above");
        let written = writer.write(batch).await;
        written.map_err(|source| self.parquet_error(source))
    }

    fn open(&self, props: WriterProperties) -> Result<AsyncArrowWriter<BufWriter>> {
        AsyncArrowWriter::try_new(
            BufWriter::new(self.lake.store.clone(), self.staging.clone()),
            Arc::clone(&self.schema),
            Some(props),
        )
        .map_err(|source| self.parquet_error(source))
    }

    /// Finish the file and move it into place atomically; returns the committed path and its size in bytes.
    pub async fn commit(mut self) -> Result<CommittedFile> {
        let writer = match self.writer.take() {
            Some(writer) => writer,
            // No rows: still a valid (empty) file, so the load is recorded and replaces what was there.
            None => match self.open(self.props.clone()) {
                Ok(writer) => writer,
                Err(e) => {
                    self.abort().await;
                    return Err(e);
                }
            },
        };
        if let Err(source) = writer.close().await {
            let err = self.parquet_error(source);
            self.abort().await;
            return Err(err);
        }
        let store = self.lake.store.clone();
        if let Err(source) = store.rename(&self.staging, &self.final_path).await {
            let err = self
                .lake
                .store_error("committing", &self.final_path, source);
            self.abort().await;
            return Err(err);
        }
        let bytes = store
            .head(&self.final_path)
            .await
            .map_err(|source| self.lake.store_error("checking", &self.final_path, source))?
            .size;
        Ok(CommittedFile {
            location: self.lake.display(&self.final_path),
            path: self.final_path.clone(),
            bytes,
        })
    }

    /// Drop the staged file; the target keeps what it had.
    pub async fn abort(mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = writer.flush().await;
        }
        let _ = self.lake.store.delete(&self.staging).await;
        let _ = self.lake.clean_stale_staging(&self.final_path).await;
    }

    fn parquet_error(&self, source: parquet::errors::ParquetError) -> LakeError {
        let location = self.lake.display(&self.staging);
        if is_disk_full(&source) {
            LakeError::DiskFull { location }
        } else {
            LakeError::Parquet { location, source }
        }
    }
}

/// A file committed to the lake.
#[derive(Debug, Clone, Serialize)]
pub struct CommittedFile {
    /// Its path inside the lake.
    #[serde(serialize_with = "ser_path")]
    pub path: ObjectPath,
    /// Its full location, for people.
    pub location: String,
    /// Its size.
    pub bytes: u64,
}

fn ser_path<S: serde::Serializer>(p: &ObjectPath, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(p.as_ref())
}

/// Where raw files of a kind live: `raw/<kind>/year=YYYY/month=MM/` for trips, `raw/zones/` for the lookup.
///
/// Partition values are written zero-padded (`month=01`) and read back as text by the warehouse, so a filter on
/// `month = '01'` lists exactly that directory.
pub fn raw_dir(kind: TripKind, month: Option<YearMonth>) -> ObjectPath {
    let base = ObjectPath::from_iter(["raw", kind.name()]);
    match month {
        Some(m) if kind.is_trips() => base
            .join(format!("year={:04}", m.year).as_str())
            .join(format!("month={:02}", m.month).as_str()),
        _ => base,
    }
}

/// The record of one committed load, kept at `_tripline/loads/<kind>/<file>.json` beside the data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadRecord {
    /// The source's identity (its file name).
    pub source: String,
    /// Hash of the source bytes (xxh3-64, hex), to tell a changed source from a re-run of the same one.
    pub content_hash: String,
    /// The committed file, inside the lake.
    pub file: String,
    /// The month partition, for trip kinds.
    pub month: Option<YearMonth>,
    /// The row account of the load.
    pub account: RowAccount,
    /// When it was committed (seconds since the epoch).
    pub committed_at: u64,
}

/// Where the load record of a committed file lives.
pub fn load_record_path(kind: TripKind, file_name: &str) -> ObjectPath {
    ObjectPath::from_iter([
        "_tripline",
        "loads",
        kind.name(),
        &format!("{file_name}.json"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(values: &[i32]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(values.to_vec()))]).unwrap()
    }

    #[test]
    fn partition_directories_are_zero_padded_hive_style() {
        let m = YearMonth::new(2021, 3).unwrap();
        assert_eq!(
            raw_dir(TripKind::Yellow, Some(m)).as_ref(),
            "raw/yellow/year=2021/month=03"
        );
        assert_eq!(raw_dir(TripKind::Zones, Some(m)).as_ref(), "raw/zones");
    }

    #[tokio::test]
    async fn a_staged_file_is_invisible_until_committed_and_replaces_on_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open("lake", dir.path()).unwrap();
        let path = raw_dir(TripKind::Yellow, YearMonth::new(2021, 1)).join("f.parquet");
        let dir_prefix = raw_dir(TripKind::Yellow, None);

        let mut staged = lake
            .stage_parquet(path.clone(), batch(&[1]).schema())
            .await
            .unwrap();
        staged.write(&batch(&[1, 2, 3])).await.unwrap();
        assert!(
            lake.list_parquet(&dir_prefix).await.unwrap().is_empty(),
            "visible before commit"
        );
        let committed = staged.commit().await.unwrap();
        assert!(
            committed
                .location
                .ends_with("raw/yellow/year=2021/month=01/f.parquet")
        );

        let mut again = lake
            .stage_parquet(path.clone(), batch(&[1]).schema())
            .await
            .unwrap();
        again.write(&batch(&[7])).await.unwrap();
        again.commit().await.unwrap();
        let files = lake.list_parquet(&dir_prefix).await.unwrap();
        assert_eq!(files.len(), 1, "re-run must replace, not add: {files:?}");
        let local = lake.local_root().unwrap().join(path.as_ref());
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(local).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 1);
    }

    #[tokio::test]
    async fn a_staged_file_fits_its_encodings_to_its_first_batch_and_an_empty_commit_is_a_valid_file()
     {
        use arrow::array::{Int32Array, Int64Array};
        use arrow::datatypes::{DataType, Field, Schema};
        use parquet::basic::Encoding;
        use parquet::file::reader::{FileReader, SerializedFileReader};

        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open("lake", dir.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("pickup", DataType::Int64, true),
            Field::new("zone", DataType::Int32, true),
        ]));
        // Unique timestamps in scrambled order, and a zone id of 265 values.
        let n = 20_000i64;
        let pickup = Int64Array::from_iter_values(
            (0..n).map(|i| 1_672_531_200_000_000 + (i * 7_919 % n) * 1_000_003),
        );
        let zone = Int32Array::from_iter_values((0..n).map(|i| (i * 31 % 265) as i32));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(pickup), Arc::new(zone)])
                .unwrap();
        let path = raw_dir(TripKind::Yellow, YearMonth::new(2023, 1)).join("fit.parquet");
        let mut staged = lake
            .stage_parquet(path.clone(), Arc::clone(&schema))
            .await
            .unwrap();
        staged.write(&batch).await.unwrap();
        staged.commit().await.unwrap();

        let local = lake.local_root().unwrap().join(path.as_ref());
        let reader = SerializedFileReader::new(std::fs::File::open(local).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), n);
        let rg = reader.metadata().row_group(0);
        let dictionary = |i: usize| {
            rg.column(i)
                .encodings()
                .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY))
        };
        assert!(!dictionary(0), "unique timestamps are written plain");
        assert!(dictionary(1), "zone ids keep their dictionary");

        // No rows at all: the file is still committed, readable and empty.
        let empty = raw_dir(TripKind::Yellow, YearMonth::new(2023, 2)).join("empty.parquet");
        let staged = lake.stage_parquet(empty.clone(), schema).await.unwrap();
        staged.commit().await.unwrap();
        let local = lake.local_root().unwrap().join(empty.as_ref());
        let reader = SerializedFileReader::new(std::fs::File::open(local).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    }

    #[tokio::test]
    async fn an_aborted_or_killed_load_leaves_no_visible_file_and_its_staging_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open("lake", dir.path()).unwrap();
        let path = raw_dir(TripKind::Green, YearMonth::new(2021, 1)).join("g.parquet");
        let mut staged = lake
            .stage_parquet(path.clone(), batch(&[1]).schema())
            .await
            .unwrap();
        staged.write(&batch(&[1])).await.unwrap();
        staged.abort().await;
        // A leftover from a killed process:
        let partition = lake
            .local_root()
            .unwrap()
            .join(raw_dir(TripKind::Green, YearMonth::new(2021, 1)).as_ref());
        std::fs::create_dir_all(&partition).unwrap();
        std::fs::write(partition.join(".g.parquet.1-2.partial"), b"junk").unwrap();
        let staged = lake
            .stage_parquet(path.clone(), batch(&[1]).schema())
            .await
            .unwrap();
        staged.abort().await;
        let left: Vec<_> = std::fs::read_dir(&partition)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let e = Lake::open("ftp://x/y", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported scheme 'ftp'"), "{e}");
    }
}
