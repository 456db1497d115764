//! The dbt context objects: relations, `ref`, `source`, `config`, `var`, `adapter`, `run_query`, `statement`,
//! agate-like result tables, macro namespaces.

use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{Environment, Error, ErrorKind, State};

use super::{MacroRegistry, RenderScope, call_macro, current_package, current_scope};
use crate::adapter::{Adapter, QueryResult, RelationName, block_on};
use crate::config::merge_config;

fn err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Install the context functions and objects into the environment.
pub(crate) fn install(env: &mut Environment<'static>, registry: &Arc<MacroRegistry>) {
    env.add_global("ref", Value::from_object(RefFn));
    env.add_function("source", source_fn);
    env.add_function("is_incremental", is_incremental);
    env.add_function("run_query", run_query);
    env.add_function("statement", statement);
    env.add_function("load_result", load_result);
    env.add_global("config", Value::from_object(Config));
    env.add_global("var", Value::from_object(Var));
    env.add_global(
        "adapter",
        Value::from_object(AdapterObj {
            registry: registry.clone(),
        }),
    );
    env.add_global("api", Value::from_object(Api));
    env.add_global("builtins", Value::from_object(Builtins));
}

/// A relation (`this`, `ref()`, `source()`): renders as SQL, exposes its parts.
#[derive(Debug)]
pub(crate) struct Relation {
    name: RelationName,
    adapter: Arc<dyn Adapter>,
    /// Rendered text overriding the adapter's rendering (ephemeral CTE names, test `where` subqueries).
    rendered: Option<String>,
    include: (bool, bool, bool),
}

impl Relation {
    pub fn new(name: RelationName, adapter: Arc<dyn Adapter>) -> Self {
        Self {
            name,
            adapter,
            rendered: None,
            include: (true, true, true),
        }
    }

    pub fn with_rendered(name: RelationName, adapter: Arc<dyn Adapter>, rendered: String) -> Self {
        Self {
            rendered: Some(rendered),
            ..Self::new(name, adapter)
        }
    }

    fn render_text(&self) -> String {
        if let Some(r) = &self.rendered {
            return r.clone();
        }
        let (db, schema, id) = self.include;
        if db && schema && id {
            return self.adapter.render_relation(&self.name);
        }
        let mut parts = Vec::new();
        if db && let Some(d) = &self.name.database {
            parts.push(self.adapter.quote(d));
        }
        if schema {
            parts.push(self.adapter.quote(&self.name.schema));
        }
        if id {
            parts.push(self.adapter.quote(&self.name.identifier));
        }
        parts.join(".")
    }
}

impl Object for Relation {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "database" => self
                .name
                .database
                .clone()
                .map_or(Value::from(()), Value::from),
            "schema" => Value::from(self.name.schema.clone()),
            "identifier" | "name" | "table" => Value::from(self.name.identifier.clone()),
            "is_table" | "is_view" | "is_cte" => {
                Value::from(key.as_str() == Some("is_cte") && self.rendered.is_some())
            }
            "type" => Value::from(()),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "render" => Ok(Value::from(self.render_text())),
            "include" | "quote" => {
                let (_, kwargs): (&[Value], Kwargs) = from_args(args)?;
                if method == "quote" {
                    return Ok(Value::from_dyn_object(self.clone()));
                }
                let flag = |k: &str, cur: bool| -> Result<bool, Error> {
                    Ok(kwargs.get::<Option<bool>>(k)?.unwrap_or(cur))
                };
                let include = (
                    flag("database", self.include.0)?,
                    flag("schema", self.include.1)?,
                    flag("identifier", self.include.2)?,
                );
                Ok(Value::from_object(Relation {
                    name: self.name.clone(),
                    adapter: self.adapter.clone(),
                    rendered: self.rendered.clone(),
                    include,
                }))
            }
            "incorporate" => Ok(Value::from_dyn_object(self.clone())),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("relation has no method `{method}`"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render_text())
    }
}

/// `ref(name)`, `ref(package, name)`, `ref(name, version=...)`.
#[derive(Debug)]
struct RefFn;

impl Object for RefFn {
    fn call(self: &Arc<Self>, _state: &State, args: &[Value]) -> Result<Value, Error> {
        let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
        ref_fn(positional, kwargs)
    }
}

fn ref_fn(args: &[Value], kwargs: Kwargs) -> Result<Value, Error> {
    let _version: Option<Value> = kwargs.get("version").or_else(|_| kwargs.get("v"))?;
    let strings: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (package, name) = match strings.as_slice() {
        [name] => (None, name.clone()),
        [package, name] => (Some(package.clone()), name.clone()),
        _ => {
            return Err(err(
                "ref() takes a model name, or a package name and a model name",
            ));
        }
    };
    let scope = current_scope()?;
    scope.captures().refs.push((package.clone(), name.clone()));
    let Some(refs) = &scope.refs else {
        // Parsing: a placeholder in the node's own schema.
        let placeholder = RelationName::new(
            scope.node.this.database.clone(),
            scope.node.this.schema.clone(),
            name,
        );
        return Ok(scope.relation_value(placeholder));
    };
    let current = current_package(&scope);
    let target = refs
        .resolve(package.as_deref(), &name, &current, &scope.registry.root)
        .ok_or_else(|| {
            err(format!(
                "ref({}) points to a model or seed that does not exist",
                strings
                    .iter()
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    if target.ephemeral {
        let mut captures = scope.captures();
        if !captures.ephemerals.contains(&target.unique_id) {
            captures.ephemerals.push(target.unique_id.clone());
        }
        return Ok(Value::from_object(Relation::with_rendered(
            target.relation.clone(),
            scope.adapter.clone(),
            format!("__dbt__cte__{}", target.relation.identifier),
        )));
    }
    Ok(scope.relation_value(target.relation.clone()))
}

fn source_fn(source: String, table: String) -> Result<Value, Error> {
    let scope = current_scope()?;
    scope
        .captures()
        .sources
        .push((source.clone(), table.clone()));
    let Some(refs) = &scope.refs else {
        return Ok(scope.relation_value(RelationName::new(None, source, table)));
    };
    let (_, relation) = refs
        .sources
        .get(&(source.clone(), table.clone()))
        .ok_or_else(|| {
            err(format!(
                "source('{source}', '{table}') is not defined in any property file"
            ))
        })?;
    Ok(scope.relation_value(relation.clone()))
}

fn node_config_str(scope: &RenderScope, key: &str) -> Option<String> {
    let captured = scope.captures().config.get(key).cloned();
    captured
        .or_else(|| scope.node.config.get(key).cloned())
        .and_then(|v| v.as_str().map(String::from))
}

fn is_incremental() -> Result<bool, Error> {
    let scope = current_scope()?;
    if !scope.execute || scope.full_refresh {
        return Ok(false);
    }
    if scope
        .node
        .config
        .get("full_refresh")
        .and_then(|v| v.as_bool())
        == Some(true)
    {
        return Ok(false);
    }
    if node_config_str(&scope, "materialized").as_deref() != Some("incremental") {
        return Ok(false);
    }
    let adapter = scope.adapter.clone();
    let this = scope.node.this.clone();
    let existing = block_on(async move { adapter.get_relation(&this).await })
        .and_then(|r| r)
        .map_err(|e| err(format!("is_incremental(): {e}")))?;
    Ok(existing.is_some())
}

fn run_sql(scope: &RenderScope, sql: String, fetch: bool) -> Result<QueryResult, Error> {
    let adapter = scope.adapter.clone();
    block_on(async move { adapter.execute(&sql, fetch).await })
        .and_then(|r| r)
        .map_err(|e| err(e.to_string()))
}

fn run_query(sql: Value) -> Result<Value, Error> {
    let scope = current_scope()?;
    if !scope.execute {
        return Ok(Value::from(()));
    }
    let result = run_sql(&scope, sql.to_string(), true)?;
    Ok(Value::from_object(Table::new(result)))
}

fn statement(state: &State, first: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let caller: Value = kwargs.get("caller")?;
    let name: Option<String> = match first.as_ref() {
        Some(v) if !v.is_none() && !v.is_undefined() => Some(v.to_string()),
        _ => kwargs.get("name")?,
    };
    let fetch: Option<bool> = kwargs.get("fetch_result")?;
    let _: Option<bool> = kwargs.get("auto_begin")?;
    let _: Option<String> = kwargs.get("language")?;
    kwargs.assert_all_used()?;
    let scope = current_scope()?;
    if !scope.execute {
        return Ok(Value::from(""));
    }
    let sql = caller.call(state, &[])?.to_string();
    let result = run_sql(&scope, sql, fetch.unwrap_or(false))?;
    if let Some(name) = name {
        let value = Value::from_iter([
            (
                "response",
                Value::from_iter([
                    ("message", Value::from(result.message.clone())),
                    (
                        "code",
                        Value::from(result.message.split(' ').next().unwrap_or("").to_string()),
                    ),
                    (
                        "rows_affected",
                        result.rows_affected.map_or(Value::from(()), Value::from),
                    ),
                ]),
            ),
            (
                "data",
                Value::from(
                    result
                        .rows
                        .iter()
                        .map(|r| {
                            Value::from(
                                r.iter()
                                    .map(super::functions::json_to_value)
                                    .collect::<Vec<_>>(),
                            )
                        })
                        .collect::<Vec<_>>(),
                ),
            ),
            ("table", Value::from_object(Table::new(result))),
        ]);
        scope.captures().statements.insert(name, value);
    }
    Ok(Value::from(""))
}

fn load_result(name: String) -> Result<Value, Error> {
    let scope = current_scope()?;
    let captures = scope.captures();
    Ok(captures
        .statements
        .get(&name)
        .cloned()
        .unwrap_or(Value::from(())))
}

/// An agate-like table of query results: `rows`, `columns`, `column_names`, iteration over rows.
#[derive(Debug)]
struct Table {
    columns: Vec<String>,
    rows: Vec<Value>,
}

impl Table {
    fn new(result: QueryResult) -> Self {
        let columns = Arc::new(result.columns);
        let rows = result
            .rows
            .into_iter()
            .map(|r| {
                Value::from_object(Row {
                    columns: columns.clone(),
                    values: r.iter().map(super::functions::json_to_value).collect(),
                })
            })
            .collect();
        Self {
            columns: columns.to_vec(),
            rows,
        }
    }
}

impl Object for Table {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.rows.len())
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_usize() {
            return self.rows.get(i).cloned();
        }
        match key.as_str()? {
            "rows" => Some(Value::from(self.rows.clone())),
            "column_names" => Some(Value::from(self.columns.clone())),
            "columns" => Some(Value::from(
                (0..self.columns.len())
                    .map(|i| {
                        Value::from_object(TableColumn {
                            name: self.columns[i].clone(),
                            values: self
                                .rows
                                .iter()
                                .map(|r| r.get_item_by_index(i).unwrap_or_default())
                                .collect(),
                        })
                    })
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        }
    }
}

/// A row of a result table: indexable by position and by column name.
#[derive(Debug)]
struct Row {
    columns: Arc<Vec<String>>,
    values: Vec<Value>,
}

impl Object for Row {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.values.len())
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_usize() {
            return self.values.get(i).cloned();
        }
        let name = key.as_str()?;
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))?;
        self.values.get(i).cloned()
    }
}

/// A column of a result table: `name` and `values()`.
#[derive(Debug)]
struct TableColumn {
    name: String,
    values: Vec<Value>,
}

impl Object for TableColumn {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "name" => Some(Value::from(self.name.clone())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "values" => Ok(Value::from(self.values.clone())),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("column has no method `{method}`"),
            )),
        }
    }
}

/// `config`: `config(materialized='table', ...)` records configs while parsing; `config.get(key, default)` and
/// `config.require(key)` read the node's config.
#[derive(Debug)]
struct Config;

impl Object for Config {
    fn call(self: &Arc<Self>, _state: &State, args: &[Value]) -> Result<Value, Error> {
        let scope = current_scope()?;
        let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
        let mut layer = crate::config::ConfigMap::new();
        if let Some(first) = positional.first() {
            // config({'materialized': 'table'})
            let v: serde_json::Value =
                serde_json::to_value(first).map_err(|e| err(format!("config(): {e}")))?;
            if let serde_json::Value::Object(m) = v {
                layer.extend(m);
            }
        }
        for key in kwargs.args() {
            let v: Value = kwargs.get(key)?;
            let json =
                serde_json::to_value(&v).map_err(|e| err(format!("config({key}=...): {e}")))?;
            layer.insert(key.to_string(), json);
        }
        if !scope.execute {
            merge_config(&mut scope.captures().config, &layer);
        }
        Ok(Value::from(""))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let scope = current_scope()?;
        let (key, default): (String, Option<Value>) = from_args(args)?;
        let key_norm = key.replace('-', "_");
        let found = {
            let captured = scope.captures().config.get(&key_norm).cloned();
            captured.or_else(|| scope.node.config.get(&key_norm).cloned())
        };
        match method {
            "get" => Ok(match found {
                Some(v) if !v.is_null() => super::functions::json_to_value(&v),
                _ => default.unwrap_or(Value::from(())),
            }),
            "require" => match found {
                Some(v) if !v.is_null() => Ok(super::functions::json_to_value(&v)),
                _ if !scope.execute => Ok(Value::from(())),
                _ => Err(err(format!("config `{key}` is required but not set"))),
            },
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("config has no method `{method}`"),
            )),
        }
    }
}

/// `var(name, default)`; an error naming the variable when it has no value and no default.
#[derive(Debug)]
struct Var;

impl Object for Var {
    fn call(self: &Arc<Self>, _state: &State, args: &[Value]) -> Result<Value, Error> {
        let (name, default): (String, Option<Value>) = from_args(args)?;
        let scope = current_scope()?;
        match scope.vars.get(&name) {
            Some(v) => Ok(super::functions::json_to_value(v)),
            None => match default {
                Some(d) => Ok(d),
                None => Err(err(format!(
                    "required var `{name}` not found: define it under `vars:` in dbt_project.yml or pass it with \
                     --vars"
                ))),
            },
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let (name,): (String,) = from_args(args)?;
        match method {
            "has_var" => Ok(Value::from(current_scope()?.vars.contains_key(&name))),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("var has no method `{method}`"),
            )),
        }
    }
}

/// A callable macro: resolved by name at call time (globals) or fixed (namespaces, dispatch results).
#[derive(Debug)]
pub(crate) enum MacroFn {
    /// An unqualified global, resolved as dbt does from the calling package.
    Unqualified {
        registry: Arc<MacroRegistry>,
        name: String,
    },
    /// One macro.
    Fixed(Arc<super::MacroDef>),
}

impl Object for MacroFn {
    fn call(self: &Arc<Self>, state: &State, args: &[Value]) -> Result<Value, Error> {
        match &**self {
            MacroFn::Fixed(def) => call_macro(state, def, args),
            MacroFn::Unqualified { registry, name } => {
                let scope = current_scope()?;
                let package = current_package(&scope);
                let def = registry
                    .resolve(name, Some(&package))
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::UnknownFunction,
                            format!("macro `{name}` is undefined"),
                        )
                    })?
                    .clone();
                call_macro(state, &def, args)
            }
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &**self {
            MacroFn::Fixed(def) => write!(f, "<macro {}>", def.unique_id),
            MacroFn::Unqualified { name, .. } => write!(f, "<macro {name}>"),
        }
    }
}

/// A package namespace: `dbt_utils.star(...)`, `dbt.date_trunc(...)`, `my_project.my_macro(...)`.
#[derive(Debug)]
pub(crate) struct Namespace {
    pub registry: Arc<MacroRegistry>,
    pub package: String,
}

impl Object for Namespace {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let def = self.registry.get(&self.package, key.as_str()?)?;
        Some(Value::from_object(MacroFn::Fixed(def.clone())))
    }

    fn call_method(
        self: &Arc<Self>,
        state: &State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let def = self.registry.get(&self.package, method).ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownFunction,
                format!("macro `{}.{method}` is undefined", self.package),
            )
        })?;
        call_macro(state, &def.clone(), args)
    }
}

/// `adapter`: `dispatch`, `get_relation`, `get_columns_in_relation`, `quote`, `type`.
#[derive(Debug)]
struct AdapterObj {
    registry: Arc<MacroRegistry>,
}

fn relation_arg(v: &Value) -> Option<RelationName> {
    let get = |k: &str| {
        v.get_attr(k)
            .ok()
            .filter(|x| !x.is_undefined() && !x.is_none())
            .map(|x| x.to_string())
    };
    Some(RelationName::new(
        get("database"),
        get("schema")?,
        get("identifier")?,
    ))
}

impl Object for AdapterObj {
    fn call_method(
        self: &Arc<Self>,
        _state: &State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let scope = current_scope()?;
        match method {
            "dispatch" => {
                let (name, namespace, kwargs): (String, Option<String>, Kwargs) = from_args(args)?;
                let namespace = namespace.or(kwargs.get("macro_namespace")?);
                let _: Option<Value> = kwargs.get("packages")?;
                kwargs.assert_all_used()?;
                let package = current_package(&scope);
                let def = self
                    .registry
                    .dispatch(
                        &name,
                        namespace.as_deref(),
                        scope.adapter.adapter_type(),
                        Some(&package),
                    )
                    .map_err(|m| Error::new(ErrorKind::UnknownFunction, m))?;
                Ok(Value::from_object(MacroFn::Fixed(def)))
            }
            "quote" => {
                let (id,): (String,) = from_args(args)?;
                Ok(Value::from(scope.adapter.quote(&id)))
            }
            "type" => Ok(Value::from(scope.adapter.adapter_type().to_string())),
            "get_relation" | "load_relation" => {
                let relation = if method == "load_relation" {
                    let (rel,): (Value,) = from_args(args)?;
                    relation_arg(&rel).ok_or_else(|| err("load_relation: not a relation"))?
                } else {
                    let (_, kwargs): (&[Value], Kwargs) = from_args(args)?;
                    let positional: Vec<Option<String>> = args
                        .iter()
                        .take_while(|a| Kwargs::try_from((*a).clone()).is_err())
                        .map(|a| {
                            if a.is_none() {
                                None
                            } else {
                                Some(a.to_string())
                            }
                        })
                        .collect();
                    let pick = |i: usize, k: &str| -> Result<Option<String>, Error> {
                        Ok(match positional.get(i) {
                            Some(v) => v.clone(),
                            None => kwargs.get::<Option<String>>(k)?,
                        })
                    };
                    RelationName::new(
                        pick(0, "database")?,
                        pick(1, "schema")?
                            .ok_or_else(|| err("get_relation: schema is required"))?,
                        pick(2, "identifier")?
                            .ok_or_else(|| err("get_relation: identifier is required"))?,
                    )
                };
                if !scope.execute {
                    return Ok(Value::from(()));
                }
                let adapter = scope.adapter.clone();
                let found = block_on(async move { adapter.get_relation(&relation).await })
                    .and_then(|r| r)
                    .map_err(|e| err(format!("adapter.{method}: {e}")))?;
                Ok(found.map_or(Value::from(()), |r| scope.relation_value(r.name)))
            }
            "get_columns_in_relation" => {
                let (rel,): (Value,) = from_args(args)?;
                let relation = relation_arg(&rel)
                    .ok_or_else(|| err("get_columns_in_relation: not a relation"))?;
                if !scope.execute {
                    return Ok(Value::from(Vec::<Value>::new()));
                }
                let adapter = scope.adapter.clone();
                let columns = block_on(async move { adapter.get_columns(&relation).await })
                    .and_then(|r| r)
                    .map_err(|e| err(format!("adapter.get_columns_in_relation: {e}")))?;
                Ok(Value::from(
                    columns
                        .into_iter()
                        .map(|c| {
                            Value::from_object(ColumnObj {
                                name: c.name,
                                data_type: c.data_type,
                                adapter: scope.adapter.clone(),
                            })
                        })
                        .collect::<Vec<_>>(),
                ))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("not supported yet: adapter.{method}"),
            )),
        }
    }
}

/// A column from `adapter.get_columns_in_relation`: `name`, `column`, `data_type`, `dtype`, `quoted`.
#[derive(Debug)]
struct ColumnObj {
    name: String,
    data_type: String,
    adapter: Arc<dyn Adapter>,
}

impl Object for ColumnObj {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from(match key.as_str()? {
            "name" | "column" => self.name.clone(),
            "data_type" | "dtype" => self.data_type.clone(),
            "quoted" => self.adapter.quote(&self.name),
            _ => return None,
        }))
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// `api.Relation.create(database=, schema=, identifier=)`.
#[derive(Debug)]
struct Api;

impl Object for Api {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (key.as_str()? == "Relation").then(|| Value::from_object(ApiRelation))
    }
}

#[derive(Debug)]
struct ApiRelation;

impl Object for ApiRelation {
    fn call_method(
        self: &Arc<Self>,
        _state: &State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "create" {
            return Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("not supported yet: api.Relation.{method}"),
            ));
        }
        let (_, kwargs): (&[Value], Kwargs) = from_args(args)?;
        let scope = current_scope()?;
        let database: Option<String> = kwargs.get("database")?;
        let schema: Option<String> = kwargs.get("schema")?;
        let identifier: Option<String> = kwargs.get("identifier")?;
        Ok(scope.relation_value(RelationName::new(
            database.or_else(|| scope.node.this.database.clone()),
            schema.unwrap_or_else(|| scope.node.this.schema.clone()),
            identifier.unwrap_or_default(),
        )))
    }
}

/// `builtins.ref`, `builtins.source`, `builtins.config` for projects that override them with macros.
#[derive(Debug)]
struct Builtins;

impl Object for Builtins {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "ref" => Some(Value::from_object(RefFn)),
            "source" => Some(Value::from_function(source_fn)),
            "config" => Some(Value::from_object(Config)),
            _ => None,
        }
    }
}
