//! What a hook process is started with: its program, arguments, directory, its own process
//! group, and an environment built from an allow-list rather than inherited whole.
//!
//! A hook is often someone else's script. Inheriting the runtime's environment would hand it
//! every API key the runtime holds (`OPENAI_API_KEY`, cloud credentials, …), so only the
//! variables a program needs to run sensibly pass, plus `FLATMACHINES_*` and whatever the
//! config's `env:` names or sets.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

use crate::args::{Args, SetupError};

/// The variables every hook process gets from the runtime's environment (when set), besides
/// every `LC_*` and `FLATMACHINES_*` one: what programs need to find things, write temporary
/// files and speak the user's language, and nothing that is usually a secret.
pub(super) const PASSED: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "TERM", "PWD",
];

/// Whether the variable `name` passes to hook processes without being named in `env:`.
pub(super) fn passed_by_default(name: &str) -> bool {
    PASSED.contains(&name) || name.starts_with("LC_") || name.starts_with("FLATMACHINES_")
}

/// A command hook's `env:`: the variables passed through from the runtime's environment, and
/// those set to a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct EnvArgs {
    pub(super) pass: Vec<String>,
    pub(super) set: BTreeMap<String, String>,
}

/// Reads `env:`, one of
///
/// - a list of names, passed through from the runtime's environment: `[HOOKS_TOKEN]`;
/// - a mapping of names to values, set: `{HOOKS_MODE: strict}`;
/// - a list of both: `[HOOKS_TOKEN, {HOOKS_MODE: strict}]`.
pub(super) fn read_env(args: &Args<'_>) -> Result<EnvArgs, SetupError> {
    const EXPECTED: &str = "a list of variable names to pass through, a mapping of names to values to set, or a list of both";
    let mut env = EnvArgs::default();
    match args.get("env") {
        None => {}
        Some(Value::Object(entries)) => read_values(args, "env", entries, &mut env.set)?,
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                let field = format!("env[{index}]");
                match item {
                    Value::String(name) => {
                        check_name(args, &field, name)?;
                        env.pass.push(name.clone());
                    }
                    Value::Object(entries) => read_values(args, &field, entries, &mut env.set)?,
                    other => {
                        return Err(args.invalid(
                            &field,
                            "a variable name, or a mapping of names to values",
                            other,
                        ));
                    }
                }
            }
        }
        Some(other) => return Err(args.invalid("env", EXPECTED, other)),
    }
    Ok(env)
}

/// Reads `NAME: value` pairs into `set`; numbers and booleans are written out.
fn read_values(
    args: &Args<'_>,
    field: &str,
    entries: &serde_json::Map<String, Value>,
    set: &mut BTreeMap<String, String>,
) -> Result<(), SetupError> {
    for (name, value) in entries {
        check_name(args, field, name)?;
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => return Err(args.invalid(&format!("{field}.{name}"), "a string", other)),
        };
        // The OS cannot carry a NUL in a variable; say so now rather than at the first event.
        if text.contains('\0') {
            return Err(args.invalid(
                &format!("{field}.{name}"),
                "a string without NUL characters",
                value,
            ));
        }
        set.insert(name.clone(), text);
    }
    Ok(())
}

/// Accepts the portable names (`[A-Za-z_][A-Za-z0-9_]*`): others (`A=B`, `1X`, `my-var`) are
/// surely typos, and some cannot be set at all.
fn check_name(args: &Args<'_>, field: &str, name: &str) -> Result<(), SetupError> {
    if is_variable_name(name) {
        return Ok(());
    }
    Err(SetupError::BadVariableName {
        class: args.class,
        field: field.to_owned(),
        name: crate::error::clip(&name.escape_debug().to_string(), 60),
    })
}

/// Whether `name` is a portable environment variable name.
pub(super) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(first) if first == '_' || first.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// What the process is started with.
#[derive(Debug)]
pub(super) struct Launch {
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) cwd: Option<PathBuf>,
    pub(super) env: EnvArgs,
}

impl Launch {
    /// The command starting the process, with the environment taken from `parent` (the
    /// runtime's own, except in tests).
    pub(super) fn command(
        &self,
        parent: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .envs(self.environment(parent))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        // Its own group, so that stopping the hook stops what it started too (see `Live`).
        #[cfg(unix)]
        command.process_group(0);
        command
    }

    /// The process's whole environment: the allow-listed and `env:`-named variables of
    /// `parent`, then `PYTHONUNBUFFERED`, then the values `env:` sets, which win.
    pub(super) fn environment(
        &self,
        parent: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> BTreeMap<OsString, OsString> {
        let mut env: BTreeMap<OsString, OsString> = parent
            .into_iter()
            .filter(|(name, _)| {
                // A name that is not UTF-8 is neither on the list nor nameable in `env:`.
                name.to_str().is_some_and(|name| {
                    passed_by_default(name) || self.env.pass.iter().any(|pass| pass == name)
                })
            })
            .collect();
        // The runtime's `PWD` describes the runtime's directory; the hook starts elsewhere.
        if let Some(cwd) = &self.cwd {
            if cwd.is_absolute() {
                env.insert("PWD".into(), cwd.clone().into_os_string());
            } else {
                env.remove(&OsString::from("PWD"));
            }
        }
        // Python buffers a piped stdout; without this a hook that forgets to flush would
        // hang until the timeout.
        env.insert("PYTHONUNBUFFERED".into(), "1".into());
        env.extend(
            self.env
                .set
                .iter()
                .map(|(name, value)| (name.into(), value.into())),
        );
        env
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(value: Value) -> Result<EnvArgs, SetupError> {
        let map = json!({ "env": value })
            .as_object()
            .cloned()
            .unwrap_or_default();
        let args = Args::new("command", &map, &["env"])?;
        read_env(&args)
    }

    #[test]
    fn env_takes_names_values_or_both() {
        assert_eq!(read(Value::Null), Ok(EnvArgs::default()));
        let names = read(json!(["HOOKS_TOKEN", "_X1"])).unwrap();
        assert_eq!(names.pass, ["HOOKS_TOKEN", "_X1"]);
        assert!(names.set.is_empty());
        let values = read(json!({"HOOKS_MODE": "strict", "RETRIES": 3, "DEBUG": true})).unwrap();
        assert!(values.pass.is_empty());
        assert_eq!(values.set["HOOKS_MODE"], "strict");
        assert_eq!(values.set["RETRIES"], "3");
        assert_eq!(values.set["DEBUG"], "true");
        let both = read(json!(["HOOKS_TOKEN", {"HOOKS_MODE": "strict"}])).unwrap();
        assert_eq!(both.pass, ["HOOKS_TOKEN"]);
        assert_eq!(both.set["HOOKS_MODE"], "strict");
    }

    #[test]
    fn bad_names_and_values_are_named() {
        for (value, field, name) in [
            (json!(["OK", "1X"]), "env[1]", "1X"),
            (json!({"A=B": "c"}), "env", "A=B"),
            (json!(["my-var"]), "env[0]", "my-var"),
            (json!([{"": "x"}]), "env[0]", ""),
        ] {
            let error = read(value).unwrap_err();
            assert_eq!(
                error,
                SetupError::BadVariableName {
                    class: "command",
                    field: field.to_owned(),
                    name: name.to_owned(),
                }
            );
        }
        let error = read(json!(["1X"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`command` hooks: `env[0]` has `1X`, which is not an environment variable name (letters, digits and `_`, not starting with a digit)"
        );
        let error = read(json!({"MODE": ["a"]})).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("`command` hooks: `env.MODE` must be a string, found a list"),
            "{error}"
        );
        let error = read(json!({"MODE": "a\u{0}b"})).unwrap_err();
        assert!(error.to_string().contains("without NUL"), "{error}");
        let error = read(json!("HOOKS_TOKEN")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("`command` hooks: `env` must be a list of variable names"),
            "{error}"
        );
        let error = read(json!([3])).unwrap_err();
        assert!(error.to_string().contains("`env[0]`"), "{error}");
    }

    fn launch(pass: &[&str], set: &[(&str, &str)], cwd: Option<&str>) -> Launch {
        Launch {
            program: PathBuf::from("env"),
            args: Vec::new(),
            cwd: cwd.map(PathBuf::from),
            env: EnvArgs {
                pass: pass.iter().map(|name| (*name).to_owned()).collect(),
                set: set
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                    .collect(),
            },
        }
    }

    /// A runtime environment holding secrets next to the ordinary variables.
    fn parent() -> Vec<(OsString, OsString)> {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        [
            ("PATH", path),
            ("HOME", "/home/fm".into()),
            ("LC_ALL", "C".into()),
            ("LC_TIME", "C".into()),
            ("PWD", "/srv/runtime".into()),
            ("FLATMACHINES_FOO", "foo".into()),
            ("OPENAI_API_KEY", "secret".into()),
            ("AWS_SECRET_ACCESS_KEY", "secret".into()),
            ("FM_TEST_PASSED", "passed".into()),
            ("HOOKS_MODE", "from the parent".into()),
            ("XFLATMACHINES_NOT", "prefix only at the start".into()),
        ]
        .into_iter()
        .map(|(name, value)| (name.into(), value))
        .collect()
    }

    fn names(env: &BTreeMap<OsString, OsString>) -> Vec<&str> {
        env.keys().filter_map(|name| name.to_str()).collect()
    }

    #[test]
    fn only_the_allow_list_and_named_variables_pass() {
        let launch = launch(&["FM_TEST_PASSED", "FM_TEST_UNSET"], &[], None);
        let env = launch.environment(parent());
        assert_eq!(
            names(&env),
            [
                "FLATMACHINES_FOO",
                "FM_TEST_PASSED",
                "HOME",
                "LC_ALL",
                "LC_TIME",
                "PATH",
                "PWD",
                "PYTHONUNBUFFERED"
            ]
        );
        assert_eq!(env[&OsString::from("PWD")], "/srv/runtime");
    }

    #[test]
    fn set_values_win_and_pwd_follows_the_working_directory() {
        let launch = launch(
            &[],
            &[("HOOKS_MODE", "strict"), ("PATH", "/opt/hooks/bin")],
            Some("/srv/hooks"),
        );
        let env = launch.environment(parent());
        assert_eq!(env[&OsString::from("HOOKS_MODE")], "strict");
        assert_eq!(env[&OsString::from("PATH")], "/opt/hooks/bin");
        assert_eq!(env[&OsString::from("PWD")], "/srv/hooks");
        let relative = self::launch(&[], &[], Some("hooks"));
        assert!(
            !relative
                .environment(parent())
                .contains_key(&OsString::from("PWD"))
        );
    }

    /// The real process sees exactly that environment: nothing of the runtime's leaks in.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_process_sees_only_its_environment() {
        let launch = launch(&["FM_TEST_PASSED"], &[("HOOKS_MODE", "strict")], None);
        let output = launch
            .command(parent())
            .stdin(Stdio::null())
            .output()
            .await
            .expect("`env` runs");
        assert!(output.status.success(), "{output:?}");
        let printed = String::from_utf8_lossy(&output.stdout);
        let mut seen: Vec<&str> = printed.lines().collect();
        seen.sort_unstable();
        let path = format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        let mut expected = vec![
            "FLATMACHINES_FOO=foo",
            "FM_TEST_PASSED=passed",
            "HOME=/home/fm",
            "HOOKS_MODE=strict",
            "LC_ALL=C",
            "LC_TIME=C",
            &path,
            "PWD=/srv/runtime",
            "PYTHONUNBUFFERED=1",
        ];
        expected.sort_unstable();
        assert_eq!(seen, expected);
        assert!(!printed.contains("secret"), "{printed}");
    }
}
