//! Structured output: the instruction that asks for JSON, and turning the answer back into an
//! object — fences stripped, declared types coerced where no information is lost, missing
//! required fields reported.

use indexmap::IndexMap;
use serde_json::{Number, Value};

use flatmachines_core::JsonMap;
use flatmachines_core::config::OutputFieldDef;

/// An agent's `output:` schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputSchema {
    fields: IndexMap<String, OutputFieldDef>,
}

/// What came of parsing an answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    /// The object, or `{"_raw": content}` when the answer is not a JSON object.
    pub(crate) output: JsonMap,
    /// Required fields that are absent or null, as dotted paths.
    pub(crate) missing: Vec<String>,
    /// Why the answer did not parse.
    pub(crate) error: Option<String>,
}

impl OutputSchema {
    pub(crate) fn new(fields: IndexMap<String, OutputFieldDef>) -> OutputSchema {
        OutputSchema { fields }
    }

    /// Text appended to the system prompt: answer with one JSON object with these fields.
    pub(crate) fn instruction(&self) -> String {
        let mut text = String::from(
            "Answer with a single JSON object and nothing else: no explanation before or after it, and no markdown code fences. The object has these fields:",
        );
        describe_fields(&self.fields, 0, &mut text);
        text
    }

    /// Parses `content` as the schema's object.
    pub(crate) fn parse(&self, content: &str) -> Parsed {
        let raw = |error: String| {
            let mut output = JsonMap::new();
            output.insert("_raw".into(), Value::String(content.to_owned()));
            Parsed {
                output,
                missing: Vec::new(),
                error: Some(error),
            }
        };
        let mut object = match serde_json::from_str::<Value>(strip_markdown_json(content)) {
            Ok(Value::Object(object)) => object,
            Ok(other) => {
                return raw(format!("expected a JSON object, found {}", kind_of(&other)));
            }
            Err(e) => return raw(format!("the answer is not JSON ({e})")),
        };
        let mut missing = Vec::new();
        coerce_fields(&mut object, &self.fields, "", &mut missing);
        Parsed {
            output: object,
            missing,
            error: None,
        }
    }
}

/// The JSON inside an answer: the contents of the first markdown code fence, else the span from
/// the first `{` (or `[`) to the last `}` (or `]`), else the trimmed text.
pub fn strip_markdown_json(content: &str) -> &str {
    let text = content.trim();
    if let Some(start) = text.find("```") {
        let after = &text[start + 3..];
        let after = after
            .strip_prefix("json")
            .or_else(|| after.strip_prefix("JSON"))
            .unwrap_or(after);
        if let Some(end) = after.find("```") {
            return after[..end].trim();
        }
    }
    for (index, c) in text.char_indices() {
        let close = match c {
            '{' => '}',
            '[' => ']',
            _ => continue,
        };
        if let Some(end) = text.rfind(close).filter(|end| *end > index) {
            return &text[index..=end];
        }
    }
    text
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn type_name(def: &OutputFieldDef) -> String {
    match def.kind.as_str() {
        "str" => "string".to_owned(),
        "int" => "integer".to_owned(),
        "float" => "number".to_owned(),
        "bool" => "true or false".to_owned(),
        "json" => "any JSON value".to_owned(),
        "list" => match &def.items {
            Some(items) => format!("list of {}", type_name(items)),
            None => "list".to_owned(),
        },
        "object" => "object".to_owned(),
        other => other.to_owned(),
    }
}

fn describe_fields(fields: &IndexMap<String, OutputFieldDef>, depth: usize, text: &mut String) {
    for (name, def) in fields {
        let indent = "  ".repeat(depth);
        let mut notes = vec![type_name(def)];
        if let Some(allowed) = &def.allowed {
            let values: Vec<String> = allowed.iter().map(Value::to_string).collect();
            notes.push(format!("one of {}", values.join(", ")));
        }
        if def.required == Some(false) {
            notes.push("optional".to_owned());
        }
        text.push_str(&format!("\n{indent}- \"{name}\" ({})", notes.join(", ")));
        if let Some(description) = def.description.as_deref().map(str::trim)
            && !description.is_empty()
        {
            text.push_str(": ");
            text.push_str(description);
        }
        let nested = match def.kind.as_str() {
            "object" => def.properties.as_ref(),
            "list" => def.items.as_ref().and_then(|i| i.properties.as_ref()),
            _ => None,
        };
        if let Some(properties) = nested {
            describe_fields(properties, depth + 1, text);
        }
    }
}

fn coerce_fields(
    object: &mut JsonMap,
    fields: &IndexMap<String, OutputFieldDef>,
    prefix: &str,
    missing: &mut Vec<String>,
) {
    for (name, def) in fields {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match object.get_mut(name) {
            None | Some(Value::Null) => {
                if def.required != Some(false) {
                    missing.push(path);
                }
            }
            Some(value) => coerce(value, def, &path, missing),
        }
    }
}

/// Converts `value` to the declared type when nothing is lost: `"3"` → 3, `"true"` → true,
/// 4 → `"4"` for strings, a string holding a JSON list or object → that list or object.
fn coerce(value: &mut Value, def: &OutputFieldDef, path: &str, missing: &mut Vec<String>) {
    let replacement = match (def.kind.as_str(), &*value) {
        ("str", Value::Number(n)) => Some(Value::String(n.to_string())),
        ("str", Value::Bool(b)) => Some(Value::String(b.to_string())),
        ("int", Value::String(s)) => integer_of_text(s.trim()),
        ("int", Value::Number(n)) if !n.is_i64() && !n.is_u64() => n.as_f64().and_then(whole),
        ("float", Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number),
        ("bool", Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        ("list", Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(list @ Value::Array(_)) => Some(list),
            _ => None,
        },
        ("object", Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(object @ Value::Object(_)) => Some(object),
            _ => None,
        },
        _ => None,
    };
    if let Some(replacement) = replacement {
        *value = replacement;
    }
    match (def.kind.as_str(), value) {
        ("list", Value::Array(items)) => {
            if let Some(item_def) = &def.items {
                for (index, item) in items.iter_mut().enumerate() {
                    coerce(item, item_def, &format!("{path}[{index}]"), missing);
                }
            }
        }
        ("object", Value::Object(object)) => {
            if let Some(properties) = &def.properties {
                coerce_fields(object, properties, path, missing);
            }
        }
        _ => {}
    }
}

fn integer_of_text(text: &str) -> Option<Value> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(Value::from(n));
    }
    text.parse::<f64>().ok().and_then(whole)
}

/// `x` as an integer when it is one exactly (and within the range floats hold exactly).
fn whole(x: f64) -> Option<Value> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (x.is_finite() && x.fract() == 0.0 && x.abs() <= EXACT).then(|| Value::from(x as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(value: Value) -> OutputSchema {
        OutputSchema::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn fences_and_surrounding_prose_are_stripped() {
        assert_eq!(
            strip_markdown_json("```json\n{\"a\": 1}\n```"),
            "{\"a\": 1}"
        );
        assert_eq!(strip_markdown_json("```\n[1]\n```"), "[1]");
        assert_eq!(
            strip_markdown_json("Here it is:\n```JSON\n{\"a\": 1}\n```\nThanks"),
            "{\"a\": 1}"
        );
        assert_eq!(
            strip_markdown_json("Sure! {\"a\": {\"b\": 2}} hope this helps"),
            "{\"a\": {\"b\": 2}}"
        );
        assert_eq!(strip_markdown_json("  plain  "), "plain");
        assert_eq!(strip_markdown_json("} {"), "} {");
        assert_eq!(
            strip_markdown_json("```json unterminated"),
            "```json unterminated"
        );
    }

    #[test]
    fn declared_types_are_coerced_losslessly() {
        let s = schema(json!({
            "n": {"type": "int"}, "x": {"type": "float"}, "ok": {"type": "bool"},
            "s": {"type": "str"}, "whole": {"type": "int"}, "frac": {"type": "int"},
            "tags": {"type": "list", "items": {"type": "int"}},
            "obj": {"type": "object", "properties": {"k": {"type": "bool"}, "r": {"type": "str"}}},
            "any": {"type": "json"}, "word": {"type": "bool"}
        }));
        let parsed = s.parse(
            r#"{"n": "3", "x": "2.5", "ok": "TRUE", "s": 42, "whole": 4.0, "frac": 4.5,
               "tags": "[\"1\", 2]", "obj": "{\"k\": \"false\"}", "any": "7", "word": "maybe"}"#,
        );
        assert_eq!(
            Value::Object(parsed.output),
            json!({"n": 3, "x": 2.5, "ok": true, "s": "42", "whole": 4, "frac": 4.5,
                   "tags": [1, 2], "obj": {"k": false}, "any": "7", "word": "maybe"})
        );
        assert_eq!(parsed.missing, vec!["obj.r".to_owned()]);
        assert_eq!(parsed.error, None);
    }

    #[test]
    fn missing_required_fields_are_reported() {
        let s = schema(json!({
            "a": {"type": "str"}, "b": {"type": "str", "required": false}, "c": {"type": "int"}
        }));
        let parsed = s.parse(r#"{"a": "x", "c": null}"#);
        assert_eq!(parsed.missing, vec!["c".to_owned()]);
    }

    #[test]
    fn answers_that_are_not_objects_become_raw() {
        let s = schema(json!({"a": {"type": "str"}}));
        for answer in ["not json at all", "[1, 2]", "\"text\"", ""] {
            let parsed = s.parse(answer);
            assert_eq!(Value::Object(parsed.output), json!({"_raw": answer}));
            assert!(parsed.error.is_some());
        }
    }

    #[test]
    fn the_instruction_lists_fields_types_and_choices() {
        let s = schema(json!({
            "critique": {"type": "str", "description": "Errors found"},
            "severity": {"type": "str", "enum": ["High", "Low"]},
            "score": {"type": "int", "required": false},
            "items": {"type": "list", "items": {"type": "object", "properties": {"k": {"type": "bool"}}}}
        }));
        insta::assert_snapshot!(s.instruction(), @r#"
        Answer with a single JSON object and nothing else: no explanation before or after it, and no markdown code fences. The object has these fields:
        - "critique" (string): Errors found
        - "severity" (string, one of "High", "Low")
        - "score" (integer, optional)
        - "items" (list of object)
          - "k" (true or false)
        "#);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    proptest! {
        /// Whatever a model answers, parsing gives an object and never panics.
        #[test]
        fn any_answer_parses_to_an_object(answer in ".{0,80}") {
            let schema = OutputSchema::new(serde_json::from_value(json!({
                "n": {"type": "int"}, "l": {"type": "list", "items": {"type": "float"}},
                "o": {"type": "object", "properties": {"b": {"type": "bool"}}}
            })).unwrap_or_default());
            let parsed = schema.parse(&answer);
            prop_assert!(parsed.error.is_some() || !parsed.output.contains_key("_raw"));
        }

        #[test]
        fn fenced_objects_round_trip(n in any::<i64>(), text in "[a-z ]{0,20}") {
            let answer = format!("{text}\n```json\n{}\n```\n{text}", json!({"n": n.to_string()}));
            let schema = OutputSchema::new(serde_json::from_value(json!({"n": {"type": "int"}})).unwrap_or_default());
            prop_assert_eq!(Value::Object(schema.parse(&answer).output), json!({"n": n}));
        }
    }
}
