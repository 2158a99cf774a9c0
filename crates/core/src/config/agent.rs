//! The `spec: flatagent` document and agent references.

use std::path::Path;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ConfigError, ConfigWarning, Envelope, Format, describe, parse_envelope, parse_text};
use crate::JsonMap;

/// How a machine's `agents:` entry names its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum AgentRef {
    /// A path to a `spec: flatagent` file, relative to the machine config.
    Path(String),
    /// A whole `spec: flatagent` document, inline.
    Inline(Box<Value>),
    /// `{type, ref, config}`: an agent served by the adapter registered for `type`.
    Typed {
        /// The adapter type (`flatagent`, or a user's own).
        kind: String,
        /// Adapter-specific reference (a path, a module, …).
        reference: Option<String>,
        /// Adapter-specific config.
        config: Option<JsonMap>,
    },
}

impl AgentRef {
    /// The adapter type of agents given as a path or an inline document.
    pub const DEFAULT_TYPE: &'static str = "flatagent";

    /// The adapter type that serves this reference.
    pub fn type_name(&self) -> &str {
        match self {
            AgentRef::Path(_) | AgentRef::Inline(_) => Self::DEFAULT_TYPE,
            AgentRef::Typed { kind, .. } => kind,
        }
    }
}

impl TryFrom<Value> for AgentRef {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match value {
            Value::String(path) => Ok(AgentRef::Path(path)),
            Value::Object(mut map) => {
                if let Some(kind) = map.remove("type") {
                    let Value::String(kind) = kind else {
                        return Err(format!(
                            "`type` must be an adapter name, found {}",
                            describe(&kind)
                        ));
                    };
                    let reference = match map.remove("ref") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(r)) => Some(r),
                        Some(other) => {
                            return Err(format!(
                                "`ref` must be a string, found {}",
                                describe(&other)
                            ));
                        }
                    };
                    let config = match map.remove("config") {
                        None | Some(Value::Null) => None,
                        Some(Value::Object(c)) => Some(c),
                        Some(other) => {
                            return Err(format!(
                                "`config` must be a mapping, found {}",
                                describe(&other)
                            ));
                        }
                    };
                    return Ok(AgentRef::Typed {
                        kind,
                        reference,
                        config,
                    });
                }
                if map.get("spec").and_then(Value::as_str) == Some(AgentConfig::SPEC) {
                    return Ok(AgentRef::Inline(Box::new(Value::Object(map))));
                }
                Err("expected a path, an inline `spec: flatagent` document, or `{type, ref, config}`".to_owned())
            }
            other => Err(format!(
                "expected a path or an agent mapping, found {}",
                describe(&other)
            )),
        }
    }
}

impl From<AgentRef> for Value {
    fn from(reference: AgentRef) -> Self {
        match reference {
            AgentRef::Path(path) => Value::String(path),
            AgentRef::Inline(document) => *document,
            AgentRef::Typed {
                kind,
                reference,
                config,
            } => {
                let mut map = JsonMap::new();
                map.insert("type".into(), Value::String(kind));
                if let Some(reference) = reference {
                    map.insert("ref".into(), Value::String(reference));
                }
                if let Some(config) = config {
                    map.insert("config".into(), Value::Object(config));
                }
                Value::Object(map)
            }
        }
    }
}

/// A parsed `spec: flatagent` document.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `spec_version`.
    pub spec_version: String,
    /// The agent.
    pub data: AgentData,
    /// Free-form metadata.
    pub metadata: JsonMap,
}

impl AgentConfig {
    /// The `spec` value of agent documents.
    pub const SPEC: &'static str = "flatagent";

    /// Parses agent config text. `file` names the source in errors.
    pub fn parse(
        text: &str,
        file: &Path,
        format: Format,
    ) -> Result<(AgentConfig, Vec<ConfigWarning>), ConfigError> {
        Self::from_value(parse_text(text, file, format)?, file)
    }

    /// Reads an agent config from an already parsed document (an inline agent).
    pub fn from_value(
        document: Value,
        file: &Path,
    ) -> Result<(AgentConfig, Vec<ConfigWarning>), ConfigError> {
        let envelope: Envelope<AgentData> = parse_envelope(document, file, Self::SPEC)?;
        let config = AgentConfig {
            spec_version: envelope.spec_version,
            data: envelope.data,
            metadata: envelope.metadata,
        };
        Ok((config, envelope.warnings))
    }
}

/// The `data` of an agent document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentData {
    /// Agent name (the file name when absent).
    #[serde(default)]
    pub name: Option<String>,
    /// The model: a profile name, a profile with overrides, or an inline config.
    #[serde(default)]
    pub model: Option<ModelSpec>,
    /// System prompt (template).
    #[serde(default)]
    pub system: Option<String>,
    /// User prompt (template).
    #[serde(default)]
    pub user: Option<String>,
    /// Appended to the user prompt.
    #[serde(default)]
    pub instruction_suffix: Option<String>,
    /// The structured output wanted.
    #[serde(default)]
    pub output: Option<IndexMap<String, OutputFieldDef>>,
    /// MCP tool servers.
    #[serde(default)]
    pub mcp: Option<McpConfig>,
    /// Tools offered to the model, in the OpenAI function format
    /// (`{type: function, function: {name, description, parameters}}`).
    #[serde(default)]
    pub tools: Option<Vec<crate::llm::ToolDefinition>>,
    /// Fields of later spec versions, kept for adapters.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// `model:` of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ModelSpec {
    /// A profile name.
    Profile(String),
    /// An inline config, optionally based on a `profile`.
    Config(Box<ModelConfig>),
}

/// Model parameters, as in an agent's `model:` or a profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelConfig {
    /// The profile this config starts from (agents only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Provider name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Completion token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    /// Frequency penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Presence penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// API base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Stream responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Provider-specific parameters.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// One field of an agent's structured output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutputFieldDef {
    /// `str`, `int`, `float`, `bool`, `json`, `list` or `object`.
    #[serde(rename = "type")]
    #[schemars(with = "OutputTypeName")]
    pub kind: String,
    /// What the field holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Allowed values.
    #[serde(rename = "enum", default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// Whether the field is required (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// Item type of a `list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<OutputFieldDef>>,
    /// Properties of an `object`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<IndexMap<String, OutputFieldDef>>,
}

/// The output field types (for the schema; the field stays a string so agent adapters can
/// report an unknown type in their own words).
#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code, reason = "describes the schema only")]
enum OutputTypeName {
    Str,
    Int,
    Float,
    Bool,
    Json,
    List,
    Object,
}

/// `mcp:` of an agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct McpConfig {
    /// Servers by name.
    #[serde(default)]
    pub servers: IndexMap<String, McpServer>,
    /// Which tools to offer.
    #[serde(default)]
    pub tool_filter: Option<ToolFilter>,
    /// Template of the tools prompt.
    #[serde(default)]
    pub tool_prompt: Option<String>,
}

/// One MCP server: a command (stdio) or a URL (HTTP).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct McpServer {
    /// Command to start (stdio transport).
    #[serde(default)]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment, added to the variables it inherits.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Its working directory; a relative one resolves against the agent's config directory
    /// (not in the reference's schema).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Server URL (streamable HTTP transport).
    #[serde(default)]
    pub server_url: Option<String>,
    /// HTTP headers.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Seconds each wait on the server may take: starting and initializing it, each page of
    /// its tool list, each call (default 60).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// When true, a state whose agent declares this server fails if the server cannot be
    /// started or listed; otherwise the agent runs without its tools (not in the reference's
    /// schema).
    #[serde(default)]
    pub required: bool,
}

/// Allow and deny lists of `server:tool` patterns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolFilter {
    /// Only these tools.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Never these tools (wins over `allow`).
    #[serde(default)]
    pub deny: Option<Vec<String>>,
}

impl JsonSchema for AgentRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AgentRef".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A path to an agent file, an inline `spec: flatagent` document, or `{type, ref, config}` for an adapter.",
            "anyOf": [
                {"type": "string"},
                {"type": "object", "required": ["spec"]},
                {"type": "object", "required": ["type"], "properties": {
                    "type": {"type": "string"},
                    "ref": {"type": ["string", "null"]},
                    "config": {"type": ["object", "null"]}
                }}
            ]
        })
    }
}
