//! [`effects`]: what a `hooks:` config will run or call, known before anything runs.
//!
//! A machine config can make the runtime start programs (`command` hooks) and post its
//! context to URLs (`webhook` hooks). Whoever reviews or validates a config should see that
//! without running it, so this reads the config alone: no file, network or environment is
//! touched.

use std::fmt;

use flatmachines_core::config::HooksConfig;

use crate::args::SetupError;
use crate::command::CommandConfig;

/// The class names of command hooks, as `flatmachines::runtime()` registers them.
const COMMAND_CLASSES: &[&str] = &["command", "CommandHooks"];
/// The class names of webhooks, as `flatmachines::runtime()` registers them.
const WEBHOOK_CLASSES: &[&str] = &["webhook", "WebhookHooks"];

/// Something a hook config makes the runtime do outside its own process.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Starts a program (a `command` hook), which gets every event.
    Runs {
        /// The program, as the config names it (a bare name is looked up on `PATH`; a
        /// relative path starts from the hook's working directory).
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// Posts every event, context included, to a URL (a `webhook` hook).
    Calls {
        /// The endpoint as `scheme://host:port/path`: user, password and query are left out,
        /// as they may hold credentials.
        url: String,
    },
}

impl fmt::Display for Effect {
    /// `runs `python3 hooks.py``, `calls https://hooks.example.com/in`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Runs { program, args } => {
                write!(f, "runs `{program}")?;
                for arg in args {
                    write!(f, " {}", arg.replace('\n', "\\n"))?;
                }
                f.write_str("`")
            }
            Effect::Calls { url } => write!(f, "calls {url}"),
        }
    }
}

/// What the hooks `hooks` describes will run or call (a machine config's `data.hooks`).
///
/// The hook classes the facade crate registers are understood: `command` / `CommandHooks`
/// give [`Effect::Runs`], `webhook` / `WebhookHooks` give [`Effect::Calls`]. Their `args` are
/// checked as building the hooks would check them, so a config this accepts will not fail at
/// setup for its args, except that the variables `api_key_env` and `signing_secret_env` name
/// are not looked up. Any other class, or none, gives no effect: such hooks are Rust code of
/// the program embedding the runtime, whose effects a config does not show.
///
/// This does no I/O. A `Vec` leaves room for classes doing several things.
///
/// # Errors
///
/// The [`SetupError`] building these hooks would give: an unknown argument, a missing
/// `command` or `endpoint`, an endpoint that is not an `http` or `https` URL with a host
/// ([`SetupError::BadUrl`]), a bad `env:` name ([`SetupError::BadVariableName`]), ….
///
/// ```
/// use flatmachines_core::config::HooksConfig;
/// use flatmachines_hooks::{Effect, effects};
///
/// let hooks: HooksConfig = serde_json::from_value(serde_json::json!({
///     "class": "command",
///     "args": {"command": ["python3", "hooks.py"]},
/// }))?;
/// assert_eq!(
///     effects(&hooks)?,
///     [Effect::Runs { program: "python3".into(), args: vec!["hooks.py".into()] }]
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn effects(hooks: &HooksConfig) -> Result<Vec<Effect>, SetupError> {
    let Some(class) = hooks.class.as_deref() else {
        return Ok(Vec::new());
    };
    if COMMAND_CLASSES.contains(&class) {
        let config = CommandConfig::from_args(&hooks.args, None)?;
        let mut command = config.command.into_iter();
        return Ok(vec![Effect::Runs {
            program: command.next().unwrap_or_default(),
            args: command.collect(),
        }]);
    }
    if WEBHOOK_CLASSES.contains(&class) {
        let endpoint = crate::webhook::checked_endpoint(&hooks.args)?;
        return Ok(vec![Effect::Calls {
            url: crate::webhook::redacted(&endpoint),
        }]);
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn hooks(value: Value) -> HooksConfig {
        serde_json::from_value(value).unwrap_or_default()
    }

    #[test]
    fn command_hooks_run_and_webhooks_call() {
        let runs = effects(&hooks(json!({
            "class": "command",
            "args": {"command": ["python3", "-c", "print(1)\nprint(2)"], "env": ["HOOKS_TOKEN"]},
        })))
        .unwrap();
        assert_eq!(
            runs,
            [Effect::Runs {
                program: "python3".into(),
                args: vec!["-c".into(), "print(1)\nprint(2)".into()],
            }]
        );
        assert_eq!(runs[0].to_string(), "runs `python3 -c print(1)\\nprint(2)`");

        let calls = effects(&hooks(json!({
            "class": "WebhookHooks",
            "args": {
                "endpoint": "https://user:pw@hooks.example.com:8443/in?token=abc",
                // Not read: the variable need not be set to list the effect.
                "api_key_env": "FLATMACHINES_HOOKS_TEST_SURELY_UNSET",
            },
        })))
        .unwrap();
        assert_eq!(
            calls,
            [Effect::Calls {
                url: "https://hooks.example.com:8443/in".into()
            }]
        );
        assert_eq!(
            calls[0].to_string(),
            "calls https://hooks.example.com:8443/in"
        );
    }

    #[test]
    fn other_classes_do_nothing_a_config_shows() {
        assert_eq!(effects(&HooksConfig::default()), Ok(Vec::new()));
        let rust = hooks(json!({"class": "LoggingHooks", "args": {"anything": 1}}));
        assert_eq!(effects(&rust), Ok(Vec::new()));
    }

    #[test]
    fn bad_args_give_the_setup_error() {
        let error = effects(&hooks(
            json!({"class": "webhook", "args": {"endpoint": "file:///etc/passwd"}}),
        ))
        .unwrap_err();
        assert!(matches!(error, SetupError::BadUrl { .. }), "{error}");
        let error = effects(&hooks(
            json!({"class": "webhook", "args": {"endpoint": "https://x", "timeout": 0}}),
        ))
        .unwrap_err();
        assert!(error.to_string().contains("`timeout`"), "{error}");
        let error = effects(&hooks(
            json!({"class": "command", "args": {"command": ["sh"], "env": ["1X"]}}),
        ))
        .unwrap_err();
        assert!(
            matches!(error, SetupError::BadVariableName { .. }),
            "{error}"
        );
        let error = effects(&hooks(json!({"class": "command", "args": {}}))).unwrap_err();
        assert!(
            matches!(
                error,
                SetupError::Missing {
                    field: "command",
                    ..
                }
            ),
            "{error}"
        );
    }
}
