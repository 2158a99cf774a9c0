//! Greedy minimisation of a mismatching case: remove one mapping entry, list item or input
//! key at a time, larger pieces first, and keep the removal when the case still mismatches
//! in the same way. Bounded in attempts and time.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::generate::Case;
use super::node::Node;

/// At most this many candidate cases are run while minimising one mismatch.
const ATTEMPTS: usize = 600;
/// And for at most this long.
const BUDGET: Duration = Duration::from_secs(180);

/// The smallest case found for which `still_fails` holds, and how many candidates were run.
pub(super) fn minimise(case: &Case, mut still_fails: impl FnMut(&Case) -> bool) -> (Case, usize) {
    let started = Instant::now();
    let mut best = case.clone();
    let mut attempts = 0;
    'shrink: loop {
        for candidate in candidates(&best) {
            if attempts >= ATTEMPTS || started.elapsed() > BUDGET {
                break 'shrink;
            }
            attempts += 1;
            if still_fails(&candidate) {
                best = candidate;
                continue 'shrink;
            }
        }
        break;
    }
    (best, attempts)
}

/// Every case one removal smaller than `case`, the largest removals first.
fn candidates(case: &Case) -> Vec<Case> {
    let mut paths = Vec::new();
    removable(&case.doc, &mut Vec::new(), &mut paths);
    let mut smaller: Vec<(usize, Case)> = paths
        .into_iter()
        .filter_map(|path| {
            let mut doc = case.doc.clone();
            let removed = remove(&mut doc, &path)?;
            Some((
                removed,
                Case {
                    doc,
                    ..case.clone()
                },
            ))
        })
        .collect();
    if let Value::Object(input) = &case.input {
        for key in input.keys() {
            let mut fewer = input.clone();
            fewer.remove(key);
            smaller.push((
                1,
                Case {
                    input: Value::Object(fewer),
                    ..case.clone()
                },
            ));
        }
    }
    smaller.sort_by_key(|(removed, _)| std::cmp::Reverse(*removed));
    smaller.into_iter().map(|(_, c)| c).collect()
}

/// The paths (indexes into maps and lists) of every node that may be removed. The document's
/// own keys (`spec`, `data`) and a state's `type` stay, so every candidate is still a machine
/// of the same shape.
fn removable(node: &Node, path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    let children: Vec<(Option<&str>, &Node)> = match node {
        Node::Map(entries) => entries.iter().map(|(k, v)| (Some(k.as_str()), v)).collect(),
        Node::List(items) => items.iter().map(|v| (None, v)).collect(),
        Node::Str(_) | Node::Plain(_) => return,
    };
    for (i, (key, child)) in children.into_iter().enumerate() {
        path.push(i);
        let kept = matches!(
            key,
            Some("spec" | "spec_version" | "data" | "states" | "type" | "name")
        );
        if !kept && !path.is_empty() {
            out.push(path.clone());
        }
        removable(child, path, out);
        path.pop();
    }
}

/// Removes the node at `path`, returning the size it had.
fn remove(node: &mut Node, path: &[usize]) -> Option<usize> {
    let (&last, parents) = path.split_last()?;
    let mut parent = node;
    for &i in parents {
        parent = match parent {
            Node::Map(entries) => &mut entries.get_mut(i)?.1,
            Node::List(items) => items.get_mut(i)?,
            _ => return None,
        };
    }
    match parent {
        Node::Map(entries) if last < entries.len() => Some(entries.remove(last).1.size()),
        Node::List(items) if last < items.len() => Some(items.remove(last).size()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn removals_shrink_the_case_to_what_still_fails() {
        let doc = Node::map([
            ("spec", Node::plain("flatmachine")),
            (
                "data",
                Node::map([
                    ("keep", Node::str("bad")),
                    ("drop", Node::List(vec![Node::str("a"), Node::str("b")])),
                    ("also", Node::map([("x", Node::plain("1"))])),
                ]),
            ),
        ]);
        let case = Case {
            doc,
            input: json!({"a": 1, "b": 2}),
            max_steps: 5,
        };
        let (small, attempts) = minimise(&case, |c| c.doc.to_yaml().contains("bad"));
        assert_eq!(
            small.doc.to_yaml(),
            "spec: flatmachine\ndata:\n  keep: \"bad\"\n"
        );
        assert_eq!(small.input, json!({}));
        assert!(attempts < 20, "{attempts}");
    }
}
