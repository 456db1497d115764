//! The session a `CREATE TABLE ... AS SELECT` runs its query in.
//!
//! A partitioned or clustered table is written sorted (partition, then cluster columns) so its files hold runs of
//! the cluster keys; the sort must not hold the table in memory. The query is planned in a session whose memory pool
//! is bounded: the sort spills sorted runs to disk past [`SORT_MEMORY`] and merges them, and the writer
//! (`parallel_ctas`) reads the merged stream once.

use datafusion::error::Result;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};

/// Memory the query of a CTAS (its sort, above all) may hold before spilling to disk.
pub(crate) const SORT_MEMORY: usize = 2 << 30;

/// `state` with its memory pool bounded by [`SORT_MEMORY`] (same object stores, caches and spill directory).
pub(crate) fn bounded(state: &SessionState) -> Result<SessionState> {
    let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
        .with_memory_limit(SORT_MEMORY, 1.0)
        .build_arc()?;
    Ok(SessionStateBuilder::new_from_existing(state.clone())
        .with_runtime_env(runtime)
        .build())
}
