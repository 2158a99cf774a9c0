//! Reading the context keys the actions take, with errors that name the action and the key.

use serde_json::Value;

use flatmachines_core::Context;
use flatmachines_core::hooks::HookError;

/// The pool an action works on when the context names none, as in the reference.
pub(crate) const DEFAULT_POOL: &str = "default";

/// A context key as text: strings as they are, numbers in their JSON form; `None` when the key
/// is missing, null or empty.
pub(crate) fn text(context: &Context, key: &str) -> Option<String> {
    match context.as_map().get(key)? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A context key that must be present as text.
pub(crate) fn required_text(
    context: &Context,
    action: &str,
    key: &str,
) -> Result<String, HookError> {
    text(context, key).ok_or_else(|| match context.as_map().get(key) {
        None | Some(Value::Null) => HookError::new(format!(
            "action `{action}` needs `context.{key}`, which is missing or null"
        )),
        Some(other) => HookError::new(format!(
            "action `{action}` needs `context.{key}` as a non-empty string, found {}",
            describe(other)
        )),
    })
}

/// `context.pool_id`, else the default pool.
pub(crate) fn pool_id(context: &Context) -> String {
    text(context, "pool_id").unwrap_or_else(|| DEFAULT_POOL.to_owned())
}

/// A whole number from the context: integers, integral floats, or numeric strings (templates
/// render numbers as text). Missing or null gives `default`.
pub(crate) fn count(
    context: &Context,
    action: &str,
    key: &str,
    default: u64,
) -> Result<u64, HookError> {
    let bad = |found: &Value| {
        HookError::new(format!(
            "action `{action}` needs `context.{key}` as a whole number ≥ 0, found {}",
            describe(found)
        ))
    };
    match context.as_map().get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(value @ Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u32::MAX as f64)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| bad(value)),
        Some(value @ Value::String(s)) => s.trim().parse::<u64>().map_err(|_| bad(value)),
        Some(other) => Err(bad(other)),
    }
}

/// A duration in seconds from the context (number or numeric string), else `default`.
pub(crate) fn seconds(
    context: &Context,
    action: &str,
    key: &str,
    default: f64,
) -> Result<f64, HookError> {
    let bad = |found: &Value| {
        HookError::new(format!(
            "action `{action}` needs `context.{key}` as a number of seconds > 0, found {}",
            describe(found)
        ))
    };
    let value = match context.as_map().get(key) {
        None | Some(Value::Null) => return Ok(default),
        Some(value @ Value::Number(n)) => n.as_f64().ok_or_else(|| bad(value))?,
        Some(value @ Value::String(s)) => s.trim().parse::<f64>().map_err(|_| bad(value))?,
        Some(other) => return Err(bad(other)),
    };
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(bad(&Value::from(value)))
    }
}

/// Sets `key` in the context.
pub(crate) fn set(context: &mut Context, key: &str, value: impl Into<Value>) {
    context.make_mut().insert(key.to_owned(), value.into());
}

/// What a value is, with the value itself when it is short: `a number (-1)`.
pub(crate) fn describe(value: &Value) -> String {
    let kind = flatmachines_core::config::describe(value);
    let text = value.to_string();
    if matches!(value, Value::Null) || text.chars().count() > 40 {
        kind
    } else {
        format!("{kind} ({text})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context(value: Value) -> Context {
        match value {
            Value::Object(map) => Context::from(map),
            _ => unreachable!("test contexts are objects"),
        }
    }

    #[test]
    fn counts_accept_numbers_integral_floats_and_numeric_text() {
        let c = context(
            json!({"a": 3, "b": 4.0, "c": " 5 ", "d": null, "e": -1, "f": 1.5, "g": "x", "h": [1]}),
        );
        assert_eq!(count(&c, "act", "a", 0).unwrap(), 3);
        assert_eq!(count(&c, "act", "b", 0).unwrap(), 4);
        assert_eq!(count(&c, "act", "c", 0).unwrap(), 5);
        assert_eq!(count(&c, "act", "d", 7).unwrap(), 7);
        assert_eq!(count(&c, "act", "missing", 9).unwrap(), 9);
        for key in ["e", "f", "g", "h"] {
            let error = count(&c, "act", key, 0).unwrap_err().to_string();
            assert!(error.contains(&format!("`context.{key}`")), "{error}");
            assert!(error.contains("action `act`"), "{error}");
        }
    }

    #[test]
    fn required_text_names_the_action_and_key() {
        let c = context(json!({"worker_id": "", "n": 3, "o": {"x": 1}}));
        let missing = required_text(&c, "heartbeat", "worker_id")
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("`context.worker_id`") && missing.contains("heartbeat"),
            "{missing}"
        );
        assert_eq!(required_text(&c, "x", "n").unwrap(), "3");
        let object = required_text(&c, "x", "o").unwrap_err().to_string();
        assert!(object.contains("found a mapping"), "{object}");
    }

    #[test]
    fn seconds_must_be_positive_and_finite() {
        let c = context(json!({"a": 2.5, "b": "10", "c": 0, "d": "soon"}));
        assert_eq!(seconds(&c, "act", "a", 1.0).unwrap(), 2.5);
        assert_eq!(seconds(&c, "act", "b", 1.0).unwrap(), 10.0);
        assert_eq!(seconds(&c, "act", "missing", 60.0).unwrap(), 60.0);
        assert!(seconds(&c, "act", "c", 1.0).is_err());
        assert!(seconds(&c, "act", "d", 1.0).is_err());
    }
}
