//! Running a selection along the DAG: up to `--threads` nodes at once, each as soon as its parents are done;
//! the children of a failed node are skipped; `--fail-fast` stops at the first failure; `build` runs each node's
//! tests before that node's children.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::task::JoinSet;

use super::results::{NodeResult, NodeStatus, RunResults};
use super::{NodeRun, hooks};
use crate::adapters::RunAdapter;
use crate::error::{DbtError, Result};
use crate::node::ResourceType;
use crate::parse::DbtProject;
use crate::select::Selection;

/// Which dbt command is running: it decides which resource types of the selection run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunCommand {
    /// `dbt run`: models.
    Run,
    /// `dbt test`: data tests.
    Test,
    /// `dbt seed`: seeds.
    Seed,
    /// `dbt snapshot`: snapshots.
    Snapshot,
    /// `dbt build`: seeds, models, snapshots and tests, tests before the children of what they test.
    Build,
}

impl RunCommand {
    /// Whether nodes of this type run in this command.
    pub fn runs(self, t: ResourceType) -> bool {
        match self {
            Self::Run => t == ResourceType::Model,
            Self::Test => t == ResourceType::Test,
            Self::Seed => t == ResourceType::Seed,
            Self::Snapshot => t == ResourceType::Snapshot,
            Self::Build => matches!(
                t,
                ResourceType::Model
                    | ResourceType::Seed
                    | ResourceType::Snapshot
                    | ResourceType::Test
            ),
        }
    }

    /// The command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Test => "test",
            Self::Seed => "seed",
            Self::Snapshot => "snapshot",
            Self::Build => "build",
        }
    }
}

/// dbt's flags for a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The command.
    pub command: RunCommand,
    /// Nodes run at once.
    pub threads: usize,
    /// Stop at the first failure.
    pub fail_fast: bool,
    /// `--full-refresh`: rebuild incremental models and seeds from scratch.
    pub full_refresh: bool,
    /// `--store-failures`: store the failing rows of every test.
    pub store_failures: bool,
}

/// What the executor reports while it runs, for the CLI to print.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A node started: its index among `total`.
    Started {
        /// 1-based position.
        index: usize,
        /// Nodes in the run.
        total: usize,
        /// The node.
        unique_id: String,
    },
    /// A node ended (or was skipped).
    Finished {
        /// 1-based position.
        index: usize,
        /// Nodes in the run.
        total: usize,
        /// Its result.
        result: NodeResult,
    },
}

/// A callback receiving [`RunEvent`]s.
pub type EventSink = Arc<dyn Fn(RunEvent) + Send + Sync>;

/// The nodes of a selection that `command` runs (ephemeral models and analyses never run).
pub fn runnable_nodes(
    project: &DbtProject,
    selection: &Selection,
    command: RunCommand,
) -> Vec<String> {
    selection
        .in_order()
        .filter(|id| {
            project.manifest.nodes.get(*id).is_some_and(|n| {
                n.config.enabled && command.runs(n.resource_type) && !n.is_ephemeral()
            })
        })
        .cloned()
        .collect()
}

/// For each node, the nodes of `set` it waits for: its nearest ancestors in `set`, through nodes not in it.
fn dependencies(
    project: &DbtProject,
    set: &BTreeSet<String>,
    build: bool,
) -> HashMap<String, BTreeSet<String>> {
    let parents = &project.graph.parents;
    let mut memo: HashMap<String, BTreeSet<String>> = HashMap::new();
    fn nearest(
        id: &str,
        parents: &BTreeMap<String, Vec<String>>,
        set: &BTreeSet<String>,
        memo: &mut HashMap<String, BTreeSet<String>>,
    ) -> BTreeSet<String> {
        if let Some(found) = memo.get(id) {
            return found.clone();
        }
        let mut out = BTreeSet::new();
        for p in parents.get(id).into_iter().flatten() {
            if set.contains(p) {
                out.insert(p.clone());
            } else {
                out.extend(nearest(p, parents, set, memo));
            }
        }
        memo.insert(id.to_string(), out.clone());
        out
    }
    let mut deps: HashMap<String, BTreeSet<String>> = set
        .iter()
        .map(|id| (id.clone(), nearest(id, parents, set, &mut memo)))
        .collect();
    if build {
        // dbt's rule: a test runs before every node whose ancestors include everything the test depends on.
        let tests: Vec<&crate::node::Node> = set
            .iter()
            .filter_map(|id| project.manifest.nodes.get(id))
            .filter(|n| n.resource_type == ResourceType::Test)
            .collect();
        if !tests.is_empty() {
            for id in set {
                let is_test = project
                    .manifest
                    .nodes
                    .get(id)
                    .is_some_and(|n| n.resource_type == ResourceType::Test);
                if is_test {
                    continue;
                }
                let ancestors = project.graph.ancestors(id, None);
                for test in &tests {
                    let parents = &test.depends_on.nodes;
                    if !parents.is_empty() && parents.iter().all(|p| ancestors.contains(p)) {
                        deps.entry(id.clone())
                            .or_default()
                            .insert(test.unique_id.clone());
                    }
                }
            }
        }
    }
    deps
}

/// Run the selected nodes of `command` on `adapter`, reporting progress through `events`.
pub async fn execute(
    project: Arc<DbtProject>,
    adapter: Arc<dyn RunAdapter>,
    selection: &Selection,
    options: RunOptions,
    events: EventSink,
) -> Result<RunResults> {
    let started = Instant::now();
    let nodes = runnable_nodes(&project, selection, options.command);
    let total = nodes.len();
    let set: BTreeSet<String> = nodes.iter().cloned().collect();
    let deps = dependencies(&project, &set, options.command == RunCommand::Build);
    let order: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();

    // Schemas first, as dbt does, so parallel nodes do not race to create them.
    let mut schemas: BTreeMap<(Option<String>, String), crate::adapter::RelationName> =
        BTreeMap::new();
    for id in &nodes {
        let node = &project.manifest.nodes[id];
        if node.resource_type != ResourceType::Test {
            let r = &node.relation;
            schemas.insert((r.database.clone(), r.schema.clone()), r.clone());
        }
    }
    for relation in schemas.values() {
        adapter.create_schema(relation).await?;
    }
    if total > 0 {
        hooks::run_project_hooks(&project, &adapter, true).await?;
    }

    // How many nodes of the run read each node: a model read by several may be kept by the adapter for them, and
    // let go of when the last is done.
    let mut readers: HashMap<String, usize> = HashMap::new();
    for id in &nodes {
        for d in &deps[id] {
            *readers.entry(d.clone()).or_default() += 1;
        }
    }
    for (id, n) in &readers {
        if *n > 1
            && let Some(node) = project.manifest.nodes.get(id)
            && node.resource_type == ResourceType::Model
        {
            adapter.keep(&node.relation);
        }
    }
    let done_reading = |id: &str, readers: &mut HashMap<String, usize>| {
        for d in &deps[id] {
            if let Some(n) = readers.get_mut(d) {
                *n -= 1;
                if *n == 0
                    && let Some(node) = project.manifest.nodes.get(d)
                    && node.resource_type == ResourceType::Model
                {
                    adapter.release(&node.relation);
                }
            }
        }
    };

    let counter = Arc::new(AtomicUsize::new(0));
    let mut status: HashMap<String, NodeStatus> = HashMap::new();
    let mut pending: BTreeSet<String> = set.clone();
    let mut running: JoinSet<NodeResult> = JoinSet::new();
    let mut results = RunResults::default();
    let mut stop = false;
    let threads = options.threads.max(1);
    let mut thread_ids: Vec<usize> = (1..=threads).rev().collect();
    let mut thread_of: HashMap<String, usize> = HashMap::new();

    loop {
        // Start what is ready, parents first by selection order.
        let mut ready: Vec<String> = pending
            .iter()
            .filter(|id| deps[*id].iter().all(|d| status.contains_key(d)))
            .cloned()
            .collect();
        ready.sort_by_key(|id| order[id.as_str()]);
        let mut skipped_any = false;
        for id in ready {
            let blocked = stop || deps[&id].iter().any(|d| status[d].blocks_children());
            if blocked {
                pending.remove(&id);
                let index = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let reason = if stop {
                    "skipped: the run stopped at the first failure (--fail-fast)"
                } else {
                    "skipped: an upstream node failed"
                };
                let result = NodeResult::bare(&id, NodeStatus::Skipped, reason);
                status.insert(id.clone(), NodeStatus::Skipped);
                events(RunEvent::Finished {
                    index,
                    total,
                    result: result.clone(),
                });
                results.results.push(result);
                done_reading(&id, &mut readers);
                skipped_any = true;
                continue;
            }
            if running.len() >= threads {
                break;
            }
            pending.remove(&id);
            let index = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let thread = thread_ids.pop().unwrap_or(1);
            thread_of.insert(id.clone(), thread);
            events(RunEvent::Started {
                index,
                total,
                unique_id: id.clone(),
            });
            let run = NodeRun {
                project: project.clone(),
                adapter: adapter.clone(),
                full_refresh: options.full_refresh,
                store_failures: options.store_failures,
                thread_id: format!("Thread-{thread}"),
            };
            let events = events.clone();
            running.spawn(async move {
                let mut result = run.run(&id).await;
                result.thread_id = run.thread_id.clone();
                events(RunEvent::Finished {
                    index,
                    total,
                    result: result.clone(),
                });
                result
            });
        }
        if running.is_empty() {
            if pending.is_empty() {
                break;
            }
            if skipped_any {
                // The skipped nodes' children are ready to be skipped in turn.
                continue;
            }
            // Everything left waits on something that will never finish: cannot happen in a DAG.
            return Err(DbtError::Internal(format!(
                "the run is stuck with {} nodes waiting",
                pending.len()
            )));
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let result =
            joined.map_err(|e| DbtError::Internal(format!("a node's task failed: {e}")))?;
        if let Some(t) = thread_of.remove(&result.unique_id) {
            thread_ids.push(t);
        }
        if options.fail_fast && result.status.is_failure() {
            stop = true;
        }
        status.insert(result.unique_id.clone(), result.status);
        done_reading(&result.unique_id, &mut readers);
        results.results.push(result);
    }
    if total > 0 {
        hooks::run_project_hooks(&project, &adapter, false).await?;
    }
    results.elapsed = started.elapsed().as_secs_f64();
    Ok(results)
}
