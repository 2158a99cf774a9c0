//! An optional abstraction over LLM providers (the spec's `LLMBackend`).

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AgentError, JsonMap};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
    /// For `tool` messages: the call being answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For `assistant` messages: the tools it called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function called.
    pub function: FunctionCall,
}

/// The function part of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments as a JSON string.
    pub arguments: String,
}

/// A tool the model may call, in the OpenAI function format:
/// `{"type": "function", "function": {"name", "description", "parameters"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolDefinition {
    /// Always `function`.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// The function's name, description and JSON Schema parameters.
    pub function: JsonMap,
}

fn function_kind() -> String {
    "function".to_owned()
}

impl ToolDefinition {
    /// The function's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.function.get("name").and_then(Value::as_str)
    }

    /// Checks a list of declarations (an agent's `data.tools`): each a `function` with a
    /// name and, if any, object `parameters`; names distinct. The error names the first
    /// declaration that is not usable, by its position.
    pub fn check_all(tools: &[ToolDefinition]) -> Result<(), ToolDeclarationError> {
        let invalid = |index: usize, message: String| ToolDeclarationError { index, message };
        let mut names = std::collections::HashSet::new();
        for (index, tool) in tools.iter().enumerate() {
            if tool.kind != "function" {
                return Err(invalid(
                    index,
                    format!(
                        "has `type: {}`; only `function` tools are supported",
                        tool.kind
                    ),
                ));
            }
            let Some(name) = tool.name().filter(|name| !name.is_empty()) else {
                return Err(invalid(index, "has no `function.name`".to_owned()));
            };
            if !names.insert(name) {
                return Err(invalid(index, format!("repeats the tool name `{name}`")));
            }
            if let Some(parameters) = tool.function.get("parameters")
                && !parameters.is_object()
            {
                return Err(invalid(
                    index,
                    format!("`{name}` has `parameters` that are not a JSON Schema object"),
                ));
            }
        }
        Ok(())
    }
}

/// A tool declaration [`ToolDefinition::check_all`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`data.tools[{index}]` {message}")]
pub struct ToolDeclarationError {
    /// The declaration's position in the list.
    pub index: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Per-call options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmOptions {
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Completion token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Tools offered to the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolDefinition>>,
    /// `{"type": "json_object"}` or `{"type": "text"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
}

/// Calls an LLM provider.
///
/// # Contract
///
/// 1. `call` returns the assistant's text; `call_raw` the provider's whole response body.
/// 2. Each successful call adds one to [`LlmBackend::total_api_calls`] and its cost, when known,
///    to [`LlmBackend::total_cost`].
/// 3. Provider failures are [`AgentError`]s carrying the HTTP status and headers when there
///    were any, so retry policies can act on them.
#[async_trait]
pub trait LlmBackend: Send + Sync + Debug {
    /// Sends `messages` and returns the reply's text.
    async fn call(&self, messages: &[Message], options: &LlmOptions) -> Result<String, AgentError>;
    /// Sends `messages` and returns the provider's raw response.
    async fn call_raw(
        &self,
        messages: &[Message],
        options: &LlmOptions,
    ) -> Result<Value, AgentError>;
    /// Calls made so far.
    fn total_api_calls(&self) -> u64;
    /// Cost so far.
    fn total_cost(&self) -> f64;
}
