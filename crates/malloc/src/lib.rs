//! glibc malloc settings for a short-lived process that streams large Arrow buffers.
//!
//! With glibc's defaults a query pays for its buffers twice: every allocation above the mmap threshold (128 KiB,
//! rising only as such chunks are freed) is a fresh `mmap` whose pages fault in one by one and are zeroed by the
//! kernel, and freed heap tops are handed back at 128 KiB. And each thread that finds an arena busy gets one of its
//! own (up to eight per core), memory freed into one arena is not reused by another, and more fresh pages are
//! touched. A fresh `tripline sql` process running the course's monthly zone revenue over 30M rows spent ~20k page
//! faults and a sixth of its wall time this way (0.24 s; 0.20 s with the settings below, peak RSS unchanged at
//! ~100 MiB; bench/RESULTS.md).
//!
//! [`tune`] sets, before any thread is started:
//! - `M_ARENA_MAX` to the cores available: one arena per worker thread, as many as can run at once;
//! - `M_MMAP_THRESHOLD` to 32 MiB: Parquet pages, Arrow batches and hash tables come from the heap and are reused;
//! - `M_TRIM_THRESHOLD` to 128 MiB: free memory at the heap top is kept up to that size rather than returned and
//!   faulted in again by the next batch.
//!
//! Elsewhere than Linux with glibc (musl, macOS) it does nothing, and it leaves malloc alone when `GLIBC_TUNABLES`
//! holds any `glibc.malloc.` setting: the user's own tuning wins.

/// One allocator setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `M_ARENA_MAX`: arenas at most.
    ArenaMax(usize),
    /// `M_MMAP_THRESHOLD`: bytes from which an allocation is its own `mmap`.
    MmapThreshold(usize),
    /// `M_TRIM_THRESHOLD`: free bytes at the heap top kept before they are returned.
    TrimThreshold(usize),
}

/// What [`tune`] applies, given `GLIBC_TUNABLES` and the cores available: nothing when the user tunes malloc.
pub fn settings(tunables: Option<&str>, cores: usize) -> Vec<Setting> {
    if tunables.is_some_and(|t| t.contains("glibc.malloc.")) {
        return Vec::new();
    }
    vec![
        Setting::ArenaMax(cores.max(1)),
        Setting::MmapThreshold(32 << 20),
        Setting::TrimThreshold(128 << 20),
    ]
}

/// Apply [`settings`] for this process and return them (none off glibc). Call first thing in `main`, before a
/// thread or a large allocation exists.
pub fn tune() -> Vec<Setting> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Vec::new();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chosen = settings(std::env::var("GLIBC_TUNABLES").ok().as_deref(), cores);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    chosen.iter().for_each(|s| glibc::apply(*s));
    chosen
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod glibc {
    use super::Setting;

    pub(super) fn apply(setting: Setting) {
        let (param, value) = match setting {
            Setting::ArenaMax(n) => (libc::M_ARENA_MAX, n),
            Setting::MmapThreshold(n) => (libc::M_MMAP_THRESHOLD, n),
            Setting::TrimThreshold(n) => (libc::M_TRIM_THRESHOLD, n),
        };
        let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only changes allocator parameters (it takes malloc's own lock); a rejected value
        // returns 0 and leaves the default, which is what we want then too.
        unsafe {
            libc::mallopt(param, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_arena_per_core_and_large_thresholds() {
        assert_eq!(
            settings(None, 2),
            [
                Setting::ArenaMax(2),
                Setting::MmapThreshold(32 << 20),
                Setting::TrimThreshold(128 << 20)
            ]
        );
        assert_eq!(
            settings(Some("glibc.rtld.optional_static_tls=512"), 0)[0],
            Setting::ArenaMax(1)
        );
    }

    #[test]
    fn the_users_malloc_tunables_win() {
        assert!(settings(Some("glibc.malloc.arena_max=8"), 2).is_empty());
        assert!(settings(Some("glibc.rtld.x=1:glibc.malloc.hugetlb=1"), 2).is_empty());
    }

    #[test]
    fn tune_applies_them_on_glibc() {
        let applied = tune();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            assert_eq!(
                applied,
                settings(std::env::var("GLIBC_TUNABLES").ok().as_deref(), cores)
            );
        } else {
            assert!(applied.is_empty());
        }
        // The allocator still works after the change, across threads.
        let sizes: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| s.spawn(move || vec![i as u8; 40 << 20].len()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(sizes, [40 << 20; 4]);
    }
}
