//! JSON as templates see it: lazy views over the context and Python-style JSON text.

use std::fmt;
use std::io;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value as MjValue};
use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::{Map, Value};

/// A variable's value, shared so templates can read it without copying.
#[derive(Debug, Clone)]
pub(crate) enum Root {
    /// A JSON object (the context, the input).
    Map(Arc<Map<String, Value>>),
    /// Any JSON value (an output, a `foreach` item).
    Value(Arc<Value>),
}

impl Root {
    pub(crate) fn value(&self) -> Node<'_> {
        match self {
            Root::Map(map) => Node::Map(map),
            Root::Value(value) => Node::of(value),
        }
    }
}

/// A borrowed JSON value, where objects may come bare (the context) or wrapped.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Node<'a> {
    Map(&'a Map<String, Value>),
    Other(&'a Value),
}

impl<'a> Node<'a> {
    pub(crate) fn of(value: &'a Value) -> Node<'a> {
        match value {
            Value::Object(map) => Node::Map(map),
            other => Node::Other(other),
        }
    }

    pub(crate) fn get(self, key: &str) -> Option<Node<'a>> {
        match self {
            Node::Map(map) => map.get(key).map(Node::of),
            Node::Other(_) => None,
        }
    }

    pub(crate) fn to_value(self) -> Value {
        match self {
            Node::Map(map) => Value::Object(map.clone()),
            Node::Other(value) => value.clone(),
        }
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Map(map) => map.serialize(serializer),
            Node::Other(value) => value.serialize(serializer),
        }
    }
}

#[derive(Debug, Clone)]
enum Segment {
    Key(Box<str>),
    Index(usize),
}

/// A list or object inside a variable, handed to minijinja without converting it. Lookups
/// walk from the root on demand, so a template touching one field of a large context costs
/// one lookup rather than a copy of the context.
#[derive(Debug)]
pub(crate) struct JsonView {
    root: Root,
    path: Box<[Segment]>,
}

impl JsonView {
    fn node(&self) -> Option<Node<'_>> {
        let mut node = self.root.value();
        for segment in &*self.path {
            node = match (segment, node) {
                (Segment::Key(key), node) => node.get(key)?,
                (Segment::Index(index), Node::Other(Value::Array(items))) => {
                    Node::of(items.get(*index)?)
                }
                _ => return None,
            };
        }
        Some(node)
    }

    fn child(&self, segment: Segment, value: &Value) -> MjValue {
        to_template_value(value, || {
            let mut path = Vec::with_capacity(self.path.len() + 1);
            path.extend_from_slice(&self.path);
            path.push(segment);
            JsonView {
                root: self.root.clone(),
                path: path.into_boxed_slice(),
            }
        })
    }

    /// The viewed value as Python-style JSON text.
    pub(crate) fn python_json(&self) -> String {
        match self.node() {
            Some(node) => python_json(&node),
            None => "null".to_owned(),
        }
    }
}

/// A variable's template value: scalars are converted, containers become lazy views.
pub(crate) fn root_value(root: &Root) -> MjValue {
    match root {
        Root::Map(_) => MjValue::from_object(JsonView {
            root: root.clone(),
            path: Box::new([]),
        }),
        Root::Value(value) => to_template_value(value, || JsonView {
            root: root.clone(),
            path: Box::new([]),
        }),
    }
}

fn to_template_value(value: &Value, view: impl FnOnce() -> JsonView) -> MjValue {
    match value {
        Value::Null => MjValue::from(()),
        Value::Bool(b) => MjValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                MjValue::from(i)
            } else if let Some(u) = n.as_u64() {
                MjValue::from(u)
            } else {
                MjValue::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => MjValue::from(s.as_str()),
        Value::Array(_) | Value::Object(_) => MjValue::from_object(view()),
    }
}

impl Object for JsonView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.node() {
            Some(Node::Other(Value::Array(_))) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        match self.node()? {
            Node::Map(map) => {
                // JSON keys are text; an integer reads the key it was written as, so the
                // numeric keys of a keyed `foreach` read back as the reference's do.
                let key: std::borrow::Cow<'_, str> = match key.as_str() {
                    Some(key) => key.into(),
                    None if key.is_integer() => key.to_string().into(),
                    None => return None,
                };
                let value = map.get(key.as_ref())?;
                Some(self.child(Segment::Key(key.as_ref().into()), value))
            }
            Node::Other(Value::Array(items)) => {
                let index = key.as_i64()?;
                let index = if index < 0 {
                    items.len().checked_sub(index.unsigned_abs() as usize)?
                } else {
                    usize::try_from(index).ok()?
                };
                let value = items.get(index)?;
                Some(self.child(Segment::Index(index), value))
            }
            Node::Other(_) => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.node() {
            Some(Node::Map(map)) => {
                Enumerator::Values(map.keys().map(|k| MjValue::from(k.as_str())).collect())
            }
            Some(Node::Other(Value::Array(items))) => Enumerator::Seq(items.len()),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.node()? {
            Node::Map(map) => Some(map.len()),
            Node::Other(Value::Array(items)) => Some(items.len()),
            Node::Other(_) => Some(0),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result
    where
        Self: Sized + 'static,
    {
        f.write_str(&self.python_json())
    }
}

/// Serializes like Python's `json.dumps` (`", "` and `": "` separators), which is what the
/// reference writes when a template prints a list or a dict.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    /// Floats as Python's `repr` spells them (`1e+20`, `1.5e-07`).
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(super::numbers::python_float(value).as_bytes())
    }

    /// Python's `ensure_ascii`: anything outside ASCII as `\uXXXX` (surrogate pairs above the
    /// basic plane).
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return writer.write_all(fragment.as_bytes());
        }
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// `value` as JSON text with Python's separators.
pub(crate) fn python_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(64);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    match value.serialize(&mut serializer) {
        // serde_json writes valid UTF-8.
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => "null".to_owned(),
    }
}

/// The reference parses every rendered template as JSON and keeps the text when that fails,
/// so `"{{ context.n + 1 }}"` yields a number and `"{{ output }}"` an object.
pub(crate) fn parse_rendered(text: String) -> Value {
    let trimmed = text.trim_start();
    let may_be_json = trimmed.as_bytes().first().is_some_and(|b| {
        matches!(
            b,
            b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
        )
    });
    if !may_be_json {
        return Value::String(text);
    }
    flatmachines_core::json::from_str_exact(&text).unwrap_or(Value::String(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_separators() {
        assert_eq!(
            python_json(&json!({"a": [1, 2.5, "x"], "b": null})),
            r#"{"a": [1, 2.5, "x"], "b": null}"#
        );
    }

    #[test]
    fn rendered_text_becomes_json_when_it_parses() {
        assert_eq!(parse_rendered("3".into()), json!(3));
        assert_eq!(parse_rendered(" [1, 2] ".into()), json!([1, 2]));
        assert_eq!(parse_rendered("true".into()), json!(true));
        assert_eq!(parse_rendered("\"quoted\"".into()), json!("quoted"));
        assert_eq!(parse_rendered("hello".into()), json!("hello"));
        assert_eq!(parse_rendered("12 monkeys".into()), json!("12 monkeys"));
        assert_eq!(parse_rendered(String::new()), json!(""));
    }
}
