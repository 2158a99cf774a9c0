//! YAML text to a JSON value, within bounds.
//!
//! The events come from `yaml-rust2`'s pull parser; this module builds the value with an
//! explicit stack, so no input can overflow the thread's stack, and it stops as soon as a
//! bound is passed:
//!
//! - nesting deeper than [`Limit::ConfigDepth`] (checked at each new list or mapping, so a
//!   line of a million `[` costs nothing more than its first few hundred);
//! - more than [`Limit::ConfigNodes`] nodes or [`Limit::ConfigTextBytes`] bytes of scalar
//!   text once aliases are expanded (an alias costs what its anchored node costs, so a
//!   "billion laughs" document is refused before it is built).
//!
//! Plain scalars resolve by the document's schema ([`Schema`]: YAML 1.1 as PyYAML reads it,
//! or YAML 1.2's core schema under a `%YAML 1.2` directive); quoted and block scalars are
//! strings. The standard tags (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`,
//! `!!map`) are honoured; any other tag is an error. Merge keys (`<<: *base`, `<<: [*a, *b]`) insert the merged entries that
//! the mapping does not set itself, where the `<<` stood; earlier sources win. A key that
//! appears twice in one mapping is an error.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::ConfigError;
use crate::limits::{Limit, Limits};
use resolve::Schema;
use resolve::TagError;

mod resolve;

/// What a node costs against the expansion bounds.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    nodes: u64,
    text: u64,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.text = self.text.saturating_add(other.text);
    }
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        cost: Cost,
    },
    Map {
        entries: Map<String, Value>,
        /// The key read, waiting for its value.
        key: Option<(String, Marker)>,
        /// Merge sources seen so far, and the position of the first `<<` among the keys.
        merges: Vec<Map<String, Value>>,
        merge_at: Option<usize>,
        anchor: usize,
        cost: Cost,
    },
}

struct Builder<'a> {
    file: &'a Path,
    limits: &'a Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, Cost)>,
    total: Cost,
    root: Option<Value>,
    documents: usize,
    schema: Schema,
}

/// Parses YAML `text` into a JSON value.
pub(super) fn parse(text: &str, file: &Path, limits: &Limits) -> Result<Value, ConfigError> {
    let mut builder = Builder {
        file,
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        total: Cost::default(),
        root: None,
        documents: 0,
        schema: Schema::of_document(text),
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            let marker = *e.marker();
            if e.info() == FLOW_NESTING_ERROR {
                return builder.flow_nesting_error(marker);
            }
            builder.error_at(marker, e.info().to_owned())
        })?;
        match event {
            Event::StreamEnd => break,
            other => builder.event(other, mark)?,
        }
    }
    Ok(builder.root.unwrap_or(Value::Null))
}

/// What yaml-rust2's scanner says past [`MAX_FLOW_NESTING`].
const FLOW_NESTING_ERROR: &str = "recursion limit exceeded";

/// How deep the scanner can nest flow collections (`[`, `{`): it counts them in a `u8`. It
/// reads a flow collection ahead of the events we count, so this is reached before
/// `config_depth` sees the levels.
const MAX_FLOW_NESTING: u64 = 255;

impl Builder<'_> {
    /// The scanner's fixed bound on flow nesting, said as `config_depth` when that is lower
    /// (the document is then past it too), else as the fixed bound it is.
    fn flow_nesting_error(&self, mark: Marker) -> ConfigError {
        if self.limits.get(Limit::ConfigDepth) < MAX_FLOW_NESTING {
            return self.limit_error(
                mark,
                Limit::ConfigDepth,
                "lists and mappings are nested too deeply",
            );
        }
        self.error_at(
            mark,
            format!("flow lists and mappings (`[`, `{{`) nest deeper than {MAX_FLOW_NESTING} levels, which the YAML parser cannot read; use block style or less nesting"),
        )
    }

    fn error_at(&self, mark: Marker, message: String) -> ConfigError {
        ConfigError::Syntax {
            file: self.file.to_owned(),
            format: "YAML",
            line: Some(mark.line()),
            column: Some(mark.col() + 1),
            message,
        }
    }

    fn limit_error(&self, mark: Marker, limit: Limit, what: &str) -> ConfigError {
        ConfigError::Limit {
            file: self.file.to_owned(),
            line: Some(mark.line()),
            column: Some(mark.col() + 1),
            message: what.to_owned(),
            limit,
            value: self.limits.get(limit),
        }
    }

    /// Counts `cost` against the document's bounds.
    fn charge(&mut self, cost: Cost, mark: Marker) -> Result<(), ConfigError> {
        self.total.add(cost);
        if self.total.nodes > self.limits.get(Limit::ConfigNodes) {
            return Err(self.limit_error(
                mark,
                Limit::ConfigNodes,
                "the document has too many nodes once its aliases are expanded",
            ));
        }
        if self.total.text > self.limits.get(Limit::ConfigTextBytes) {
            return Err(self.limit_error(
                mark,
                Limit::ConfigTextBytes,
                "the document has too much text once its aliases are expanded",
            ));
        }
        Ok(())
    }

    fn event(&mut self, event: Event, mark: Marker) -> Result<(), ConfigError> {
        match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => Ok(()),
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.error_at(
                        mark,
                        "the file holds more than one YAML document (`---`); a config is one document".to_owned(),
                    ));
                }
                Ok(())
            }
            Event::StreamEnd => Ok(()),
            Event::Scalar(text, style, anchor, tag) => {
                let cost = Cost {
                    nodes: 1,
                    text: text.len() as u64,
                };
                self.charge(cost, mark)?;
                let value = self.scalar(text, style, tag.as_ref(), mark)?;
                if anchor != 0 {
                    self.anchors.insert(anchor, (value.clone(), cost));
                }
                self.complete(value, cost, mark)
            }
            Event::Alias(anchor) => {
                let Some((value, cost)) = self.anchors.get(&anchor).cloned() else {
                    return Err(
                        self.error_at(mark, "an alias names an anchor that is not defined".into())
                    );
                };
                self.charge(cost, mark)?;
                self.complete(value, cost, mark)
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_ref(), "seq", mark)?;
                self.open(
                    Frame::Seq {
                        items: Vec::new(),
                        anchor,
                        cost: Cost::default(),
                    },
                    mark,
                )
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_ref(), "map", mark)?;
                self.open(
                    Frame::Map {
                        entries: Map::new(),
                        key: None,
                        merges: Vec::new(),
                        merge_at: None,
                        anchor,
                        cost: Cost::default(),
                    },
                    mark,
                )
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(mark),
        }
    }

    fn open(&mut self, frame: Frame, mark: Marker) -> Result<(), ConfigError> {
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            return Err(self.error_at(
                mark,
                "a mapping key is a list or a mapping; keys must be strings, numbers or booleans"
                    .to_owned(),
            ));
        }
        let depth = self.stack.len() as u64 + 1;
        if depth > self.limits.get(Limit::ConfigDepth) {
            return Err(self.limit_error(
                mark,
                Limit::ConfigDepth,
                "lists and mappings are nested too deeply",
            ));
        }
        self.charge(Cost { nodes: 1, text: 0 }, mark)?;
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self, mark: Marker) -> Result<(), ConfigError> {
        let Some(frame) = self.stack.pop() else {
            return Err(self.error_at(mark, "a collection ends that never started".to_owned()));
        };
        let (value, anchor, mut cost) = match frame {
            Frame::Seq {
                items,
                anchor,
                cost,
            } => (Value::Array(items), anchor, cost),
            Frame::Map {
                entries,
                merges,
                merge_at,
                anchor,
                cost,
                key,
            } => {
                if let Some((key, at)) = key {
                    // A key without a value: the YAML parser gives an empty scalar, so this
                    // only happens on malformed event streams.
                    return Err(self.error_at(at, format!("the key `{key}` has no value")));
                }
                (
                    Value::Object(merge(entries, merges, merge_at)),
                    anchor,
                    cost,
                )
            }
        };
        cost.add(Cost { nodes: 1, text: 0 });
        if anchor != 0 {
            self.anchors.insert(anchor, (value.clone(), cost));
        }
        self.complete(value, cost, mark)
    }

    /// Hands a finished node to its parent: the next item of a list, a key or a value of a
    /// mapping, or the document.
    fn complete(&mut self, value: Value, cost: Cost, mark: Marker) -> Result<(), ConfigError> {
        let file = self.file;
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
                Ok(())
            }
            Some(Frame::Seq { items, cost: c, .. }) => {
                c.add(cost);
                items.push(value);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                key,
                merges,
                merge_at,
                cost: c,
                ..
            }) => {
                c.add(cost);
                let Some((name, key_mark)) = key.take() else {
                    *key = Some((key_text(value, file, mark)?, mark));
                    return Ok(());
                };
                if name == "<<" {
                    merge_at.get_or_insert(entries.len());
                    return match value {
                        Value::Object(source) => {
                            merges.push(source);
                            Ok(())
                        }
                        Value::Array(sources) => {
                            for source in sources {
                                match source {
                                    Value::Object(source) => merges.push(source),
                                    _ => {
                                        return Err(syntax(
                                            file,
                                            key_mark,
                                            "a merge key (`<<`) lists something that is not a mapping",
                                        ));
                                    }
                                }
                            }
                            Ok(())
                        }
                        _ => Err(syntax(
                            file,
                            key_mark,
                            "a merge key (`<<`) must be given a mapping or a list of mappings",
                        )),
                    };
                }
                if entries.contains_key(&name) {
                    return Err(syntax(
                        file,
                        key_mark,
                        &format!("the key `{name}` appears twice in one mapping"),
                    ));
                }
                entries.insert(name, value);
                Ok(())
            }
        }
    }

    fn check_collection_tag(
        &self,
        tag: Option<&Tag>,
        expected: &str,
        mark: Marker,
    ) -> Result<(), ConfigError> {
        match tag {
            None => Ok(()),
            Some(tag) if is_core(tag) && tag.suffix == expected => Ok(()),
            Some(tag) => Err(self.error_at(mark, unsupported_tag(tag))),
        }
    }

    fn scalar(
        &self,
        text: String,
        style: TScalarStyle,
        tag: Option<&Tag>,
        mark: Marker,
    ) -> Result<Value, ConfigError> {
        let Some(tag) = tag else {
            return if style == TScalarStyle::Plain {
                self.schema
                    .plain(text)
                    .map_err(|message| self.error_at(mark, message))
            } else {
                Ok(Value::String(text))
            };
        };
        if !is_core(tag) {
            return Err(self.error_at(mark, unsupported_tag(tag)));
        }
        let shown = text.clone();
        self.schema
            .tagged(&tag.suffix, text)
            .map_err(|error| match error {
                TagError::Unsupported => self.error_at(mark, unsupported_tag(tag)),
                TagError::Wrong(what) => self.error_at(
                    mark,
                    format!("`{shown}` is not {what} (`!!{}`)", tag.suffix),
                ),
            })
    }
}

fn syntax(file: &Path, mark: Marker, message: &str) -> ConfigError {
    ConfigError::Syntax {
        file: file.to_owned(),
        format: "YAML",
        line: Some(mark.line()),
        column: Some(mark.col() + 1),
        message: message.to_owned(),
    }
}

fn is_core(tag: &Tag) -> bool {
    tag.handle == "tag:yaml.org,2002:"
}

fn unsupported_tag(tag: &Tag) -> String {
    let shown = if is_core(tag) {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    };
    format!(
        "the tag `{shown}` is not supported; configs use plain YAML values (the tags !!str, !!int, !!float, !!bool, !!null, !!seq and !!map are understood)"
    )
}

/// The entries of a mapping with its merge sources: the merged entries it does not set itself
/// take the place of the first `<<`; an earlier source wins over a later one.
fn merge(
    entries: Map<String, Value>,
    merges: Vec<Map<String, Value>>,
    merge_at: Option<usize>,
) -> Map<String, Value> {
    let Some(at) = merge_at else {
        return entries;
    };
    let mut merged = Map::new();
    let mut own = entries.into_iter();
    for (key, value) in own.by_ref().take(at) {
        merged.insert(key, value);
    }
    let rest: Vec<(String, Value)> = own.collect();
    for source in merges {
        for (key, value) in source {
            let set_later = rest.iter().any(|(k, _)| *k == key);
            if !set_later && !merged.contains_key(&key) {
                merged.insert(key, value);
            }
        }
    }
    for (key, value) in rest {
        merged.insert(key, value);
    }
    merged
}

/// A mapping key as text: strings as they are, numbers and booleans as JSON spells them.
fn key_text(value: Value, file: &Path, mark: Marker) -> Result<String, ConfigError> {
    match value {
        Value::String(text) => Ok(text),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(syntax(
            file,
            mark,
            "a mapping key is empty or null; keys must be strings, numbers or booleans",
        )),
        _ => Err(syntax(
            file,
            mark,
            "a mapping key is a list or a mapping; keys must be strings, numbers or booleans",
        )),
    }
}

#[cfg(test)]
mod tests;
