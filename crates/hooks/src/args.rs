//! Reading a hook's YAML `args`, and [`SetupError`], what a bad one gives.

use std::time::Duration;

use serde_json::Value;

use flatmachines_core::JsonMap;
use flatmachines_core::config::describe;

use crate::event::{EventKind, EventSet};
use crate::secret::Secret;

/// A hook could not be built from its `args`. Each message names the hook class, the
/// argument and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A required argument is missing.
    #[error("`{class}` hooks need `{field}`: {expected}")]
    Missing {
        /// The hook class.
        class: &'static str,
        /// The argument.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// An argument has the wrong type or value.
    #[error("`{class}` hooks: `{field}` must be {expected}, found {found}")]
    Invalid {
        /// The hook class.
        class: &'static str,
        /// The argument.
        field: String,
        /// What it should be.
        expected: String,
        /// What it is.
        found: String,
    },
    /// An argument names an environment variable that is not set.
    #[error(
        "`{class}` hooks: `{field}` names the environment variable `{variable}`, which is not set (or is empty)"
    )]
    UnsetVariable {
        /// The hook class.
        class: &'static str,
        /// The argument.
        field: &'static str,
        /// The variable.
        variable: String,
    },
    /// An argument this hook does not know (often a typo).
    #[error("`{class}` hooks have no argument `{field}` (known: {known})")]
    Unknown {
        /// The hook class.
        class: &'static str,
        /// The argument.
        field: String,
        /// The arguments it knows.
        known: String,
    },
    /// An argument holds something that cannot be an environment variable's name.
    #[error(
        "`{class}` hooks: `{field}` has `{name}`, which is not an environment variable name (letters, digits and `_`, not starting with a digit)"
    )]
    BadVariableName {
        /// The hook class.
        class: &'static str,
        /// The argument (`env`, or the list item, `env[2]`).
        field: String,
        /// The name found (cut when long).
        name: String,
    },
    /// A URL argument is not one the hook can use.
    #[error("`{class}` hooks: `{field}` must be {expected}; `{url}` {problem}")]
    BadUrl {
        /// The hook class.
        class: &'static str,
        /// The argument.
        field: &'static str,
        /// The URL, without user, password, query or fragment.
        url: String,
        /// What was expected, such as `an http or https URL with a host`.
        expected: &'static str,
        /// What is wrong with it: `has the scheme `file``, `has no host`, ….
        problem: String,
    },
    /// The HTTP client could not be built.
    #[error("`{class}` hooks: cannot build the HTTP client: {message}")]
    Client {
        /// The hook class.
        class: &'static str,
        /// Why.
        message: String,
    },
}

/// The longest timeout a hook may ask for; anything longer is surely a mistake in units.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A hook's `args`, read field by field with errors that name the field.
pub(crate) struct Args<'a> {
    pub(crate) class: &'static str,
    map: &'a JsonMap,
}

impl<'a> Args<'a> {
    /// Reads `map`, rejecting arguments not in `known`.
    pub(crate) fn new(
        class: &'static str,
        map: &'a JsonMap,
        known: &[&str],
    ) -> Result<Self, SetupError> {
        if let Some(field) = map.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(SetupError::Unknown {
                class,
                field: field.clone(),
                known: known.join(", "),
            });
        }
        Ok(Args { class, map })
    }

    /// The argument's value; `null` counts as absent.
    pub(crate) fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|value| !value.is_null())
    }

    /// The error for `field` holding `found` where `expected` was needed.
    pub(crate) fn invalid(&self, field: &str, expected: &str, found: &Value) -> SetupError {
        SetupError::Invalid {
            class: self.class,
            field: field.to_owned(),
            expected: expected.to_owned(),
            found: format!(
                "{} {}",
                describe(found),
                crate::error::clip(&found.to_string(), 60)
            ),
        }
    }

    pub(crate) fn string(&self, field: &str) -> Result<Option<&'a str>, SetupError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(text)) if !text.trim().is_empty() => Ok(Some(text)),
            Some(other) => Err(self.invalid(field, "a non-empty string", other)),
        }
    }

    pub(crate) fn required_string(
        &self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<&'a str, SetupError> {
        self.string(field)?.ok_or(SetupError::Missing {
            class: self.class,
            field,
            expected,
        })
    }

    /// A duration in seconds (a positive number), or `default`.
    pub(crate) fn seconds(&self, field: &str, default: Duration) -> Result<Duration, SetupError> {
        let Some(value) = self.get(field) else {
            return Ok(default);
        };
        let expected = "a number of seconds greater than 0 and at most 86400";
        match value.as_f64() {
            Some(seconds) if seconds > 0.0 && seconds <= MAX_TIMEOUT.as_secs_f64() => {
                Ok(Duration::from_secs_f64(seconds))
            }
            _ => Err(self.invalid(field, expected, value)),
        }
    }

    pub(crate) fn flag(&self, field: &str, default: bool) -> Result<bool, SetupError> {
        match self.get(field) {
            None => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(other) => Err(self.invalid(field, "true or false", other)),
        }
    }

    /// `events: [state_enter, …]`: the events to send (default: all).
    pub(crate) fn events(&self) -> Result<EventSet, SetupError> {
        const EXPECTED: &str = "a list of event names (machine_start, machine_end, state_enter, state_exit, transition, error, action)";
        let Some(value) = self.get("events") else {
            return Ok(EventSet::ALL);
        };
        let Value::Array(names) = value else {
            return Err(self.invalid("events", EXPECTED, value));
        };
        let mut kinds = Vec::with_capacity(names.len());
        for name in names {
            match name.as_str().and_then(EventKind::from_name) {
                Some(kind) => kinds.push(kind),
                None => return Err(self.invalid("events", EXPECTED, name)),
            }
        }
        Ok(EventSet::of(kinds))
    }

    /// A list of strings, or one string as a list of one.
    pub(crate) fn string_list(&self, field: &str) -> Result<Option<Vec<String>>, SetupError> {
        const EXPECTED: &str = "a non-empty list of strings, such as [python3, hooks.py]";
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(text)) if !text.trim().is_empty() => Ok(Some(vec![text.clone()])),
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(self.invalid(field, EXPECTED, other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.invalid(field, EXPECTED, other)),
        }
    }

    /// The secret held by the environment variable that `field` names.
    pub(crate) fn env_secret(&self, field: &'static str) -> Result<Option<Secret>, SetupError> {
        let Some(variable) = self.string(field)? else {
            return Ok(None);
        };
        Secret::from_env(variable)
            .map(Some)
            .ok_or_else(|| SetupError::UnsetVariable {
                class: self.class,
                field,
                variable: variable.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn args(value: Value) -> JsonMap {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn fields_are_read_and_bad_ones_named() {
        let map = args(json!({"timeout": 2.5, "fatal": true, "events": ["error"]}));
        let reader = Args::new("webhook", &map, &["timeout", "fatal", "events"]).unwrap();
        assert_eq!(
            reader.seconds("timeout", Duration::ZERO).unwrap(),
            Duration::from_millis(2500)
        );
        assert!(reader.flag("fatal", false).unwrap());
        assert!(reader.events().unwrap().contains(EventKind::Error));
        assert!(!reader.events().unwrap().contains(EventKind::Action));

        let map = args(json!({"endpont": "x"}));
        let error = Args::new("webhook", &map, &["endpoint"]).err().unwrap();
        assert_eq!(
            error.to_string(),
            "`webhook` hooks have no argument `endpont` (known: endpoint)"
        );

        let map = args(json!({"timeout": -1, "events": ["state_entered"], "fatal": "yes"}));
        let reader = Args::new("command", &map, &["timeout", "events", "fatal"]).unwrap();
        let error = reader.seconds("timeout", Duration::ZERO).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("`command` hooks: `timeout` must be a number of seconds"),
            "{error}"
        );
        let error = reader.events().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("found a string \"state_entered\""),
            "{error}"
        );
        assert!(reader.flag("fatal", false).is_err());
    }

    #[test]
    fn a_missing_variable_is_named() {
        let map = args(json!({"api_key_env": "FLATMACHINES_HOOKS_TEST_SURELY_UNSET"}));
        let reader = Args::new("webhook", &map, &["api_key_env"]).unwrap();
        let error = reader.env_secret("api_key_env").unwrap_err();
        assert_eq!(
            error.to_string(),
            "`webhook` hooks: `api_key_env` names the environment variable `FLATMACHINES_HOOKS_TEST_SURELY_UNSET`, which is not set (or is empty)"
        );
    }
}
