//! Jinja with the dbt context, on minijinja.
//!
//! Every macro of every package is compiled once into its own template (one per `{% macro %}` block, padded so
//! line numbers match its file), and made callable as a global (unqualified, resolved as dbt does: the calling
//! package, then the root project, then dbt's own macros), through package namespaces (`dbt_utils.star`,
//! `dbt.date_trunc`) and through `adapter.dispatch`. A macro call evaluates the macro's template in the context
//! of the node being rendered, so macros see `this`, `model`, `execute` like the node does. dbt's `return()` is
//! implemented with a per-thread call stack: it stores the value and unwinds to the macro call.
//!
//! The node being rendered (its refs, config, captured calls, the adapter) is held in a per-thread stack of
//! [`RenderScope`]s, pushed by [`JinjaEnv::render`]; the context functions (`ref`, `config`, `var`...) read it.

pub(crate) mod blocks;
pub(crate) mod functions;
pub(crate) mod objects;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind, State};

use crate::adapter::{Adapter, RelationName};
use crate::config::ConfigMap;
use crate::project::DispatchConfig;

/// Package name of dbt's own macros.
pub(crate) const DBT_PACKAGE: &str = "dbt";

/// Marker of the error `return()` raises to unwind to its macro call.
const RETURN_MARKER: &str = "__dbt_return__";

/// A macro of some package.
#[derive(Debug, Clone)]
pub(crate) struct MacroDef {
    /// `macro.<package>.<name>`.
    pub unique_id: String,
    pub package: String,
    pub name: String,
    /// The template the macro is compiled in.
    pub template: String,
    /// Path relative to its package root.
    pub path: String,
    /// Path shown in errors.
    pub display: String,
    /// The macro's text.
    pub source: String,
    pub description: String,
    pub arguments: Vec<serde_json::Value>,
}

/// All macros of a project and its packages.
#[derive(Debug, Default)]
pub(crate) struct MacroRegistry {
    pub root: String,
    /// Packages in search order: root, dependencies, then `dbt`.
    pub packages: Vec<String>,
    pub macros: HashMap<String, HashMap<String, Arc<MacroDef>>>,
    pub dispatch: Vec<DispatchConfig>,
    /// Template name -> file shown in errors.
    pub template_files: HashMap<String, String>,
}

impl MacroRegistry {
    pub fn get(&self, package: &str, name: &str) -> Option<&Arc<MacroDef>> {
        self.macros.get(package)?.get(name)
    }

    /// dbt's resolution of an unqualified macro name.
    pub fn resolve(&self, name: &str, current_package: Option<&str>) -> Option<&Arc<MacroDef>> {
        current_package
            .and_then(|p| self.get(p, name))
            .or_else(|| self.get(&self.root, name))
            .or_else(|| self.get(DBT_PACKAGE, name))
            .or_else(|| self.packages.iter().find_map(|p| self.get(p, name)))
    }

    /// `adapter.dispatch(name, macro_namespace)`: `<adapter>__name` then `default__name`, in each package of
    /// the search order.
    pub fn dispatch(
        &self,
        name: &str,
        namespace: Option<&str>,
        adapter_type: &str,
        current_package: Option<&str>,
    ) -> Result<Arc<MacroDef>, String> {
        let search: Vec<String> = match namespace {
            Some(ns) => match self.dispatch.iter().find(|d| d.macro_namespace == ns) {
                Some(d) => d.search_order.clone(),
                None if ns == DBT_PACKAGE => vec![self.root.clone(), DBT_PACKAGE.to_string()],
                None => vec![ns.to_string()],
            },
            None => {
                let mut v: Vec<String> = current_package.map(String::from).into_iter().collect();
                v.push(self.root.clone());
                v.push(DBT_PACKAGE.to_string());
                v
            }
        };
        let prefixes = [adapter_type, "default"];
        for package in &search {
            for prefix in prefixes {
                if let Some(m) = self.get(package, &format!("{prefix}__{name}")) {
                    return Ok(m.clone());
                }
            }
        }
        // dbt also accepts the bare name in the namespace (a macro that is not dispatched).
        if let Some(m) = search.iter().find_map(|p| self.get(p, name)) {
            return Ok(m.clone());
        }
        Err(format!(
            "adapter.dispatch: no macro named `{adapter_type}__{name}` or `default__{name}` in {}",
            search.join(", ")
        ))
    }
}

/// What rendering a node records: the calls that build the DAG and the node's config.
#[derive(Debug, Default)]
pub(crate) struct Captures {
    /// `ref()` calls: (package, name).
    pub refs: Vec<(Option<String>, String)>,
    /// `source()` calls.
    pub sources: Vec<(String, String)>,
    /// `config()` calls, merged.
    pub config: ConfigMap,
    /// Unique ids of the macros called.
    pub macros: BTreeSet<String>,
    /// Unique ids of ephemeral models referenced, in first-reference order.
    pub ephemerals: Vec<String>,
    /// Results of `statement` blocks by name.
    pub statements: BTreeMap<String, Value>,
}

/// What `ref()` and `source()` resolve to once the project is parsed.
#[derive(Debug, Default)]
pub(crate) struct RefTable {
    /// Name -> candidates (package, unique id, relation, ephemeral).
    pub nodes: HashMap<String, Vec<RefTarget>>,
    /// (source, table) -> relation and unique id.
    pub sources: HashMap<(String, String), (String, RelationName)>,
}

/// A node `ref()` can point to.
#[derive(Debug, Clone)]
pub(crate) struct RefTarget {
    pub package: String,
    pub unique_id: String,
    pub relation: RelationName,
    pub ephemeral: bool,
}

impl RefTable {
    pub fn resolve(
        &self,
        package: Option<&str>,
        name: &str,
        current: &str,
        root: &str,
    ) -> Option<&RefTarget> {
        let candidates = self.nodes.get(name)?;
        match package {
            Some(p) => candidates.iter().find(|c| c.package == p),
            None => candidates
                .iter()
                .find(|c| c.package == current)
                .or_else(|| candidates.iter().find(|c| c.package == root))
                .or_else(|| candidates.first()),
        }
    }
}

/// The node a render is for.
#[derive(Debug, Clone)]
pub(crate) struct ScopeNode {
    pub package: String,
    /// The node's final config at compile; empty at parse.
    pub config: ConfigMap,
    pub this: RelationName,
}

/// One render: the node, the mode, the adapter and what the render records.
#[derive(Debug)]
pub(crate) struct RenderScope {
    pub node: ScopeNode,
    pub execute: bool,
    pub full_refresh: bool,
    pub adapter: Arc<dyn Adapter>,
    /// `None` while parsing: `ref()` and `source()` return placeholders.
    pub refs: Option<Arc<RefTable>>,
    /// Variables visible to the node's package (CLI vars over project vars).
    pub vars: Arc<ConfigMap>,
    pub registry: Arc<MacroRegistry>,
    /// The root context (`this`, `model`, `execute`, ...), also given to macros.
    pub ctx: Value,
    pub captures: Mutex<Captures>,
}

impl RenderScope {
    pub fn captures(&self) -> MutexGuard<'_, Captures> {
        self.captures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Render a relation as this scope's adapter would.
    pub fn relation_value(&self, name: RelationName) -> Value {
        Value::from_object(objects::Relation::new(name, self.adapter.clone()))
    }
}

struct Frame {
    package: String,
    ret: Option<Value>,
}

thread_local! {
    static SCOPES: RefCell<Vec<Arc<RenderScope>>> = const { RefCell::new(Vec::new()) };
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// The scope of the render running on this thread.
pub(crate) fn current_scope() -> Result<Arc<RenderScope>, Error> {
    SCOPES.with(|s| s.borrow().last().cloned()).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            "dbt context function used outside of a render",
        )
    })
}

/// The package whose code is running: the innermost macro's, or the node's.
pub(crate) fn current_package(scope: &RenderScope) -> String {
    FRAMES
        .with(|f| f.borrow().last().map(|f| f.package.clone()))
        .unwrap_or_else(|| scope.node.package.clone())
}

/// Call a macro with Jinja arguments; `return()` inside it gives the result.
pub(crate) fn call_macro(
    state: &State,
    def: &Arc<MacroDef>,
    args: &[Value],
) -> Result<Value, Error> {
    let scope = current_scope()?;
    scope.captures().macros.insert(def.unique_id.clone());
    if let Some(last) = args.last()
        && !last.is_undefined()
        && let Ok(kwargs) = Kwargs::try_from(last.clone())
        && kwargs.has("caller")
    {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "not supported yet: a {{% call %}} block around the macro `{}` (only `statement` takes call blocks)",
                def.name
            ),
        ));
    }
    let depth = FRAMES.with(|f| f.borrow().len());
    if depth > 200 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("macro recursion too deep while calling `{}`", def.name),
        ));
    }
    let template = state.env().get_template(&def.template)?;
    let captured = template.render_captured(scope.ctx.clone())?;
    let macro_state = captured.state();
    let value = macro_state.lookup(&def.name).ok_or_else(|| {
        Error::new(
            ErrorKind::UndefinedError,
            format!("macro `{}` not found in its template", def.name),
        )
    })?;
    FRAMES.with(|f| {
        f.borrow_mut().push(Frame {
            package: def.package.clone(),
            ret: None,
        })
    });
    let result = value.call(macro_state, args);
    let frame = FRAMES.with(|f| f.borrow_mut().pop());
    if let Some(Frame { ret: Some(v), .. }) = frame {
        return Ok(v);
    }
    result
}

/// `return(value)`: end the running macro with a value.
pub(crate) fn return_(value: Option<Value>) -> Result<Value, Error> {
    let set = FRAMES.with(|f| match f.borrow_mut().last_mut() {
        Some(frame) => {
            frame.ret = Some(value.unwrap_or(Value::from(())));
            true
        }
        None => false,
    });
    if set {
        Err(Error::new(ErrorKind::InvalidOperation, RETURN_MARKER))
    } else {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            "return() used outside of a macro",
        ))
    }
}

/// The compiled Jinja environment of a project: its macros and the dbt context functions.
#[derive(Debug)]
pub(crate) struct JinjaEnv {
    pub env: Environment<'static>,
    pub registry: Arc<MacroRegistry>,
}

/// Values every render sees.
pub(crate) struct StaticContext {
    pub target: ConfigMap,
    pub project_name: String,
    pub invocation_id: String,
    pub run_started_at: chrono::NaiveDateTime,
    pub flags: ConfigMap,
}

/// A macro template failed to compile: (file, line, message).
pub(crate) type TemplateError = (String, Option<usize>, String);

impl JinjaEnv {
    /// Compile every macro and install the dbt context.
    pub fn new(registry: MacroRegistry, statics: StaticContext) -> Result<Self, TemplateError> {
        let registry = Arc::new(registry);
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(|state, value, method, args| {
            minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args).map_err(|e| {
                if matches!(method, "append" | "extend" | "insert" | "pop" | "remove" | "update" | "setdefault") {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "not supported yet: `.{method}()` changes a list or dict in place, and tripline's Jinja                              values are immutable; build a new one instead (`{{% set l = l + [x] %}}`, or a                              namespace: `{{% set ns.items = ns.items + [x] %}}`)"
                        ),
                    )
                } else {
                    e
                }
            })
        });
        env.set_recursion_limit(1000);
        minijinja_contrib::add_to_environment(&mut env);
        objects::install(&mut env, &registry);
        env.add_function("env_var", functions::env_var);
        env.add_function("tojson", functions::tojson);
        env.add_function("fromjson", functions::fromjson);
        env.add_function("fromyaml", functions::fromyaml);
        env.add_function("toyaml", functions::toyaml);
        env.add_function("zip", functions::zip);
        env.add_function("set", functions::set);
        env.add_function("log", functions::log);
        env.add_function("print", |v: Value| {
            tracing::info!(target: "dbt", "{v}");
            String::new()
        });
        env.add_function("return", return_);
        env.add_filter("as_bool", |v: Value| v);
        env.add_filter("as_number", |v: Value| v);
        env.add_filter("as_text", |v: Value| v.to_string());
        env.add_filter("as_native", |v: Value| v);
        env.add_global("exceptions", Value::from_object(functions::Exceptions));
        env.add_global("modules", Value::from_object(functions::Modules));
        env.add_global("target", Value::from_serialize(&statics.target));
        env.add_global("project_name", Value::from(statics.project_name.clone()));
        env.add_global("invocation_id", Value::from(statics.invocation_id.clone()));
        env.add_global(
            "run_started_at",
            Value::from_object(functions::DateTime {
                dt: statics.run_started_at,
                date_only: false,
            }),
        );
        env.add_global("flags", Value::from_serialize(&statics.flags));
        // Macros: templates, then globals (project and package macros override dbt's and the built-ins above).
        let mut names: BTreeMap<String, ()> = BTreeMap::new();
        for package in &registry.packages {
            let Some(macros) = registry.macros.get(package) else {
                continue;
            };
            for def in macros.values() {
                env.add_template_owned(def.template.clone(), def.source.clone())
                    .map_err(|e| (def.display.clone(), e.line(), describe_error(&e)))?;
                names.insert(def.name.clone(), ());
            }
        }
        for name in names.keys() {
            let only_dbt = registry
                .packages
                .iter()
                .filter(|p| p.as_str() != DBT_PACKAGE)
                .all(|p| registry.get(p, name).is_none());
            if only_dbt && env.globals().any(|(k, _)| k == name) {
                continue;
            }
            env.add_global(
                name.clone(),
                Value::from_object(objects::MacroFn::Unqualified {
                    registry: registry.clone(),
                    name: name.clone(),
                }),
            );
        }
        for package in &registry.packages {
            env.add_global(
                package.clone(),
                Value::from_object(objects::Namespace {
                    registry: registry.clone(),
                    package: package.clone(),
                }),
            );
        }
        Ok(Self { env, registry })
    }

    /// Render `source` (a node's raw code) as template `name` within `scope`.
    pub fn render(
        &self,
        scope: Arc<RenderScope>,
        name: &str,
        source: &str,
    ) -> Result<String, Error> {
        let ctx = scope.ctx.clone();
        let _guard = ScopeGuard::push(scope);
        self.env.render_named_str(name, source, ctx)
    }

    /// Evaluate a Jinja expression within `scope` (used to call macros such as `generate_schema_name` and
    /// generic tests from Rust).
    pub fn eval(&self, scope: Arc<RenderScope>, expr: &str, vars: Value) -> Result<Value, Error> {
        let _guard = ScopeGuard::push(scope);
        let expression = self.env.compile_expression_owned(expr.to_string())?;
        expression.eval(vars)
    }
}

struct ScopeGuard;

impl ScopeGuard {
    fn push(scope: Arc<RenderScope>) -> Self {
        SCOPES.with(|s| s.borrow_mut().push(scope));
        Self
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        SCOPES.with(|s| s.borrow_mut().pop());
    }
}

/// A readable message for a minijinja error: its kind and detail, and the chain of causes.
pub(crate) fn describe_error(e: &Error) -> String {
    let mut msg = match (e.kind(), e.detail()) {
        (ErrorKind::UnknownFunction, Some(d)) => format!("undefined macro or function: {d}"),
        (ErrorKind::UnknownFunction, None) => "undefined macro or function".to_string(),
        (ErrorKind::UndefinedError, Some(d)) => format!("undefined value: {d}"),
        (ErrorKind::UndefinedError, None) => {
            "undefined value (an undefined variable or attribute was used)".into()
        }
        (ErrorKind::SyntaxError, Some(d)) => format!("syntax error: {d}"),
        (ErrorKind::InvalidOperation, Some(d)) => d.to_string(),
        (_, Some(d)) => format!("{}: {d}", e.kind()),
        (_, None) => e.kind().to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(inner) = s.downcast_ref::<Error>() {
            msg.push_str(&format!(" (caused by: {})", describe_error(inner)));
            break;
        }
        msg.push_str(&format!(" (caused by: {s})"));
        source = s.source();
    }
    msg
}

/// The innermost location of an error: (template name, line).
pub(crate) fn error_location(e: &Error) -> (Option<String>, Option<usize>) {
    let mut loc = (e.name().map(String::from), e.line());
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(inner) = s.downcast_ref::<Error>()
            && inner.name().is_some()
        {
            loc = (inner.name().map(String::from), inner.line());
        }
        source = s.source();
    }
    loc
}
