//! A hook's reply: the overrides it asks for, read with type checks.
//!
//! | key | type | effect |
//! |---|---|---|
//! | `context` | mapping | replaces the context (any event) |
//! | `output` | any | replaces the output (`machine_end`, `state_exit`; `null` there means none) |
//! | `to_state` | string or null | sends a `transition` elsewhere |
//! | `recovery_state` | string or null | recovers an `error` in that state |
//! | `handled` | boolean | whether an `action` was handled (default: true) |
//! | `hook_error` | string | the hook failed: the state (or run) fails with `HookError` |
//! | `_abort_tool_loop`, `_skip_tools`, `_steering_messages` | any | set in the context (`tool_calls`, `tool_result`), as a shorthand for a whole `context` |

use serde_json::Value;

use flatmachines_core::JsonMap;
use flatmachines_core::config::describe;

use crate::error::clip;

/// What is wrong with a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplyProblem {
    field: &'static str,
    expected: &'static str,
    found: String,
}

impl std::fmt::Display for ReplyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a reply whose `{}` is {}, where {} was expected",
            self.field, self.found, self.expected
        )
    }
}

/// A reply received from a hook: a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply(pub(crate) JsonMap);

impl Reply {
    fn problem(field: &'static str, expected: &'static str, found: &Value) -> ReplyProblem {
        ReplyProblem {
            field,
            expected,
            found: format!("{} {}", describe(found), clip(&found.to_string(), 80)),
        }
    }

    /// The hook's own failure, when it reports one.
    pub(crate) fn hook_error(&self) -> Option<String> {
        match self.0.get("hook_error") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::String(message)) => Some(message.clone()),
            Some(other) => Some(other.to_string()),
        }
    }

    /// The replacement context.
    pub(crate) fn context(&self) -> Result<Option<JsonMap>, ReplyProblem> {
        match self.0.get("context") {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map.clone())),
            Some(other) => Err(Self::problem("context", "a mapping", other)),
        }
    }

    /// The replacement output, when the reply has the key (its value may be `null`).
    pub(crate) fn output(&self) -> Option<&Value> {
        self.0.get("output")
    }

    /// A state name under `field`; `null` means none.
    pub(crate) fn state(&self, field: &'static str) -> Result<Option<String>, ReplyProblem> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(name)) if !name.is_empty() => Ok(Some(name.clone())),
            Some(other) => Err(Self::problem(field, "a state name", other)),
        }
    }

    /// The tool loop's reply keys the reply sets at its top level, in order.
    pub(crate) fn loop_keys(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        ["_abort_tool_loop", "_skip_tools", "_steering_messages"]
            .into_iter()
            .filter_map(|key| self.0.get(key).map(|value| (key, value)))
    }

    /// Whether the hook handled an action (default: it did).
    pub(crate) fn handled(&self) -> Result<bool, ReplyProblem> {
        match self.0.get("handled") {
            None | Some(Value::Null) => Ok(true),
            Some(Value::Bool(handled)) => Ok(*handled),
            Some(other) => Err(Self::problem("handled", "true or false", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reply(value: Value) -> Reply {
        Reply(value.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn overrides_are_read_and_checked() {
        let ok = reply(json!({"context": {"a": 1}, "to_state": "b", "output": null}));
        assert_eq!(ok.context().unwrap(), json!({"a": 1}).as_object().cloned());
        assert_eq!(ok.state("to_state").unwrap().as_deref(), Some("b"));
        assert_eq!(ok.state("recovery_state").unwrap(), None);
        assert_eq!(ok.output(), Some(&Value::Null));
        assert!(ok.handled().unwrap());
        assert_eq!(ok.hook_error(), None);

        let bad =
            reply(json!({"context": [1], "to_state": 3, "handled": "yes", "hook_error": "no"}));
        assert_eq!(
            bad.context().unwrap_err().to_string(),
            "a reply whose `context` is a list [1], where a mapping was expected"
        );
        assert!(bad.state("to_state").is_err());
        assert!(bad.handled().is_err());
        assert_eq!(bad.hook_error().as_deref(), Some("no"));
    }
}
