//! The bounds that keep a careless or hostile config from taking the process down: how big a
//! config may be, how deep its nesting, how much work one template may do, how deep child
//! machines may nest.
//!
//! Every bound has a default that no reasonable config reaches, a name (`template_fuel`), and
//! one message when it is reached that names the bound and how to raise it. [`Limits`] holds
//! the values a caller chose; what it does not hold falls back to the machine's settings (for
//! the bounds a machine may set, see [`Limit::settable`]) and then to the default.
//!
//! `docs/limits.md` lists them all; a test checks that it does.

use std::fmt;
use std::str::FromStr;

use crate::config::closest;

macro_rules! limits {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $name:literal, default $default:expr, max $max:expr, $unit:ident, settable $settable:literal;
    )*) => {
        /// One bound. See the [module docs](self).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Limit {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Limit {
            /// Every bound, in the order `docs/limits.md` lists them.
            pub const ALL: &'static [Limit] = &[$(Limit::$variant),*];

            /// The bound's name, as `--limit NAME=VALUE` and `settings.limits` spell it.
            pub const fn name(self) -> &'static str {
                match self { $(Limit::$variant => $name,)* }
            }

            /// The value used when nobody sets one.
            pub const fn default_value(self) -> u64 {
                match self { $(Limit::$variant => $default,)* }
            }

            /// The highest value accepted. Past it, the bound would no longer protect what it
            /// guards (the stack, for the nesting bounds).
            pub const fn max_value(self) -> u64 {
                match self { $(Limit::$variant => $max,)* }
            }

            /// What the value counts.
            pub const fn unit(self) -> Unit {
                match self { $(Limit::$variant => Unit::$unit,)* }
            }

            /// Whether a machine may set it in `settings.limits` (the bounds on config loading
            /// guard the reading of that very file, so only the caller sets them).
            pub const fn settable(self) -> bool {
                match self { $(Limit::$variant => $settable,)* }
            }

            /// One line on what it bounds.
            pub fn description(self) -> &'static str {
                match self { $(Limit::$variant => concat!($($doc),*).trim_ascii(),)* }
            }
        }
    };
}

limits! {
    /// Largest config file read, in bytes (machines, agents, profiles).
    ConfigBytes = "config_bytes", default 16 << 20, max 1 << 40, Bytes, settable false;
    /// Deepest nesting of lists and mappings in a config document.
    ConfigDepth = "config_depth", default 128, max 1024, Count, settable false;
    /// Most nodes one config document may hold once its YAML aliases are expanded.
    ConfigNodes = "config_nodes", default 1_000_000, max 1 << 40, Count, settable false;
    /// Most bytes of text one config document may hold once its YAML aliases are expanded.
    ConfigTextBytes = "config_text_bytes", default 64 << 20, max 1 << 40, Bytes, settable false;
    /// Largest run input read from `--input`, `--input-file` or stdin, in bytes.
    InputBytes = "input_bytes", default 64 << 20, max 1 << 40, Bytes, settable false;
    /// Deepest nesting of a transition condition (`simple` or CEL): parentheses, operators, chains of operators.
    ExpressionDepth = "expression_depth", default 100, max 256, Count, settable false;
    /// Deepest nesting of child machines under the machine that is run (upstream's `settings.max_depth`).
    MachineDepth = "machine_depth", default 32, max 4096, Count, settable true;
    /// Most child machines one run may start across its whole tree in this process (`machine`, `foreach` and `launch` together).
    TreeMachines = "tree_machines", default 100_000, max 1 << 40, Count, settable true;
    /// Most items one `foreach` may fan out over.
    ForeachItems = "foreach_items", default 100_000, max 1 << 32, Count, settable true;
    /// Work one template render may do: one unit per instruction, and one per 16 bytes or per item it builds.
    TemplateFuel = "template_fuel", default 10_000_000, max 1 << 48, Count, settable true;
    /// Longest text one template render may produce, in bytes.
    TemplateBytes = "template_bytes", default 16 << 20, max 1 << 32, Bytes, settable true;
    /// Longest tool result a tool loop gives the model, in bytes; a longer one is cut there, with a note saying so.
    ToolResultBytes = "tool_result_bytes", default 1 << 20, max 1 << 32, Bytes, settable true;
    /// Largest message an MCP server may send, in bytes (one JSON-RPC line over stdio, one HTTP response or event); a server past it is disconnected.
    McpMessageBytes = "mcp_message_bytes", default 64 << 20, max 1 << 32, Bytes, settable true;
}

/// What a bound's value counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unit {
    /// Bytes; values may be written with a `KiB`, `MiB` or `GiB` suffix.
    Bytes,
    /// A plain count.
    Count,
}

impl Limit {
    /// Where to raise it, for messages: `(limit `template_fuel` is 10000000: raise it with
    /// --limit template_fuel=N or settings.limits.template_fuel)`.
    pub fn hint(self, value: u64) -> String {
        let name = self.name();
        let value = self.format_value(value);
        if self.settable() {
            format!(
                "limit `{name}` is {value}: raise it with --limit {name}=N or settings.limits.{name}"
            )
        } else {
            format!("limit `{name}` is {value}: raise it with --limit {name}=N")
        }
    }

    /// `16 MiB` for a byte bound that is a whole number of MiB, the number otherwise.
    pub fn format_value(self, value: u64) -> String {
        match self.unit() {
            Unit::Bytes if value >= 1 << 30 && value.is_multiple_of(1 << 30) => {
                format!("{} GiB", value >> 30)
            }
            Unit::Bytes if value >= 1 << 20 && value.is_multiple_of(1 << 20) => {
                format!("{} MiB", value >> 20)
            }
            Unit::Bytes if value >= 1 << 10 && value.is_multiple_of(1 << 10) => {
                format!("{} KiB", value >> 10)
            }
            Unit::Bytes => format!("{value} bytes"),
            Unit::Count => value.to_string(),
        }
    }

    /// Reads a value for this bound: a positive whole number, with `_` between digits allowed
    /// and, for byte bounds, a `KiB`, `MiB` or `GiB` suffix (also `K`, `M`, `G`).
    pub fn parse_value(self, text: &str) -> Result<u64, LimitError> {
        let bad = |reason: String| LimitError::Value {
            limit: self,
            value: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        let (digits, multiplier) = match self.unit() {
            Unit::Bytes => split_suffix(trimmed).ok_or_else(|| {
                bad("expected a number of bytes, optionally with KiB, MiB or GiB".to_owned())
            })?,
            Unit::Count => (trimmed, 1),
        };
        let digits: String = digits.chars().filter(|c| *c != '_').collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected a positive whole number".to_owned()));
        }
        let value = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .ok_or_else(|| bad("the number is too large".to_owned()))?;
        self.check(value).map_err(bad)
    }

    /// Whether `value` is allowed for this bound.
    fn check(self, value: u64) -> Result<u64, String> {
        if value == 0 {
            return Err("it must be at least 1".to_owned());
        }
        if value > self.max_value() {
            return Err(format!(
                "it may be at most {}",
                self.format_value(self.max_value())
            ));
        }
        Ok(value)
    }
}

fn split_suffix(text: &str) -> Option<(&str, u64)> {
    const SUFFIXES: &[(&str, u64)] = &[
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("K", 1 << 10),
        ("M", 1 << 20),
        ("G", 1 << 30),
        ("B", 1),
    ];
    for (suffix, multiplier) in SUFFIXES {
        if let Some(digits) = text.strip_suffix(suffix) {
            return Some((digits.trim_end(), *multiplier));
        }
    }
    text.bytes()
        .all(|b| b.is_ascii_digit() || b == b'_')
        .then_some((text, 1))
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Limit {
    type Err = LimitError;

    fn from_str(name: &str) -> Result<Limit, LimitError> {
        Limit::ALL
            .iter()
            .copied()
            .find(|limit| limit.name() == name)
            .ok_or_else(|| LimitError::Unknown {
                name: name.to_owned(),
                suggestion: closest(name, Limit::ALL.iter().map(|l| l.name())),
            })
    }
}

/// A bound could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// No bound has this name.
    #[error("there is no limit `{name}`{}; the limits are: {}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), names())]
    Unknown {
        /// The name given.
        name: String,
        /// The closest name there is.
        suggestion: Option<String>,
    },
    /// The value is not acceptable for the bound.
    #[error("limit `{limit}`: `{value}` is not a valid value: {reason}")]
    Value {
        /// The bound.
        limit: Limit,
        /// The text given.
        value: String,
        /// Why not.
        reason: String,
    },
    /// The bound cannot be set from a machine's settings.
    #[error(
        "limit `{limit}` guards the reading of config files, so a machine cannot set it in settings.limits; set it with --limit {limit}=N"
    )]
    NotSettable {
        /// The bound.
        limit: Limit,
    },
    /// `NAME=VALUE` was expected.
    #[error("`{0}` is not NAME=VALUE (for example template_fuel=1000000)")]
    Syntax(String),
}

fn names() -> String {
    Limit::ALL
        .iter()
        .map(|l| l.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bounds a caller chose. A bound it did not choose falls back to the machine's settings,
/// then to its default (see [`Limits::or`] and [`Limits::get`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    values: [Option<u64>; Limit::ALL.len()],
}

impl Limits {
    /// No bound chosen: every one at its default.
    pub const fn new() -> Limits {
        Limits {
            values: [None; Limit::ALL.len()],
        }
    }

    /// The value in force for `limit`.
    pub fn get(&self, limit: Limit) -> u64 {
        self.chosen(limit).unwrap_or(limit.default_value())
    }

    /// The value chosen for `limit`, if one was.
    pub fn chosen(&self, limit: Limit) -> Option<u64> {
        self.values[limit as usize]
    }

    /// Chooses `value` for `limit`.
    pub fn set(&mut self, limit: Limit, value: u64) -> Result<(), LimitError> {
        let value = limit.check(value).map_err(|reason| LimitError::Value {
            limit,
            value: value.to_string(),
            reason,
        })?;
        self.values[limit as usize] = Some(value);
        Ok(())
    }

    /// `self` with `limit` set to `value`.
    pub fn with(mut self, limit: Limit, value: u64) -> Result<Limits, LimitError> {
        self.set(limit, value)?;
        Ok(self)
    }

    /// Reads `NAME=VALUE` (the CLI's `--limit`).
    pub fn set_from_str(&mut self, assignment: &str) -> Result<(), LimitError> {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| LimitError::Syntax(assignment.to_owned()))?;
        let limit: Limit = name.trim().parse()?;
        let value = limit.parse_value(value)?;
        self.values[limit as usize] = Some(value);
        Ok(())
    }

    /// The bounds chosen here, and where none was chosen, those chosen in `fallback`.
    pub fn or(&self, fallback: &Limits) -> Limits {
        let mut merged = *self;
        for (value, other) in merged.values.iter_mut().zip(fallback.values) {
            if value.is_none() {
                *value = other;
            }
        }
        merged
    }

    /// The bounds a machine's settings choose: `max_depth` (upstream's name for
    /// `machine_depth`) and the `limits` map. Values may be numbers or, for byte bounds,
    /// text such as `"16 MiB"`.
    pub fn from_settings(
        max_depth: Option<&serde_json::Value>,
        limits: Option<&serde_json::Value>,
    ) -> Result<Limits, (String, LimitError)> {
        let mut chosen = Limits::new();
        let mut put = |location: String, limit: Limit, value: &serde_json::Value| {
            let parsed = match value {
                serde_json::Value::Number(n) => match n.as_u64() {
                    Some(n) => limit.check(n).map_err(|reason| LimitError::Value {
                        limit,
                        value: n.to_string(),
                        reason,
                    }),
                    None => Err(LimitError::Value {
                        limit,
                        value: n.to_string(),
                        reason: "expected a positive whole number".to_owned(),
                    }),
                },
                serde_json::Value::String(text) => limit.parse_value(text),
                other => Err(LimitError::Value {
                    limit,
                    value: other.to_string(),
                    reason: "expected a number".to_owned(),
                }),
            };
            match parsed {
                Ok(value) => {
                    chosen.values[limit as usize] = Some(value);
                    Ok(())
                }
                Err(e) => Err((location, e)),
            }
        };
        if let Some(value) = max_depth {
            put("settings.max_depth".to_owned(), Limit::MachineDepth, value)?;
        }
        match limits {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(map)) => {
                for (name, value) in map {
                    let location = format!("settings.limits.{name}");
                    let limit: Limit = name.parse().map_err(|e| (location.clone(), e))?;
                    if !limit.settable() {
                        return Err((location, LimitError::NotSettable { limit }));
                    }
                    put(location, limit, value)?;
                }
            }
            Some(_) => {
                return Err((
                    "settings.limits".to_owned(),
                    LimitError::Syntax("settings.limits must be a mapping of NAME: VALUE".into()),
                ));
            }
        }
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_until_a_value_is_chosen() {
        let mut limits = Limits::new();
        assert_eq!(limits.get(Limit::MachineDepth), 32);
        limits.set(Limit::MachineDepth, 3).unwrap();
        assert_eq!(limits.get(Limit::MachineDepth), 3);
        assert_eq!(limits.chosen(Limit::TemplateFuel), None);
    }

    #[test]
    fn the_caller_wins_over_settings() {
        let cli = Limits::new().with(Limit::MachineDepth, 5).unwrap();
        let settings = Limits::new()
            .with(Limit::MachineDepth, 9)
            .unwrap()
            .with(Limit::TemplateFuel, 100)
            .unwrap();
        let merged = cli.or(&settings);
        assert_eq!(merged.get(Limit::MachineDepth), 5);
        assert_eq!(merged.get(Limit::TemplateFuel), 100);
    }

    #[test]
    fn values_parse_with_units_and_separators() {
        let mut limits = Limits::new();
        limits.set_from_str("template_bytes=2MiB").unwrap();
        assert_eq!(limits.get(Limit::TemplateBytes), 2 << 20);
        limits.set_from_str("config_bytes = 512 K").unwrap();
        assert_eq!(limits.get(Limit::ConfigBytes), 512 << 10);
        limits.set_from_str("template_fuel=1_000_000").unwrap();
        assert_eq!(limits.get(Limit::TemplateFuel), 1_000_000);
    }

    #[test]
    fn bad_assignments_say_what_was_expected() {
        let mut limits = Limits::new();
        let messages: Vec<String> = [
            "templat_fuel=3",
            "template_fuel=0",
            "template_fuel=ten",
            "machine_depth=4097",
            "template_fuel",
            "machine_depth=2MiB",
            "expression_depth=99999999999999999999999",
        ]
        .iter()
        .map(|text| limits.set_from_str(text).unwrap_err().to_string())
        .collect();
        insta::assert_yaml_snapshot!(messages);
    }

    #[test]
    fn settings_choose_the_bounds_a_machine_may_set() {
        let limits = Limits::from_settings(
            Some(&serde_json::json!(4)),
            Some(&serde_json::json!({"template_bytes": "1 MiB", "foreach_items": 10})),
        )
        .unwrap();
        assert_eq!(limits.get(Limit::MachineDepth), 4);
        assert_eq!(limits.get(Limit::TemplateBytes), 1 << 20);
        assert_eq!(limits.get(Limit::ForeachItems), 10);
        let (location, error) =
            Limits::from_settings(None, Some(&serde_json::json!({"config_bytes": 10})))
                .unwrap_err();
        assert_eq!(location, "settings.limits.config_bytes");
        assert!(matches!(error, LimitError::NotSettable { .. }));
        let (location, _) = Limits::from_settings(Some(&serde_json::json!(-1)), None).unwrap_err();
        assert_eq!(location, "settings.max_depth");
    }

    #[test]
    fn hints_name_the_bound_and_where_to_raise_it() {
        assert_eq!(
            Limit::TemplateBytes.hint(16 << 20),
            "limit `template_bytes` is 16 MiB: raise it with --limit template_bytes=N or settings.limits.template_bytes"
        );
        assert_eq!(
            Limit::ConfigDepth.hint(128),
            "limit `config_depth` is 128: raise it with --limit config_depth=N"
        );
    }

    #[test]
    fn every_bound_has_a_description_and_a_sane_default() {
        for limit in Limit::ALL {
            assert!(!limit.description().is_empty(), "{limit}");
            assert!(limit.default_value() >= 1 && limit.default_value() <= limit.max_value());
        }
    }
}
