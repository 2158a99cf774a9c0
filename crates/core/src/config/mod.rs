//! The config model of the three spec documents, and how text becomes one.
//!
//! Every document has the same envelope:
//!
//! ```yaml
//! spec: flatmachine        # or flatagent, flatprofiles
//! spec_version: "1.0.0"
//! data: { ... }            # the document itself
//! metadata: { ... }        # free-form, optional
//! ```
//!
//! Parsing checks the envelope (`spec` must match, `data` must be present, `spec_version` must
//! be a version number; another major version is only a warning), then reads `data` into typed
//! structs. A type error names its location (`data.states.review.transitions[0].to`). Unknown
//! fields where the spec has no extension point produce warnings, not errors, so configs written
//! for later spec versions still load.

mod agent;
mod error;
mod machine;
mod mcp;
mod profiles;
mod yaml;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use agent::{
    AgentConfig, AgentData, AgentRef, McpConfig, McpServer, ModelConfig, ModelSpec, OutputFieldDef,
    ToolFilter,
};
pub use error::{ConfigError, ConfigWarning, closest};
pub use machine::{
    BackendConfig, ExecutionConfig, Guardrail, HooksConfig, MachineConfig, MachineData,
    MachineEntry, MachineRef, MachineSettings, MachineTarget, MachineTool, Mode, OnError,
    OneOrMany, PersistenceConfig, StateDefinition, StateKind, ToolLoopOptions, ToolLoopSetting,
    Transition,
};
pub use mcp::McpTransport;
pub use profiles::{ProfilesConfig, ProfilesData};

use crate::limits::{Limit, Limits};
use crate::{JsonMap, SPEC_VERSION};

/// The text format of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML 1.2, core schema (with `<<` merge keys).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// JSON for `.json` files, YAML for everything else.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// The envelope of a parsed document, with its warnings.
#[derive(Debug, Clone)]
pub struct Envelope<T> {
    /// `spec_version`, or [`SPEC_VERSION`] when absent.
    pub spec_version: String,
    /// The typed `data`.
    pub data: T,
    /// The free-form `metadata`.
    pub metadata: JsonMap,
    /// What looked suspicious.
    pub warnings: Vec<ConfigWarning>,
}

/// Parses `text` into a JSON value, reporting syntax errors with line and column, within the
/// default [`Limits`].
pub fn parse_text(text: &str, file: &Path, format: Format) -> Result<Value, ConfigError> {
    parse_text_within(text, file, format, &Limits::new())
}

/// Parses `text` into a JSON value within `limits`: its size ([`Limit::ConfigBytes`]), its
/// nesting ([`Limit::ConfigDepth`]) and, for YAML, what its aliases expand to
/// ([`Limit::ConfigNodes`], [`Limit::ConfigTextBytes`]).
pub fn parse_text_within(
    text: &str,
    file: &Path,
    format: Format,
    limits: &Limits,
) -> Result<Value, ConfigError> {
    let size = text.len() as u64;
    if size > limits.get(Limit::ConfigBytes) {
        return Err(ConfigError::Limit {
            file: file.to_owned(),
            line: None,
            column: None,
            message: format!("the document is {size} bytes"),
            limit: Limit::ConfigBytes,
            value: limits.get(Limit::ConfigBytes),
        });
    }
    match format {
        Format::Json => {
            let value: Value =
                crate::json::from_str_exact(text).map_err(|e| ConfigError::Syntax {
                    file: file.to_owned(),
                    format: "JSON",
                    line: Some(e.line()),
                    column: Some(e.column()),
                    message: strip_position(&e.to_string()),
                })?;
            let depth = crate::json::depth(&value) as u64;
            if depth > limits.get(Limit::ConfigDepth) {
                return Err(ConfigError::Limit {
                    file: file.to_owned(),
                    line: None,
                    column: None,
                    message: format!("lists and objects are nested {depth} levels deep"),
                    limit: Limit::ConfigDepth,
                    value: limits.get(Limit::ConfigDepth),
                });
            }
            Ok(value)
        }
        Format::Yaml => yaml::parse(text, file, limits),
    }
}

/// Drops the " at line X column Y" tail parsers append, since we report the position ourselves.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// Checks the envelope of `document` and reads its `data` as `T`.
pub fn parse_envelope<T: DeserializeOwned>(
    document: Value,
    file: &Path,
    spec: &'static str,
) -> Result<Envelope<T>, ConfigError> {
    let Value::Object(mut root) = document else {
        return Err(ConfigError::WrongSpec {
            file: file.to_owned(),
            expected: spec,
            found: format!("{} instead of a mapping", describe(&document)),
        });
    };
    match root.get("spec") {
        Some(Value::String(found)) if found == spec => {}
        Some(found) => {
            return Err(ConfigError::WrongSpec {
                file: file.to_owned(),
                expected: spec,
                found: format!("`spec: {}`", inline(found)),
            });
        }
        None => {
            return Err(ConfigError::WrongSpec {
                file: file.to_owned(),
                expected: spec,
                found: "no `spec` field".to_owned(),
            });
        }
    }
    let mut warnings = Vec::new();
    let spec_version = match root.get("spec_version") {
        None | Some(Value::Null) => SPEC_VERSION.to_owned(),
        Some(value) => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => inline(other),
            };
            let major = version_major(&text).ok_or_else(|| ConfigError::BadSpecVersion {
                file: file.to_owned(),
                version: text.clone(),
            })?;
            if Some(major) != version_major(SPEC_VERSION) {
                warnings.push(ConfigWarning {
                    file: file.to_owned(),
                    location: "spec_version".to_owned(),
                    message: format!(
                        "written for spec {text}; this runtime implements {SPEC_VERSION}, so some fields may mean something else"
                    ),
                });
            }
            text
        }
    };
    let data = match root.remove("data") {
        Some(Value::Null) | None => {
            return Err(ConfigError::Missing {
                file: file.to_owned(),
                field: "data".to_owned(),
                hint: Some(format!("the {spec} itself goes under a `data:` key")),
            });
        }
        Some(data) => data,
    };
    let metadata = match root.remove("metadata") {
        Some(Value::Object(map)) => map,
        None | Some(Value::Null) => JsonMap::new(),
        Some(other) => {
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                location: "metadata".to_owned(),
                message: format!("expected a mapping, found {}", describe(&other)),
            });
        }
    };
    let data = deserialize_at(data, file, "data")?;
    Ok(Envelope {
        spec_version,
        data,
        metadata,
        warnings,
    })
}

/// Reads `value` as `T`, naming the failing field's path under `prefix` on error.
pub fn deserialize_at<T: DeserializeOwned>(
    value: Value,
    file: &Path,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let location = match (prefix.is_empty(), path.as_str()) {
            (true, _) => path,
            (false, ".") => prefix.to_owned(),
            (false, _) => format!("{prefix}.{path}"),
        };
        ConfigError::Invalid {
            file: file.to_owned(),
            location,
            message: e.into_inner().to_string(),
        }
    })
}

/// The major version of a `MAJOR[.MINOR[.PATCH]][-pre][+build]` string.
fn version_major(version: &str) -> Option<u64> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let mut count = 1;
    for part in parts {
        part.parse::<u64>().ok()?;
        count += 1;
    }
    (count <= 3).then_some(major)
}

/// "a string", "a list", … for messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Number(_) => "a number".to_owned(),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// A short one-line rendering of a value for messages.
fn inline(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Warnings for keys of `object` that are not in `known`.
pub(crate) fn unknown_keys(
    object: &JsonMap,
    known: &[&str],
    file: &Path,
    location: &str,
    warnings: &mut Vec<ConfigWarning>,
) {
    for key in object.keys() {
        if !known.contains(&key.as_str()) {
            let hint = match closest(key, known.iter().copied()) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None => String::new(),
            };
            warnings.push(ConfigWarning {
                file: file.to_owned(),
                location: location.to_owned(),
                message: format!("unknown field `{key}` is ignored{hint}"),
            });
        }
    }
}

#[cfg(test)]
mod tests;
