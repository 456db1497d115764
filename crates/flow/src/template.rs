//! Templated task inputs: every string in a task's inputs is a minijinja template rendered just before the task
//! runs, with `params`, `tasks.<id>.output`, `flow.name` and `run.id` in scope. Undefined names are errors.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value as Json;

use crate::error::{FlowError, Result};

/// Top-level names a template may use.
pub const TEMPLATE_ROOTS: &[&str] = &["params", "tasks", "flow", "run"];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
});

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Visits every string in a JSON tree with its dotted key path.
pub(crate) fn visit_strings<'a>(
    value: &'a Json,
    path: &str,
    f: &mut dyn FnMut(&str, &'a str) -> Result<(), String>,
) -> Result<(), String> {
    match value {
        Json::String(s) => f(path, s),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| visit_strings(v, &format!("{path}[{i}]"), f)),
        Json::Object(map) => map.iter().try_for_each(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            visit_strings(v, &p, f)
        }),
        _ => Ok(()),
    }
}

/// The variables (dotted paths like `params.month`, `tasks.download.output.path`) one string refers to; an error
/// message when the string is not a valid template.
pub fn referenced_variables(text: &str) -> Result<BTreeSet<String>, String> {
    if !is_template(text) {
        return Ok(BTreeSet::new());
    }
    let tmpl = ENV
        .template_from_str(text)
        .map_err(|e| template_message(&e))?;
    Ok(tmpl.undeclared_variables(true).into_iter().collect())
}

fn template_message(e: &minijinja::Error) -> String {
    let mut msg = e.kind().to_string();
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    msg
}

/// Renders every template string inside `inputs` with `context` (a JSON object with `params`, `tasks`, `flow`,
/// `run`). Non-template strings and non-string values are kept as they are.
pub fn render_inputs(task: &str, inputs: &Json, context: &Json) -> Result<Json> {
    if !has_template(inputs) {
        return Ok(inputs.clone());
    }
    let ctx = minijinja::Value::from(minijinja::value::Serde(context));
    render_value(task, "", inputs, &ctx)
}

fn has_template(value: &Json) -> bool {
    match value {
        Json::String(s) => is_template(s),
        Json::Array(items) => items.iter().any(has_template),
        Json::Object(map) => map.values().any(has_template),
        _ => false,
    }
}

fn render_value(task: &str, path: &str, value: &Json, ctx: &minijinja::Value) -> Result<Json> {
    Ok(match value {
        Json::String(s) if is_template(s) => {
            let rendered = ENV.render_str(s, ctx).map_err(|e| FlowError::Template {
                task: task.to_string(),
                key: path.to_string(),
                message: template_message(&e),
            })?;
            Json::String(rendered)
        }
        Json::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| render_value(task, &format!("{path}[{i}]"), v, ctx))
                .collect::<Result<_>>()?,
        ),
        Json::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.insert(k.clone(), render_value(task, &p, v, ctx)?);
            }
            Json::Object(out)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_params_and_upstream_outputs() {
        let ctx = json!({"params": {"month": "2021-01"}, "tasks": {"download": {"output": {"path": "/tmp/x.csv"}}}});
        let out = render_inputs(
            "t",
            &json!({"cmd": "wc {{ tasks.download.output.path }} {{ params.month }}", "n": 3}),
            &ctx,
        )
        .unwrap();
        assert_eq!(out, json!({"cmd": "wc /tmp/x.csv 2021-01", "n": 3}));
        let err = render_inputs("t", &json!({"cmd": "{{ params.nope }}"}), &ctx).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("task `t`: template error in `cmd`: undefined value"),
            "{err}"
        );
    }

    #[test]
    fn finds_nested_references() {
        let vars =
            referenced_variables("{{ tasks.download.output.path }} {{ params.month }}").unwrap();
        assert!(
            vars.iter().any(|v| v.starts_with("tasks.download")),
            "{vars:?}"
        );
        assert!(vars.contains("params.month"), "{vars:?}");
        assert!(referenced_variables("{{ oops ").is_err());
    }
}
