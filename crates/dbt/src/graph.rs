//! The dependency graph over nodes and sources: parents, children, cycle detection, topological levels.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{DbtError, Result};
use crate::node::{Node, SourceNode};

/// The DAG of a project. Edges point from a parent (dependency) to its children.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// unique id -> direct parents.
    pub parents: BTreeMap<String, Vec<String>>,
    /// unique id -> direct children.
    pub children: BTreeMap<String, Vec<String>>,
    /// Every unique id in a topological order (parents first, ties by id).
    pub order: Vec<String>,
}

impl Graph {
    /// Build the graph; a cycle is an error naming the path `a -> b -> a` and the files.
    pub fn build(
        nodes: &BTreeMap<String, Node>,
        sources: &BTreeMap<String, SourceNode>,
    ) -> Result<Self> {
        let mut parents: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in sources.keys().chain(nodes.keys()) {
            parents.entry(id.clone()).or_default();
            children.entry(id.clone()).or_default();
        }
        for (id, node) in nodes {
            for parent in &node.depends_on.nodes {
                parents.entry(id.clone()).or_default().push(parent.clone());
                children.entry(parent.clone()).or_default().push(id.clone());
            }
        }
        if let Some(cycle) = find_cycle(&parents) {
            let files: Vec<String> = cycle[..cycle.len() - 1]
                .iter()
                .filter_map(|id| {
                    nodes
                        .get(id)
                        .map(|n| format!("{} ({})", n.name, n.original_file_path))
                })
                .collect();
            return Err(DbtError::Graph(format!(
                "found a cycle: {} — involving {}",
                cycle.join(" -> "),
                files.join(", ")
            )));
        }
        let order = topological_order(&parents, &children);
        Ok(Self {
            parents,
            children,
            order,
        })
    }

    /// All ancestors of a node, up to `depth` levels (`None` = unlimited).
    pub fn ancestors(&self, id: &str, depth: Option<usize>) -> BTreeSet<String> {
        walk(&self.parents, id, depth)
    }

    /// All descendants of a node, up to `depth` levels.
    pub fn descendants(&self, id: &str, depth: Option<usize>) -> BTreeSet<String> {
        walk(&self.children, id, depth)
    }

    /// Levels of a selection for parallel execution: nodes of one level depend only on selected nodes of
    /// earlier levels (also through unselected nodes in between). Each level is sorted by unique id.
    pub fn levels(&self, selected: &BTreeSet<String>) -> Vec<Vec<String>> {
        // reach[n]: the highest level of a selected node among n and its ancestors, +1; 0 when none.
        let mut reach: BTreeMap<&str, usize> = BTreeMap::new();
        let mut levels: Vec<Vec<String>> = Vec::new();
        for id in &self.order {
            let above = self.parents[id]
                .iter()
                .map(|p| reach.get(p.as_str()).copied().unwrap_or(0))
                .max()
                .unwrap_or(0);
            if selected.contains(id) {
                if levels.len() <= above {
                    levels.resize_with(above + 1, Vec::new);
                }
                levels[above].push(id.clone());
                reach.insert(id, above + 1);
            } else {
                reach.insert(id, above);
            }
        }
        for level in &mut levels {
            level.sort();
        }
        levels
    }
}

fn walk(edges: &BTreeMap<String, Vec<String>>, id: &str, depth: Option<usize>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut frontier = vec![id.to_string()];
    let mut d = 0;
    while !frontier.is_empty() && depth.is_none_or(|max| d < max) {
        let mut next = Vec::new();
        for n in frontier {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    next.push(m.clone());
                }
            }
        }
        frontier = next;
        d += 1;
    }
    seen
}

fn find_cycle(parents: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for start in parents.keys() {
        if marks.contains_key(start.as_str()) {
            continue;
        }
        // Iterative DFS following parent edges; the stack holds (node, next parent index).
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::Visiting);
        while let Some((node, idx)) = stack.last_mut() {
            let ps = &parents[*node];
            if *idx < ps.len() {
                let p = ps[*idx].as_str();
                *idx += 1;
                match marks.get(p) {
                    Some(Mark::Visiting) => {
                        // The path from p down to node, reversed to read parent -> child.
                        let pos = stack.iter().position(|(n, _)| *n == p).unwrap_or(0);
                        let mut path: Vec<String> =
                            stack[pos..].iter().map(|(n, _)| n.to_string()).collect();
                        path.reverse();
                        // Start at the smallest id so the message is stable.
                        let min = path
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, id)| id.as_str())
                            .map_or(0, |(i, _)| i);
                        path.rotate_left(min);
                        path.push(path[0].clone());
                        return Some(path);
                    }
                    Some(Mark::Done) => {}
                    None => {
                        if parents.contains_key(p) {
                            marks.insert(p, Mark::Visiting);
                            stack.push((p, 0));
                        }
                    }
                }
            } else {
                marks.insert(node, Mark::Done);
                stack.pop();
            }
        }
    }
    None
}

fn topological_order(
    parents: &BTreeMap<String, Vec<String>>,
    children: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut remaining: BTreeMap<&str, usize> = parents
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                v.iter().filter(|p| parents.contains_key(*p)).count(),
            )
        })
        .collect();
    let mut ready: BTreeSet<&str> = remaining
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut order = Vec::with_capacity(parents.len());
    while let Some(id) = ready.pop_first() {
        order.push(id.to_string());
        for c in children.get(id).into_iter().flatten() {
            if let Some(n) = remaining.get_mut(c.as_str()) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(c.as_str());
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parents(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn cycle_path_reads_parent_to_child() {
        let p = parents(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"])]);
        let cycle = find_cycle(&p).unwrap();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
    }

    #[test]
    fn levels_skip_unselected_nodes_but_keep_order() {
        let p = parents(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        let mut children: BTreeMap<String, Vec<String>> =
            p.keys().map(|k| (k.clone(), vec![])).collect();
        for (k, ps) in &p {
            for x in ps {
                children.get_mut(x).unwrap().push(k.clone());
            }
        }
        let g = Graph {
            order: topological_order(&p, &children),
            parents: p,
            children,
        };
        let sel: BTreeSet<String> = ["a", "c", "d"].map(String::from).into();
        assert_eq!(
            g.levels(&sel),
            vec![vec!["a".to_string(), "d".into()], vec!["c".into()]]
        );
    }
}
