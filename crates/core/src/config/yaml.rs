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
//! Plain scalars resolve as YAML 1.2's core schema does (as serde_yaml did): `null`, `~` and
//! the empty scalar are null; `true`/`false` (also `True`, `TRUE`…) are booleans; decimal,
//! `0x`, `0o` and `0b` integers and decimal floats are numbers; `.inf` and `.nan` become null,
//! since JSON has no such numbers. An integer too large for 64 bits keeps its digits as a
//! string rather than being rounded. Quoted and block scalars are strings. The standard tags
//! (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`, `!!map`) are honoured; any other
//! tag is an error. Merge keys (`<<: *base`, `<<: [*a, *b]`) insert the merged entries that
//! the mapping does not set itself, where the `<<` stood; earlier sources win. A key that
//! appears twice in one mapping is an error.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::ConfigError;
use crate::limits::{Limit, Limits};

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
            return Ok(if style == TScalarStyle::Plain {
                resolve_plain(text)
            } else {
                Value::String(text)
            });
        };
        if !is_core(tag) {
            return Err(self.error_at(mark, unsupported_tag(tag)));
        }
        let wrong = |what: &str| {
            self.error_at(mark, format!("`{text}` is not {what} (`!!{}`)", tag.suffix))
        };
        match tag.suffix.as_str() {
            "str" => Ok(Value::String(text)),
            "null" if parse_null(&text) => Ok(Value::Null),
            "null" => Err(wrong("null")),
            "bool" => parse_bool(&text)
                .map(Value::Bool)
                .ok_or_else(|| wrong("a boolean")),
            "int" => parse_int(&text).ok_or_else(|| wrong("an integer")),
            "float" => match parse_float(&text) {
                Some(Float::Finite(f)) => {
                    Ok(Number::from_f64(f).map_or(Value::Null, Value::Number))
                }
                Some(Float::NotFinite) => Ok(Value::Null),
                None => match parse_int(&text) {
                    Some(Value::Number(n)) => Ok(n
                        .as_f64()
                        .and_then(Number::from_f64)
                        .map_or(Value::Null, Value::Number)),
                    _ => Err(wrong("a float")),
                },
            },
            _ => Err(self.error_at(mark, unsupported_tag(tag))),
        }
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

fn parse_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// A plain scalar's value under YAML 1.2's core schema.
fn resolve_plain(text: String) -> Value {
    if parse_null(&text) {
        return Value::Null;
    }
    if let Some(b) = parse_bool(&text) {
        return Value::Bool(b);
    }
    if let Some(int) = parse_int(&text) {
        return int;
    }
    match parse_float(&text) {
        Some(Float::Finite(f)) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Some(Float::NotFinite) => Value::Null,
        None => Value::String(text),
    }
}

/// `0123` is text in YAML 1.2 (a leading zero is no octal marker there).
fn leading_zero_digits(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    unsigned.len() > 1
        && unsigned.starts_with('0')
        && unsigned[1..].bytes().all(|b| b.is_ascii_digit())
}

/// Decimal, `0x`, `0o` and `0b` integers with an optional sign. One that does not fit 64 bits
/// keeps its text (a string), so no digit is lost.
fn parse_int(text: &str) -> Option<Value> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(rest) = unsigned.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = unsigned.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = unsigned.strip_prefix("0b") {
        (2, rest)
    } else {
        if leading_zero_digits(text) {
            return None;
        }
        (10, unsigned)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = match u128::from_str_radix(digits, radix) {
        Ok(magnitude) => magnitude,
        // More digits than 128 bits hold: certainly an integer, certainly too big.
        Err(_) => return Some(Value::String(text.to_owned())),
    };
    let value = if negative {
        i64::try_from(magnitude)
            .ok()
            .map(|m| Value::from(-m))
            .or_else(|| (magnitude == 1 << 63).then(|| Value::from(i64::MIN)))
    } else {
        u64::try_from(magnitude).ok().map(Value::from)
    };
    Some(value.unwrap_or_else(|| Value::String(text.to_owned())))
}

enum Float {
    Finite(f64),
    NotFinite,
}

fn parse_float(text: &str) -> Option<Float> {
    let unsigned = match text.strip_prefix('+') {
        Some(rest) if rest.starts_with(['+', '-']) => return None,
        Some(rest) => rest,
        None => text,
    };
    if matches!(unsigned, ".inf" | ".Inf" | ".INF")
        || matches!(text, "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN")
    {
        return Some(Float::NotFinite);
    }
    if leading_zero_digits(text) {
        return None;
    }
    // Rust also reads `inf`, `NaN` and `infinity`; YAML does not.
    if !unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    unsigned
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Float::Finite)
}

#[cfg(test)]
mod tests;
