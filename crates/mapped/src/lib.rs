//! The lake's local file store: large reads are served from memory maps instead of being copied by `read()`.
//!
//! object_store's [`LocalFileSystem`] answers a ranged read by zeroing a fresh buffer and `pread`ing the file into
//! it. For a scan of Parquet column chunks that is the bulk of the work outside decoding: a fresh `tripline sql`
//! over 30M local rows spent 12% of its samples in the kernel's copy to user space and 5% in the zeroing. A
//! [`MappedFs`] serves the same reads, [`ObjectStore::get_ranges`] of at least [`MIN_MAPPED`] bytes, as
//! [`Bytes`] that borrow the page cache through a read-only private map, pre-faulted (`MAP_POPULATE`) because
//! every byte of a column chunk is decoded. Everything else (small reads such as footers, listing, writes,
//! renames) goes to the wrapped [`LocalFileSystem`] unchanged, and so do reads it would reject (a missing file, a
//! range past the end), so errors are exactly its errors.
//!
//! The one caveat of any memory map: a file truncated by another process while a query reads it makes that read
//! fault (`SIGBUS`) rather than fail. The lake never rewrites a file in place (Delta data files are immutable and
//! `ingest` commits by rename; a map keeps the replaced file alive), so only a person truncating a lake file by
//! hand during a query can hit it.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The total size of a [`ObjectStore::get_ranges`] call from which it is served from maps: below it, one `pread`
/// costs less than setting up and tearing down the mappings.
pub const MIN_MAPPED: u64 = 256 << 10;

/// A [`LocalFileSystem`] whose large ranged reads come from memory maps.
#[derive(Debug)]
pub struct MappedFs {
    inner: LocalFileSystem,
}

impl MappedFs {
    /// Wraps a local file system; its prefix, if any, stays the root of every path.
    pub fn new(inner: LocalFileSystem) -> Self {
        Self { inner }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &LocalFileSystem {
        &self.inner
    }
}

impl fmt::Display for MappedFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mapped({})", self.inner)
    }
}

/// The ranges of `path` as maps, or `None` when the file cannot be opened or a range is not within it (the
/// wrapped store then reads and reports the error its own way).
fn map_ranges(path: &std::path::Path, ranges: &[Range<u64>]) -> Option<Vec<Bytes>> {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if ranges.iter().any(|r| r.start > r.end || r.end > len) {
        return None;
    }
    ranges.iter().map(|r| map(&file, r.clone())).collect()
}

/// One range of an open file, mapped read-only and pre-faulted.
#[allow(unsafe_code)]
fn map(file: &File, range: Range<u64>) -> Option<Bytes> {
    if range.is_empty() {
        return Some(Bytes::new());
    }
    let len = usize::try_from(range.end - range.start).ok()?;
    // SAFETY: the map is private and read-only, so this process cannot change the file through it, and it is
    // owned by the returned `Bytes`, so it outlives every slice of it. What Rust cannot rule out is another process
    // truncating the file meanwhile; the lake never does (module docs).
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(range.start)
            .len(len)
            .populate()
            .map(file)
    }
    .ok()?;
    Some(Bytes::from_owner(map))
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for MappedFs {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
        if total >= MIN_MAPPED {
            let path = self.inner.path_to_filesystem(location)?;
            let wanted = ranges.to_vec();
            // Pre-faulting reads the file when it is not cached: off the async workers, like the wrapped store.
            let mapped = match tokio::runtime::Handle::try_current() {
                Ok(runtime) => runtime
                    .spawn_blocking(move || map_ranges(&path, &wanted))
                    .await
                    .ok()
                    .flatten(),
                Err(_) => map_ranges(&path, &wanted),
            };
            if let Some(mapped) = mapped {
                return Ok(mapped);
            }
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A shared [`MappedFs`] over a local file system, ready to register where an `Arc<dyn ObjectStore>` is wanted.
pub fn store(inner: LocalFileSystem) -> Arc<dyn ObjectStore> {
    Arc::new(MappedFs::new(inner))
}

/// The one [`MappedFs`] over the whole file system (paths from `/`), as the `file://` stores of DataFusion and
/// deltalake are.
pub fn root() -> Arc<dyn ObjectStore> {
    static ROOT: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    Arc::clone(ROOT.get_or_init(|| store(LocalFileSystem::new())))
}

#[cfg(test)]
// The tests pass lists of byte ranges, some of one range.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    fn lake() -> (tempfile::TempDir, MappedFs, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(3 * MIN_MAPPED as usize))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::create_dir_all(dir.path().join("raw")).unwrap();
        std::fs::write(dir.path().join("raw/a.parquet"), &data).unwrap();
        let fs = MappedFs::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        (dir, fs, data)
    }

    #[tokio::test]
    async fn large_and_small_reads_return_the_file_bytes() {
        let (_dir, fs, data) = lake();
        let path = Path::from("raw/a.parquet");
        // Unaligned offsets, an empty range, and one range ending at the end of the file.
        let ranges = [
            7..MIN_MAPPED + 13,
            MIN_MAPPED..MIN_MAPPED,
            2 * MIN_MAPPED + 1..3 * MIN_MAPPED,
        ];
        let got = fs.get_ranges(&path, &ranges).await.unwrap();
        for (r, bytes) in ranges.iter().zip(&got) {
            assert_eq!(&bytes[..], &data[r.start as usize..r.end as usize]);
        }
        let small = fs.get_ranges(&path, &[10..20]).await.unwrap();
        assert_eq!(&small[0][..], &data[10..20]);
        let footer = fs.get_range(&path, 100..108).await.unwrap();
        assert_eq!(&footer[..], &data[100..108]);
    }

    #[tokio::test]
    async fn errors_are_the_local_file_systems() {
        let (_dir, fs, _data) = lake();
        let missing = fs
            .get_ranges(&Path::from("raw/missing.parquet"), &[0..MIN_MAPPED])
            .await
            .unwrap_err();
        assert!(
            matches!(missing, object_store::Error::NotFound { .. }),
            "{missing}"
        );
        let past_end = fs
            .get_ranges(&Path::from("raw/a.parquet"), &[0..4 * MIN_MAPPED])
            .await
            .unwrap_err();
        let expected = fs
            .inner()
            .get_ranges(&Path::from("raw/a.parquet"), &[0..4 * MIN_MAPPED])
            .await
            .unwrap_err();
        assert_eq!(past_end.to_string(), expected.to_string());
    }

    #[tokio::test]
    async fn writes_lists_and_renames_reach_the_file_system() {
        let (dir, fs, _data) = lake();
        fs.put(
            &Path::from("warehouse/t/_tmp"),
            PutPayload::from_static(b"x"),
        )
        .await
        .unwrap();
        fs.rename(
            &Path::from("warehouse/t/_tmp"),
            &Path::from("warehouse/t/0.json"),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("warehouse/t/0.json")).unwrap(),
            b"x"
        );
        let listed = fs
            .list_with_delimiter(Some(&Path::from("warehouse/t")))
            .await
            .unwrap();
        assert_eq!(listed.objects.len(), 1);
    }

    #[test]
    fn maps_without_a_runtime() {
        let (dir, _fs, data) = lake();
        let got = map_ranges(&dir.path().join("raw/a.parquet"), &[5..MIN_MAPPED]).unwrap();
        assert_eq!(&got[0][..], &data[5..MIN_MAPPED as usize]);
    }
}
