//! The generated machine as a tree the minimiser can cut, and its YAML text.
//!
//! Strings are written double-quoted (JSON's escapes are valid YAML ones), so their type never
//! depends on the YAML schema; [`Node::Plain`] is written as is, to exercise how each side reads
//! a plain scalar (`yes`, `017`, `1e3`).

use std::fmt::Write;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Node {
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    /// A string, written quoted.
    Str(String),
    /// A plain scalar, written as is.
    Plain(String),
}

impl Node {
    pub(super) fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Node)>) -> Node {
        Node::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub(super) fn str(text: impl Into<String>) -> Node {
        Node::Str(text.into())
    }

    pub(super) fn plain(text: impl Into<String>) -> Node {
        Node::Plain(text.into())
    }

    pub(super) fn insert(&mut self, key: impl Into<String>, value: Node) {
        if let Node::Map(entries) = self {
            entries.push((key.into(), value));
        }
    }

    /// The number of nodes in the tree: the minimiser's measure of size.
    pub(super) fn size(&self) -> usize {
        1 + match self {
            Node::Map(entries) => entries.iter().map(|(_, v)| v.size()).sum(),
            Node::List(items) => items.iter().map(Node::size).sum(),
            Node::Str(_) | Node::Plain(_) => 0,
        }
    }

    /// The document as YAML: block mappings and lists, scalars on their key's line.
    pub(super) fn to_yaml(&self) -> String {
        let mut out = String::new();
        self.write_block(&mut out, 0);
        out
    }

    fn write_block(&self, out: &mut String, indent: usize) {
        let pad = " ".repeat(indent);
        match self {
            Node::Map(entries) if !entries.is_empty() => {
                for (key, value) in entries {
                    let _ = write!(out, "{pad}{}:", key_text(key));
                    value.write_after_key(out, indent);
                }
            }
            Node::List(items) if !items.is_empty() => {
                for item in items {
                    let _ = write!(out, "{pad}-");
                    item.write_after_key(out, indent);
                }
            }
            other => {
                let _ = writeln!(out, "{pad}{}", other.flow());
            }
        }
    }

    fn write_after_key(&self, out: &mut String, indent: usize) {
        match self {
            Node::Map(entries) if !entries.is_empty() => {
                out.push('\n');
                self.write_block(out, indent + 2);
            }
            Node::List(items) if !items.is_empty() => {
                out.push('\n');
                self.write_block(out, indent + 2);
            }
            other => {
                let _ = writeln!(out, " {}", other.flow());
            }
        }
    }

    /// A scalar or an empty collection on one line.
    fn flow(&self) -> String {
        match self {
            Node::Str(text) => quote(text),
            Node::Plain(text) => text.clone(),
            Node::Map(entries) => {
                let inner: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", key_text(k), v.flow()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
            Node::List(items) => {
                let inner: Vec<String> = items.iter().map(Node::flow).collect();
                format!("[{}]", inner.join(", "))
            }
        }
    }
}

/// A key as written: plain when it is an identifier that every YAML schema reads as text.
fn key_text(key: &str) -> String {
    let identifier = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let special = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "Null", "NULL", "True",
        "False", "TRUE", "FALSE", "Yes", "No", "YES", "NO", "On", "Off", "ON", "OFF", "Y", "N",
    ];
    if identifier && !special.contains(&key) {
        key.to_owned()
    } else {
        quote(key)
    }
}

/// A double-quoted YAML scalar: JSON's string syntax, which YAML reads the same way.
fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_collections_are_written_as_blocks_and_scalars_inline() {
        let tree = Node::map([
            ("spec", Node::plain("flatmachine")),
            (
                "data",
                Node::map([
                    (
                        "list",
                        Node::List(vec![
                            Node::str("a\"b"),
                            Node::map([("k", Node::plain("yes"))]),
                        ]),
                    ),
                    ("empty", Node::Map(vec![])),
                ]),
            ),
        ]);
        assert_eq!(
            tree.to_yaml(),
            "spec: flatmachine\ndata:\n  list:\n    - \"a\\\"b\"\n    -\n      k: yes\n  empty: {}\n"
        );
        assert_eq!(tree.size(), 8);
    }
}
