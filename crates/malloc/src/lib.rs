//! glibc malloc settings for a short-lived process that streams large Arrow buffers.
//!
//! With glibc's defaults a query pays for its buffers twice: every allocation above the mmap threshold (128 KiB,
//! rising only as such chunks are freed) is a fresh `mmap` whose pages fault in one by one and are zeroed by the
//! kernel, and freed heap tops are handed back at 128 KiB. And each thread that finds an arena busy gets one of its
//! own (up to eight per core), memory freed into one arena is not reused by another, and more fresh pages are
//! touched. A fresh `tripline sql` process running the course's monthly zone
//! revenue over 30M rows spent ~20k page faults and a sixth of its wall time this way (0.24 s; 0.20 s with the
//! settings below, peak RSS unchanged at ~100 MiB; bench/RESULTS.md).
//!
//! [`tune`] sets, before any thread is started:
//! - `M_ARENA_MAX` to the cores available: one arena per worker thread, as many as can run at once;
//! - `M_MMAP_THRESHOLD` to 32 MiB: Parquet pages, Arrow batches and hash tables come from the heap and are reused;
//! - `M_TRIM_THRESHOLD` to 128 MiB: free memory at the heap top is kept up to that size rather than returned and
//!   faulted in again by the next batch.
//!
//! Elsewhere than Linux with glibc (musl, macOS) it does nothing, and it leaves malloc alone when `GLIBC_TUNABLES`
//! holds any `glibc.malloc.` setting: the user's own tuning wins.

/// Apply the settings above. Call first thing in `main`, before a thread or a large allocation exists.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::tune();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod glibc {
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    const TRIM_THRESHOLD: libc::c_int = 128 << 20;

    pub(super) fn tune() {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        for (param, value) in [
            (libc::M_ARENA_MAX, arenas),
            (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        ] {
            // SAFETY: `mallopt` only changes allocator parameters (it takes malloc's own lock); a rejected value
            // returns 0 and leaves the default, which is what we want then too.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}
