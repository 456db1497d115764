//! The flow model: what a flow file says (`FlowSpec`, `TaskSpec`, retries, cache, schedules), its validation into a
//! runnable [`Flow`], and a [`Project`] (a directory of `flows/*.yaml`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::duration::parse_duration;
use crate::error::{FlowError, Result};
use crate::params::{ParamSpec, Params, resolve_params};
use crate::schedule::ScheduleSpec;
use crate::task::TaskRegistry;
use crate::template::{TEMPLATE_ROOTS, referenced_variables, visit_strings};

/// A flow as written: name, parameters, schedules and tasks. Build one in Rust or load it from YAML, then
/// validate it with [`Flow::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Unique name within the project (letters, digits, `_`, `-`).
    pub name: String,
    /// What the flow does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Declared parameters, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamSpec>,
    /// Cron schedules the worker runs the flow on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleSpec>,
    /// At most this many tasks of one run at once (default: the engine's limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// The tasks; order does not matter, `depends_on` (and references in templates) does.
    pub tasks: Vec<TaskSpec>,
}

impl FlowSpec {
    /// An empty flow with this name, to fill with [`FlowSpec::task`] and [`FlowSpec::param`].
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: None,
            params: BTreeMap::new(),
            schedules: Vec::new(),
            concurrency: None,
            tasks: Vec::new(),
        }
    }

    /// Adds a parameter.
    pub fn param(mut self, name: impl Into<String>, spec: ParamSpec) -> Self {
        self.params.insert(name.into(), spec);
        self
    }

    /// Adds a task.
    pub fn task(mut self, task: TaskSpec) -> Self {
        self.tasks.push(task);
        self
    }

    /// Adds a schedule.
    pub fn schedule(mut self, schedule: ScheduleSpec) -> Self {
        self.schedules.push(schedule);
        self
    }
}

/// One task of a flow: the engine's keys plus the type's own inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique id within the flow; used in templates as `tasks.<id>` (letters, digits, `_`).
    pub id: String,
    /// The task type (`shell`, `download`, `flow`, or a registered one).
    #[serde(rename = "type")]
    pub kind: String,
    /// What the task does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tasks that must complete first (tasks referenced as `tasks.<id>` in templates are added implicitly).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Extra attempts after a failure (0 = run once).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Wait between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<RetryDelay>,
    /// Limit of one attempt (`30s`, `10m`); a timed-out attempt fails and may be retried.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Reuse a previous result with the same cache key (type, rendered inputs, upstream outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CachePolicy>,
    /// The type's own keys (`command`, `url`, ...), templates not yet rendered.
    #[serde(flatten)]
    pub inputs: serde_json::Map<String, Json>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TaskSpec {
    /// A task of a type with no inputs yet.
    pub fn new(id: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            kind: kind.into(),
            description: None,
            depends_on: Vec::new(),
            retries: 0,
            retry_delay: None,
            timeout: None,
            cache: None,
            inputs: serde_json::Map::new(),
        }
    }

    /// Sets one input key.
    pub fn input(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.inputs.insert(key.into(), value.into());
        self
    }

    /// Adds dependencies.
    pub fn depends_on<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.depends_on.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Sets retries and their delays.
    pub fn retries(mut self, retries: u32, delay: RetryDelay) -> Self {
        self.retries = retries;
        self.retry_delay = Some(delay);
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Enables caching.
    pub fn cache(mut self, policy: CachePolicy) -> Self {
        self.cache = Some(policy);
        self
    }

    /// The engine's keys a flow file may use on every task (everything else goes to the type).
    pub const ENGINE_KEYS: &'static [&'static str] = &[
        "id",
        "type",
        "description",
        "depends_on",
        "retries",
        "retry_delay",
        "timeout",
        "cache",
    ];
}

/// How long to wait before each retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawDelay", into = "RawDelay")]
pub enum RetryDelay {
    /// `retry_delay: 10s` or `[1s, 10s, 60s]`: the n-th retry waits the n-th entry; the last one repeats.
    Fixed(Vec<Duration>),
    /// `retry_delay: {exponential: 1s, max: 5m, jitter: 0.2}`: base * 2^(n-1), capped at `max`, then
    /// multiplied by a random factor in [1 - jitter, 1 + jitter].
    Exponential {
        /// Delay before the first retry.
        base: Duration,
        /// Upper bound before jitter.
        max: Option<Duration>,
        /// Relative jitter, 0..=1.
        jitter: f64,
    },
}

impl RetryDelay {
    /// The wait before retry number `retry` (1 = the second attempt).
    pub fn before_retry(&self, retry: u32) -> Duration {
        match self {
            Self::Fixed(list) => list
                .get(retry.saturating_sub(1) as usize)
                .or(list.last())
                .copied()
                .unwrap_or_default(),
            Self::Exponential { base, max, jitter } => {
                let factor = 2f64.powi(retry.saturating_sub(1).min(30) as i32);
                let mut secs = base.as_secs_f64() * factor;
                if let Some(max) = max {
                    secs = secs.min(max.as_secs_f64());
                }
                let j = jitter.clamp(0.0, 1.0);
                secs *= 1.0 - j + 2.0 * j * fastrand::f64();
                Duration::from_secs_f64(secs.max(0.0))
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a duration like 10s, a list like [1s, 10s, 60s], or {exponential: 1s, max: 5m, jitter: 0.2}"
)]
enum RawDelay {
    One(String),
    List(Vec<String>),
    Exp(RawExp),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExp {
    exponential: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jitter: Option<f64>,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl TryFrom<RawDelay> for RetryDelay {
    type Error = String;
    fn try_from(raw: RawDelay) -> Result<Self, String> {
        Self::from_raw(raw).map_err(|e| format!("retry_delay: {e}"))
    }
}

impl RetryDelay {
    fn from_raw(raw: RawDelay) -> Result<Self, String> {
        Ok(match raw {
            RawDelay::One(s) => Self::Fixed(vec![parse_duration(&s)?]),
            RawDelay::List(l) => {
                if l.is_empty() {
                    return Err("retry_delay list is empty".into());
                }
                Self::Fixed(
                    l.iter()
                        .map(|s| parse_duration(s))
                        .collect::<Result<_, _>>()?,
                )
            }
            RawDelay::Exp(e) => {
                let jitter = e.jitter.unwrap_or(0.0);
                if !(0.0..=1.0).contains(&jitter) {
                    return Err(format!("jitter must be between 0 and 1, got {jitter}"));
                }
                Self::Exponential {
                    base: parse_duration(&e.exponential)?,
                    max: e.max.as_deref().map(parse_duration).transpose()?,
                    jitter,
                }
            }
        })
    }
}

impl From<RetryDelay> for RawDelay {
    fn from(d: RetryDelay) -> Self {
        match d {
            RetryDelay::Fixed(l) => RawDelay::List(l.into_iter().map(ms).collect()),
            RetryDelay::Exponential { base, max, jitter } => RawDelay::Exp(RawExp {
                exponential: ms(base),
                max: max.map(ms),
                jitter: Some(jitter),
            }),
        }
    }
}

/// Caching of a task's result: `cache: true` (never expires) or `cache: {expire: 1d}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawCache", into = "RawCache")]
pub struct CachePolicy {
    /// How long a result stays reusable; `None` = forever.
    pub expire: Option<Duration>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged, expecting = "`true` or {expire: 1d}")]
enum RawCache {
    Flag(bool),
    Map(RawCacheMap),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCacheMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire: Option<String>,
}

impl TryFrom<RawCache> for CachePolicy {
    type Error = String;
    fn try_from(raw: RawCache) -> Result<Self, String> {
        match raw {
            RawCache::Flag(true) => Ok(Self { expire: None }),
            RawCache::Flag(false) => {
                Err("cache: `cache: false` is the default; remove the key".into())
            }
            RawCache::Map(m) => Ok(Self {
                expire: m
                    .expire
                    .as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(|e| format!("cache.expire: {e}"))?,
            }),
        }
    }
}

impl From<CachePolicy> for RawCache {
    fn from(c: CachePolicy) -> Self {
        RawCache::Map(RawCacheMap {
            expire: c.expire.map(ms),
        })
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}ms", d.as_millis())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| crate::duration::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Where in a flow a validation problem is, so a file loader can name the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spot {
    Flow,
    Task(String),
    Param(String),
    Schedule(usize),
}

/// A validated flow: acyclic, every type known, every reference resolved. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Flow {
    spec: Arc<FlowSpec>,
    /// Effective dependencies of each task (explicit + referenced in templates), by task index.
    deps: Arc<Vec<Vec<usize>>>,
    source: Option<PathBuf>,
}

impl Flow {
    /// Validates a spec built in Rust (or read from a run snapshot).
    pub fn new(spec: FlowSpec, registry: &TaskRegistry) -> Result<Self> {
        let name = spec.name.clone();
        Self::validate(spec, registry, None).map_err(|(_, message)| FlowError::InvalidFlow {
            flow: name,
            message,
        })
    }

    /// Parses and validates a flow file's text; errors name `path` and the line.
    pub fn from_yaml(text: &str, path: &Path, registry: &TaskRegistry) -> Result<Self> {
        let spec: FlowSpec = serde_norway::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            let mut msg = e.to_string();
            if let Some(i) = msg.find(" at line ") {
                msg.truncate(i);
            }
            FlowError::flow_file(path, line, msg)
        })?;
        Self::validate(spec, registry, Some(path.to_path_buf()))
            .map_err(|(spot, message)| FlowError::flow_file(path, line_of(text, &spot), message))
    }

    /// Reads and validates one flow file.
    pub fn load(path: &Path, registry: &TaskRegistry) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| FlowError::io(path, e))?;
        Self::from_yaml(&text, path, registry)
    }

    fn validate(
        mut spec: FlowSpec,
        registry: &TaskRegistry,
        source: Option<PathBuf>,
    ) -> Result<Self, (Spot, String)> {
        let ident = |s: &str, dash: bool| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dash && c == '-'))
        };
        if !ident(&spec.name, true) {
            return Err((
                Spot::Flow,
                format!(
                    "flow name `{}` must be letters, digits, `_` or `-`",
                    spec.name
                ),
            ));
        }
        for (name, p) in &spec.params {
            if !ident(name, false) {
                return Err((
                    Spot::Param(name.clone()),
                    format!("param name `{name}` must be letters, digits or `_`"),
                ));
            }
            p.check(name)
                .map_err(|e| (Spot::Param(name.clone()), e.to_string()))?;
        }
        if spec.tasks.is_empty() {
            return Err((
                Spot::Flow,
                "a flow needs at least one task under `tasks:`".into(),
            ));
        }
        let mut index = BTreeMap::new();
        for (i, t) in spec.tasks.iter().enumerate() {
            if !ident(&t.id, false) {
                return Err((
                    Spot::Task(t.id.clone()),
                    format!(
                        "task id `{}` must be letters, digits or `_` (it is used as tasks.<id> in templates)",
                        t.id
                    ),
                ));
            }
            if index.insert(t.id.clone(), i).is_some() {
                return Err((
                    Spot::Task(t.id.clone()),
                    format!("duplicate task id `{}`", t.id),
                ));
            }
        }
        let mut deps = Vec::with_capacity(spec.tasks.len());
        for t in &spec.tasks {
            let spot = || Spot::Task(t.id.clone());
            let Some(kind) = registry.get(&t.kind) else {
                return Err((
                    spot(),
                    format!(
                        "task `{}`: unknown task type `{}` (known types: {})",
                        t.id,
                        t.kind,
                        registry.names().join(", ")
                    ),
                ));
            };
            let inputs = Json::Object(t.inputs.clone());
            kind.check(&inputs)
                .map_err(|m| (spot(), format!("task `{}` ({}): {m}", t.id, t.kind)))?;
            let mut set = BTreeSet::new();
            for d in &t.depends_on {
                let Some(&j) = index.get(d) else {
                    return Err((
                        spot(),
                        format!(
                            "task `{}` depends on unknown task `{d}` (tasks: {})",
                            t.id,
                            index.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                if d == &t.id {
                    return Err((spot(), format!("task `{}` depends on itself", t.id)));
                }
                set.insert(j);
            }
            let mut refs = Vec::new();
            visit_strings(&inputs, "", &mut |key, s| {
                let vars = referenced_variables(s)
                    .map_err(|m| format!("task `{}`: bad template in `{key}`: {m}", t.id))?;
                refs.extend(vars.into_iter().map(|v| (key.to_string(), v)));
                Ok(())
            })
            .map_err(|m| (spot(), m))?;
            for (key, var) in refs {
                let mut parts = var.split('.');
                let root = parts.next().unwrap_or_default();
                let second = parts.next();
                match (root, second) {
                    ("params", Some(p)) if !spec.params.contains_key(p) => {
                        return Err((
                            spot(),
                            format!(
                                "task `{}`: `{key}` uses undeclared param `{p}` (declared: {})",
                                t.id,
                                spec.params.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                    ("tasks", Some(other)) => match index.get(other) {
                        Some(&j) if other != t.id => {
                            set.insert(j);
                        }
                        Some(_) => {
                            return Err((
                                spot(),
                                format!("task `{}`: `{key}` refers to its own output", t.id),
                            ));
                        }
                        None => {
                            return Err((
                                spot(),
                                format!(
                                    "task `{}`: `{key}` refers to unknown task `{other}`",
                                    t.id
                                ),
                            ));
                        }
                    },
                    (r, _) if !TEMPLATE_ROOTS.contains(&r) => {
                        return Err((
                            spot(),
                            format!(
                                "task `{}`: `{key}` uses unknown variable `{r}` (available: params, tasks, flow, run)",
                                t.id
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            deps.push(set.into_iter().collect::<Vec<_>>());
        }
        if let Some(cycle) = find_cycle(&deps) {
            let names: Vec<&str> = cycle.iter().map(|&i| spec.tasks[i].id.as_str()).collect();
            return Err((
                Spot::Task(names[0].to_string()),
                format!("dependency cycle: {}", names.join(" -> ")),
            ));
        }
        for (i, s) in spec.schedules.iter_mut().enumerate() {
            s.check()
                .map_err(|e| (Spot::Schedule(i), format!("schedule {}: {e}", i + 1)))?;
            resolve_params(&spec.params, &s.params)
                .map_err(|e| (Spot::Schedule(i), format!("schedule {}: {e}", i + 1)))?;
        }
        if spec.concurrency == Some(0) {
            return Err((Spot::Flow, "`concurrency` must be at least 1".into()));
        }
        Ok(Self {
            spec: Arc::new(spec),
            deps: Arc::new(deps),
            source,
        })
    }

    /// The spec this flow was built from.
    pub fn spec(&self) -> &FlowSpec {
        &self.spec
    }

    /// The flow's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The file the flow was loaded from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Effective dependencies of the task at `index` (indices into `spec().tasks`).
    pub fn deps_of(&self, index: usize) -> &[usize] {
        &self.deps[index]
    }

    /// Validates parameter values for a run (defaults filled in).
    pub fn resolve_params(&self, given: &Params) -> Result<Params> {
        resolve_params(&self.spec.params, given)
    }
}

/// Finds one cycle in a dependency list (task -> its dependencies), as the path `a, b, ..., a`.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    // 0 = unvisited, 1 = on stack, 2 = done
    fn dfs(
        n: usize,
        deps: &[Vec<usize>],
        mark: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        mark[n] = 1;
        stack.push(n);
        for &d in &deps[n] {
            if mark[d] == 1 {
                let start = stack.iter().position(|&x| x == d).unwrap_or(0);
                let mut cycle: Vec<usize> = stack[start..].to_vec();
                cycle.reverse();
                cycle.insert(0, d);
                // Present as "x -> y" meaning "x is needed by y": reverse dependency direction.
                return Some(cycle);
            }
            if mark[d] == 0
                && let Some(c) = dfs(d, deps, mark, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        mark[n] = 2;
        None
    }
    let mut mark = vec![0u8; deps.len()];
    for n in 0..deps.len() {
        if mark[n] == 0
            && let Some(c) = dfs(n, deps, &mut mark, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The 1-based line of a spot in a flow file, found by looking for its key in the text.
fn line_of(text: &str, spot: &Spot) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let key_value = |line: &str, key: &str| -> Option<String> {
        let t = line.trim_start().trim_start_matches("- ").trim_start();
        let rest = t.strip_prefix(key)?.trim_start().strip_prefix(':')?;
        Some(
            rest.split(" #")
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_string(),
        )
    };
    let found = match spot {
        Spot::Flow => lines
            .iter()
            .position(|l| key_value(l, "name").is_some() && !l.starts_with(' ')),
        Spot::Task(id) => lines
            .iter()
            .position(|l| key_value(l, "id").as_deref() == Some(id.as_str())),
        Spot::Param(name) => {
            let start = lines
                .iter()
                .position(|l| l.starts_with("params:"))
                .unwrap_or(0);
            lines
                .iter()
                .skip(start + 1)
                .position(|l| key_value(l, name).is_some())
                .map(|p| p + start + 1)
        }
        Spot::Schedule(i) => {
            let start = lines
                .iter()
                .position(|l| l.starts_with("schedules:"))
                .unwrap_or(0);
            lines
                .iter()
                .enumerate()
                .skip(start)
                .filter(|(_, l)| key_value(l, "cron").is_some())
                .nth(*i)
                .map(|(p, _)| p)
        }
    };
    found.map(|i| i + 1).unwrap_or(1)
}

/// A project's flows: every `flows/*.yaml` (and `*.yml`) under the project directory.
#[derive(Debug, Clone)]
pub struct Project {
    dir: PathBuf,
    flows: BTreeMap<String, Flow>,
}

impl Project {
    /// Loads and validates every flow file of the project at `dir`. Subflow references (`type: flow`) must name a
    /// flow of the project.
    pub fn load(dir: impl AsRef<Path>, registry: &TaskRegistry) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let flows_dir = dir.join("flows");
        let mut files = Vec::new();
        if flows_dir.is_dir() {
            for entry in std::fs::read_dir(&flows_dir).map_err(|e| FlowError::io(&flows_dir, e))? {
                let path = entry.map_err(|e| FlowError::io(&flows_dir, e))?.path();
                if matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                ) {
                    files.push(path);
                }
            }
        }
        files.sort();
        let mut flows: Vec<Flow> = Vec::new();
        for f in &files {
            flows.push(Flow::load(f, registry)?);
        }
        Self::from_flows(dir, flows)
    }

    /// A project from flows built in Rust (or loaded one by one).
    pub fn from_flows(
        dir: impl Into<PathBuf>,
        flows: impl IntoIterator<Item = Flow>,
    ) -> Result<Self> {
        let mut map: BTreeMap<String, Flow> = BTreeMap::new();
        for flow in flows {
            if let Some(prev) = map.get(flow.name()) {
                let msg = format!(
                    "duplicate flow name `{}` (also in {})",
                    flow.name(),
                    prev.source()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                );
                return Err(match flow.source() {
                    Some(p) => FlowError::flow_file(p, 1, msg),
                    None => FlowError::InvalidFlow {
                        flow: flow.name().to_string(),
                        message: msg,
                    },
                });
            }
            map.insert(flow.name().to_string(), flow);
        }
        let project = Self {
            dir: dir.into(),
            flows: map,
        };
        for flow in project.flows.values() {
            for t in flow.spec().tasks.iter().filter(|t| t.kind == "flow") {
                if let Some(Json::String(child)) = t.inputs.get("flow")
                    && !child.contains("{{")
                    && !project.flows.contains_key(child)
                {
                    let msg = format!(
                        "task `{}`: subflow `{child}` is not a flow of this project (flows: {})",
                        t.id,
                        project.names().join(", ")
                    );
                    return Err(match flow.source() {
                        Some(p) => {
                            let text = std::fs::read_to_string(p).unwrap_or_default();
                            FlowError::flow_file(p, line_of(&text, &Spot::Task(t.id.clone())), msg)
                        }
                        None => FlowError::InvalidFlow {
                            flow: flow.name().to_string(),
                            message: msg,
                        },
                    });
                }
            }
        }
        Ok(project)
    }

    /// The project directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The flow of that name.
    pub fn flow(&self, name: &str) -> Result<&Flow> {
        self.flows
            .get(name)
            .ok_or_else(|| FlowError::UnknownFlow(name.to_string(), self.names().join(", ")))
    }

    /// All flows, by name.
    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.flows.values()
    }

    /// Flow names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.flows.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_follow_the_list_then_repeat_the_last() {
        let d = RetryDelay::Fixed(vec![Duration::from_secs(1), Duration::from_secs(10)]);
        assert_eq!(d.before_retry(1), Duration::from_secs(1));
        assert_eq!(d.before_retry(2), Duration::from_secs(10));
        assert_eq!(d.before_retry(5), Duration::from_secs(10));
    }

    #[test]
    fn exponential_delays_double_up_to_the_cap_within_the_jitter() {
        let d = RetryDelay::Exponential {
            base: Duration::from_millis(100),
            max: Some(Duration::from_millis(350)),
            jitter: 0.2,
        };
        for _ in 0..50 {
            let first = d.before_retry(1).as_secs_f64();
            assert!((0.08..=0.12).contains(&first), "{first}");
            let third = d.before_retry(3).as_secs_f64();
            assert!(
                (0.28..=0.42).contains(&third),
                "capped at 350ms +-20%: {third}"
            );
        }
    }
}
