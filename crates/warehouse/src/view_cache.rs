//! A view's result, computed once and reused while nothing under it changes: for runs that read the same view
//! many times, like a dbt build (a staging view is read by each of its data tests and by the models built on it;
//! the course's `stg_yellow_tripdata` five times, each a sort of every trip to drop duplicates).
//!
//! Off unless a caller turns it on ([`crate::Warehouse::cache_view_results`]) and names the views worth keeping
//! ([`crate::Warehouse::keep_view_result`]: those read more than once; a view read once is better read with only
//! the columns and rows its reader needs); `tripline sql` never does. While on:
//! - the first read of a named view runs its query in full and keeps the batches in memory, if they fit the budget
//!   (a view bigger than that is marked as such and read as usual from then on); reads that arrive meanwhile wait
//!   for it instead of running the query again;
//! - every statement that writes counts as a write of its table (a `CREATE OR REPLACE`, `INSERT`, `MERGE`,
//!   `DROP`...; a statement whose table is not known counts as a write of every table), before it starts and
//!   after it ends. A kept result is used only when no table under the view, views under it included, was
//!   written since its query started; otherwise the query runs again.
//!
//! Tables changed by another process while the cache is on are not seen until this process writes under the
//! view; a dbt build reads its sources as of its start anyway.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlanProperties;
use futures::StreamExt;

use crate::kept_table::KeptTable;
use crate::statement::{Statement, TableName};
use crate::view::ViewProvider;

/// Which table a statement writes.
pub(crate) enum Written {
    /// Reads only.
    Nothing,
    /// This table (dataset.table).
    Table(String),
    /// Not known: counts as every table.
    Unknown,
}

/// What `statement` writes.
pub(crate) fn written(statement: &Statement) -> Written {
    use datafusion::sql::sqlparser::ast;
    let named = |n: &TableName| Written::Table(n.to_string());
    let object = |o: &ast::ObjectName| match crate::dml::table_name_of(o) {
        Ok(n) => named(&n),
        Err(_) => Written::Unknown,
    };
    let factor = |f: &ast::TableFactor| match f {
        ast::TableFactor::Table { name, .. } => object(name),
        _ => Written::Unknown,
    };
    match statement {
        Statement::Query(q) => {
            let head: String = q
                .trim_start()
                .chars()
                .take(8)
                .collect::<String>()
                .to_ascii_lowercase();
            if ["select", "with", "values", "explain", "("]
                .iter()
                .any(|k| head.starts_with(k))
            {
                Written::Nothing
            } else {
                Written::Unknown
            }
        }
        Statement::ShowTables { .. }
        | Statement::Describe { .. }
        | Statement::DescribeHistory { .. } => Written::Nothing,
        Statement::CreateTable(c) => named(&c.name),
        Statement::CreateExternalTable(c) => named(&c.name),
        Statement::CreateView(c) => named(&c.name),
        Statement::DropView { name, .. }
        | Statement::DropTable { name, .. }
        | Statement::Optimize { name, .. }
        | Statement::Restore { name, .. } => named(name),
        Statement::Insert(i) => match &i.table {
            ast::TableObject::TableName(o) => object(o),
            _ => Written::Unknown,
        },
        Statement::Delete(d) => match &d.from {
            ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => {
                match t.as_slice() {
                    [one] => factor(&one.relation),
                    _ => Written::Unknown,
                }
            }
        },
        Statement::Update(u) => factor(&u.table.relation),
        Statement::Merge(m) => factor(&m.table),
    }
}

/// Write counts: one per table, and one for writes to tables not known.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    unknown: u64,
    tables: Vec<(String, u64)>,
}

/// A view's kept result, or the note that it is not kept (bigger than the budget, or its batches do not fit the
/// view's schema as the catalog has it): read as usual until something under it changes.
enum Kept {
    Batches(Arc<KeptTable>),
    NotKept,
}

/// The state of one view's cache entry: what was kept and the write counts when its query started.
type Entry = Option<(Kept, Counts)>;

/// The cache of one warehouse (see the module documentation).
#[derive(Default)]
pub(crate) struct ViewCache {
    /// Bytes one view's result may take; 0: off.
    budget: AtomicUsize,
    writes: Mutex<(u64, HashMap<String, u64>)>,
    /// The views to keep.
    wanted: Mutex<BTreeSet<String>>,
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
    /// Queries of views run to keep their results, and reads answered from a kept result.
    pub(crate) computed: AtomicU64,
    pub(crate) reused: AtomicU64,
}

impl std::fmt::Debug for ViewCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewCache")
            .field("budget", &self.budget.load(Ordering::Relaxed))
            .finish()
    }
}

/// Counts a statement's write before it starts and again when dropped (after it ends, failed or not).
pub(crate) struct WriteGuard<'a> {
    cache: &'a ViewCache,
    written: Written,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.cache.count(&self.written);
    }
}

impl ViewCache {
    /// Keep view results of at most `budget` bytes each (0: stop keeping them and drop those kept).
    pub(crate) fn set_budget(&self, budget: usize) {
        self.budget.store(budget, Ordering::SeqCst);
        if budget == 0 {
            self.entries.lock().expect("view cache lock").clear();
        }
    }

    /// Keep `view`'s result from its next read on.
    pub(crate) fn want(&self, view: &str) {
        self.wanted
            .lock()
            .expect("view cache lock")
            .insert(view.to_string());
    }

    /// Drop what is kept of `view`, and keep it no longer.
    pub(crate) fn forget(&self, view: &str) {
        self.wanted.lock().expect("view cache lock").remove(view);
        self.entries.lock().expect("view cache lock").remove(view);
    }

    fn wanted(&self, view: &str) -> bool {
        self.wanted.lock().expect("view cache lock").contains(view)
    }

    fn budget(&self) -> usize {
        self.budget.load(Ordering::SeqCst)
    }

    fn count(&self, written: &Written) {
        let mut w = self.writes.lock().expect("view cache lock");
        match written {
            Written::Nothing => {}
            Written::Table(t) => *w.1.entry(t.clone()).or_default() += 1,
            Written::Unknown => w.0 += 1,
        }
    }

    /// Count `statement`'s write now and when the returned guard is dropped.
    pub(crate) fn write(&self, statement: &Statement) -> WriteGuard<'_> {
        let written = written(statement);
        self.count(&written);
        WriteGuard {
            cache: self,
            written,
        }
    }

    fn counts(&self, tables: &BTreeSet<String>) -> Counts {
        let w = self.writes.lock().expect("view cache lock");
        Counts {
            unknown: w.0,
            tables: tables
                .iter()
                .map(|t| (t.clone(), w.1.get(t).copied().unwrap_or(0)))
                .collect(),
        }
    }

    fn entry(&self, view: &str) -> Arc<tokio::sync::Mutex<Entry>> {
        self.entries
            .lock()
            .expect("view cache lock")
            .entry(view.to_string())
            .or_default()
            .clone()
    }
}

/// Every table and view a plan reads, views' own tables included (`dataset.table`).
pub(crate) fn tables_under(plan: &LogicalPlan, out: &mut BTreeSet<String>) {
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = match scan.table_name.schema() {
                Some(s) => format!("{s}.{}", scan.table_name.table()),
                None => scan.table_name.table().to_string(),
            };
            if out.insert(name)
                && let Ok(provider) = source_as_provider(&scan.source)
                && let Some(view) = provider.downcast_ref::<ViewProvider>()
            {
                view.tables_under(out);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

/// The kept result of `view` (named `key`), computing it when there is none or it is out of date; `None` when the
/// cache is off, the result is bigger than the budget, or its query fails (the caller then reads the view as
/// usual and reports the error).
pub(crate) async fn kept(
    cache: &ViewCache,
    key: &str,
    view: &ViewProvider,
    schema: &SchemaRef,
) -> Option<Arc<dyn TableProvider>> {
    let budget = cache.budget();
    if budget == 0 || !cache.wanted(key) {
        return None;
    }
    let entry = cache.entry(key);
    let mut entry = entry.lock().await;
    // The view itself counts: replacing it changes its result as much as writing a table under it.
    let mut tables = BTreeSet::from([key.to_string()]);
    let plan = view.plan().await.ok()?;
    tables_under(&plan, &mut tables);
    let now = cache.counts(&tables);
    if let Some((kept, counts)) = entry.as_ref()
        && *counts == now
    {
        return match kept {
            Kept::Batches(m) => {
                cache.reused.fetch_add(1, Ordering::Relaxed);
                Some(Arc::clone(m) as Arc<dyn TableProvider>)
            }
            Kept::NotKept => None,
        };
    }
    cache.computed.fetch_add(1, Ordering::Relaxed);
    let kept = compute(view, plan, schema, budget).await;
    let answer = match &kept {
        Some(Kept::Batches(m)) => Some(Arc::clone(m) as Arc<dyn TableProvider>),
        _ => None,
    };
    *entry = kept.map(|k| (k, now));
    answer
}

/// Run the view's query and keep its batches if they fit `budget`; `None` when the query fails (the reader runs
/// it again and reports the error; the next read tries again).
async fn compute(
    view: &ViewProvider,
    plan: LogicalPlan,
    schema: &SchemaRef,
    budget: usize,
) -> Option<Kept> {
    let ctx = view.session();
    let physical = ctx.state().create_physical_plan(&plan).await.ok()?;
    let partitions = physical.output_partitioning().partition_count().max(1);
    let mut stream = datafusion::physical_plan::execute_stream(physical, ctx.task_ctx()).ok()?;
    let mut out: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
    let (mut bytes, mut n) = (0usize, 0usize);
    while let Some(batch) = stream.next().await {
        let batch = batch.ok()?;
        bytes += batch.get_array_memory_size();
        if bytes > budget {
            return Some(Kept::NotKept);
        }
        // The view's own schema (its names and nullability as the catalog has them).
        let Ok(batch) = RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec()) else {
            return Some(Kept::NotKept);
        };
        out[n % partitions].push(batch);
        n += 1;
    }
    match KeptTable::try_new(Arc::clone(schema), out) {
        Ok(table) => Some(Kept::Batches(Arc::new(table))),
        Err(_) => Some(Kept::NotKept),
    }
}
