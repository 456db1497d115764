//! dbt's node selection syntax: `-s/--select` and `--exclude`.
//!
//! A selector list is a union of its space-separated parts; a part is the intersection of its comma-separated
//! atoms; an atom is `[@][N]+method:value[+N]` or a bare name. Methods: `fqn` (the default for bare names),
//! `path`, `tag`, `resource_type`, `source`, `package`, `config.<key>`, `test_type`, `test_name`. Values may use
//! `*` and `?` wildcards.

use std::collections::BTreeSet;

use crate::error::{DbtError, Result};
use crate::graph::Graph;
use crate::manifest::Manifest;
use crate::node::ResourceType;

/// How tests attached to selected nodes are added (dbt's `--indirect-selection`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IndirectSelection {
    /// Tests with any selected parent (dbt's default).
    #[default]
    Eager,
    /// Tests whose parents are all selected.
    Cautious,
    /// No tests beyond those selected directly.
    Empty,
}

/// The result of a selection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Selected unique ids, sources included.
    pub selected: BTreeSet<String>,
    /// Selected nodes (no sources) by execution level: a level depends only on earlier levels, so the nodes of
    /// one level can run in parallel (`--threads`).
    pub levels: Vec<Vec<String>>,
}

impl Selection {
    /// The selected nodes (no sources) in a topological order.
    pub fn in_order(&self) -> impl Iterator<Item = &String> {
        self.levels.iter().flatten()
    }
}

/// Select nodes as `dbt <command> --select ... --exclude ...` does. An empty `select` selects everything.
pub fn select(
    manifest: &Manifest,
    graph: &Graph,
    select: &[String],
    exclude: &[String],
    indirect: IndirectSelection,
) -> Result<Selection> {
    let select_parts: Vec<&str> = select.iter().flat_map(|s| s.split_whitespace()).collect();
    let mut selected: BTreeSet<String> = if select_parts.is_empty() {
        graph.order.iter().cloned().collect()
    } else {
        let mut all = BTreeSet::new();
        for part in &select_parts {
            all.extend(eval_part(manifest, graph, part)?);
        }
        all
    };
    let mut excluded = BTreeSet::new();
    for part in exclude.iter().flat_map(|s| s.split_whitespace()) {
        excluded.extend(eval_part(manifest, graph, part)?);
    }
    selected.retain(|id| !excluded.contains(id));
    if !select_parts.is_empty() && indirect != IndirectSelection::Empty {
        let mut tests = Vec::new();
        for (id, node) in &manifest.nodes {
            if node.resource_type != ResourceType::Test
                || selected.contains(id)
                || excluded.contains(id)
            {
                continue;
            }
            let parents = &node.depends_on.nodes;
            let take = match indirect {
                IndirectSelection::Eager => parents.iter().any(|p| selected.contains(p)),
                IndirectSelection::Cautious => {
                    !parents.is_empty() && parents.iter().all(|p| selected.contains(p))
                }
                IndirectSelection::Empty => false,
            };
            if take {
                tests.push(id.clone());
            }
        }
        selected.extend(tests);
    }
    let runnable: BTreeSet<String> = selected
        .iter()
        .filter(|id| manifest.nodes.contains_key(*id))
        .cloned()
        .collect();
    let levels = graph.levels(&runnable);
    Ok(Selection { selected, levels })
}

fn eval_part(manifest: &Manifest, graph: &Graph, part: &str) -> Result<BTreeSet<String>> {
    let mut result: Option<BTreeSet<String>> = None;
    for atom in part.split(',').filter(|a| !a.is_empty()) {
        let set = eval_atom(manifest, graph, atom)?;
        result = Some(match result {
            None => set,
            Some(prev) => prev.intersection(&set).cloned().collect(),
        });
    }
    Ok(result.unwrap_or_default())
}

fn bad(selector: &str, message: impl Into<String>) -> DbtError {
    DbtError::Selector {
        selector: selector.to_string(),
        message: message.into(),
    }
}

fn eval_atom(manifest: &Manifest, graph: &Graph, atom: &str) -> Result<BTreeSet<String>> {
    let mut rest = atom;
    let at = rest.starts_with('@');
    if at {
        rest = &rest[1..];
    }
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    let (parents, parent_depth) = if rest[digits..].starts_with('+') {
        let depth = rest[..digits].parse().ok();
        rest = &rest[digits + 1..];
        (true, depth)
    } else {
        (false, None)
    };
    let trailing_digits = rest
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let body_end = rest.len() - trailing_digits;
    let (children, child_depth) = if rest[..body_end].ends_with('+') {
        let depth = rest[body_end..].parse().ok();
        rest = &rest[..body_end - 1];
        (true, depth)
    } else {
        (false, None)
    };
    if rest.is_empty() {
        return Err(bad(atom, "nothing to select"));
    }
    if at && (parents || children) {
        return Err(bad(atom, "`@` cannot be combined with `+`"));
    }
    let base = match_method(manifest, atom, rest)?;
    let mut out = base.clone();
    for id in &base {
        if parents {
            out.extend(graph.ancestors(id, parent_depth));
        }
        if children || at {
            let desc = graph.descendants(id, child_depth);
            if at {
                for d in &desc {
                    out.extend(graph.ancestors(d, None));
                }
            }
            out.extend(desc);
        }
    }
    Ok(out)
}

/// Does `pattern` (with `*` and `?`) match `text`?
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

fn fqn_matches(fqn: &[String], name: &str, selector: &str) -> bool {
    let parts: Vec<&str> = selector.split('.').collect();
    let prefix =
        |f: &[String]| f.len() >= parts.len() && parts.iter().zip(f).all(|(p, s)| glob(p, s));
    (parts.len() == 1 && glob(parts[0], name))
        || prefix(fqn)
        || (fqn.len() > 1 && prefix(&fqn[1..]))
}

fn path_matches(file: &str, selector: &str) -> bool {
    let sel = selector.trim_end_matches('/').trim_start_matches("./");
    glob(sel, file)
        || file.starts_with(&format!("{sel}/"))
        || (sel.contains('*') && glob(&format!("{sel}/*"), file))
}

fn match_method(manifest: &Manifest, atom: &str, body: &str) -> Result<BTreeSet<String>> {
    let (method, value) = match body.split_once(':') {
        Some((m, v)) => (m, v),
        None if body.contains('/') || body.ends_with(".sql") || body.ends_with(".csv") => {
            ("path", body)
        }
        None => ("fqn", body),
    };
    let mut out = BTreeSet::new();
    let nodes = manifest.nodes.values();
    match method {
        "fqn" => {
            out.extend(
                nodes
                    .filter(|n| fqn_matches(&n.fqn, &n.name, value))
                    .map(|n| n.unique_id.clone()),
            );
            out.extend(
                manifest
                    .sources
                    .values()
                    .filter(|s| fqn_matches(&s.fqn, &s.name, value) && value.contains('.'))
                    .map(|s| s.unique_id.clone()),
            );
        }
        "path" | "file" => {
            out.extend(
                nodes
                    .filter(|n| {
                        path_matches(&n.original_file_path, value)
                            || (method == "file"
                                && glob(
                                    value,
                                    n.original_file_path.rsplit('/').next().unwrap_or(""),
                                ))
                    })
                    .map(|n| n.unique_id.clone()),
            );
            out.extend(
                manifest
                    .sources
                    .values()
                    .filter(|s| path_matches(&s.original_file_path, value))
                    .map(|s| s.unique_id.clone()),
            );
        }
        "tag" => {
            out.extend(
                nodes
                    .filter(|n| n.tags.iter().any(|t| glob(value, t)))
                    .map(|n| n.unique_id.clone()),
            );
            out.extend(
                manifest
                    .sources
                    .values()
                    .filter(|s| s.tags.iter().any(|t| glob(value, t)))
                    .map(|s| s.unique_id.clone()),
            );
        }
        "resource_type" => {
            let rt = ResourceType::parse(value).ok_or_else(|| {
                bad(
                    atom,
                    "resource_type is one of model, seed, test, snapshot, source, analysis",
                )
            })?;
            if rt == ResourceType::Source {
                out.extend(manifest.sources.keys().cloned());
            } else {
                out.extend(
                    nodes
                        .filter(|n| n.resource_type == rt)
                        .map(|n| n.unique_id.clone()),
                );
            }
        }
        "source" => {
            let parts: Vec<&str> = value.split('.').collect();
            out.extend(
                manifest
                    .sources
                    .values()
                    .filter(|s| match parts.as_slice() {
                        [src] => glob(src, &s.source_name),
                        [src, table] => glob(src, &s.source_name) && glob(table, &s.name),
                        [pkg, src, table] => {
                            glob(pkg, &s.package_name)
                                && glob(src, &s.source_name)
                                && glob(table, &s.name)
                        }
                        _ => false,
                    })
                    .map(|s| s.unique_id.clone()),
            );
        }
        "package" => {
            out.extend(
                nodes
                    .filter(|n| glob(value, &n.package_name))
                    .map(|n| n.unique_id.clone()),
            );
            out.extend(
                manifest
                    .sources
                    .values()
                    .filter(|s| glob(value, &s.package_name))
                    .map(|s| s.unique_id.clone()),
            );
        }
        "test_type" => {
            let generic = match value {
                "generic" | "schema" => true,
                "singular" | "data" => false,
                _ => return Err(bad(atom, "test_type is `generic` or `singular`")),
            };
            out.extend(
                nodes
                    .filter(|n| {
                        n.resource_type == ResourceType::Test
                            && n.test_metadata.is_some() == generic
                    })
                    .map(|n| n.unique_id.clone()),
            );
        }
        "test_name" => out.extend(
            nodes
                .filter(|n| {
                    n.test_metadata
                        .as_ref()
                        .is_some_and(|t| glob(value, &t.name))
                })
                .map(|n| n.unique_id.clone()),
        ),
        m if m.starts_with("config.") => {
            let key = &m["config.".len()..];
            out.extend(
                nodes
                    .filter(|n| match n.config_map.get(key) {
                        Some(serde_json::Value::String(s)) => glob(value, s),
                        Some(serde_json::Value::Array(a)) => {
                            a.iter().any(|v| v.as_str().is_some_and(|s| glob(value, s)))
                        }
                        Some(serde_json::Value::Bool(b)) => value.parse::<bool>() == Ok(*b),
                        Some(serde_json::Value::Number(num)) => {
                            value.parse::<f64>().ok() == num.as_f64()
                        }
                        Some(_) => false,
                        None => false,
                    })
                    .map(|n| n.unique_id.clone()),
            );
        }
        other => {
            return Err(bad(
                atom,
                format!(
                    "unknown selection method `{other}` (tripline supports fqn, path, file, tag, resource_type, \
                     source, package, config.<key>, test_type, test_name)"
                ),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_fqn() {
        assert!(glob("stg_*", "stg_trips"));
        assert!(!glob("stg_*", "fact_trips"));
        let fqn: Vec<String> = ["nyc", "staging", "stg_trips"].map(String::from).to_vec();
        assert!(fqn_matches(&fqn, "stg_trips", "stg_trips"));
        assert!(fqn_matches(&fqn, "stg_trips", "staging"));
        assert!(fqn_matches(&fqn, "stg_trips", "nyc.staging"));
        assert!(!fqn_matches(&fqn, "stg_trips", "marts"));
        assert!(path_matches(
            "models/staging/stg_trips.sql",
            "models/staging"
        ));
        assert!(path_matches(
            "models/staging/stg_trips.sql",
            "models/staging/"
        ));
        assert!(!path_matches("models/staging2/x.sql", "models/staging"));
    }
}
