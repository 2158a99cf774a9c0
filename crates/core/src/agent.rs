//! Agents as the engine sees them: executors, their results and errors, adapters that build
//! executors from config, and execution strategies.

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::llm::{Message, ToolDefinition};
use crate::tool_servers::{DeclaredServers, ToolInfo};
use crate::{AgentRef, JsonMap};

/// What one agent call produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentResult {
    /// Structured output.
    #[serde(default)]
    pub output: Option<JsonMap>,
    /// Text output, used when there is no structured output.
    #[serde(default)]
    pub content: Option<String>,
    /// The provider's raw response.
    #[serde(default)]
    pub raw: Option<Value>,
    /// Usage counters (`api_calls`, tokens, `cost`, …).
    #[serde(default)]
    pub usage: Option<JsonMap>,
    /// Cost of the call.
    #[serde(default)]
    pub cost: Option<f64>,
    /// Anything else the executor reports.
    #[serde(default)]
    pub metadata: Option<JsonMap>,
    /// The tools the model asked to call, in the order it asked (none: it only answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<AgentToolCall>>,
}

/// One tool call a model asked for, as a machine sees it (upstream 4.x's shape): the
/// provider's call id, the tool's name and its arguments, parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentToolCall {
    /// The provider's id of the call, which its result must name.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments: the JSON object the model wrote, or `{"_raw": text}` when its text
    /// was not JSON.
    pub arguments: Value,
}

impl AgentResult {
    /// A result whose output is `output`.
    pub fn with_output(output: JsonMap) -> Self {
        AgentResult {
            output: Some(output),
            ..AgentResult::default()
        }
    }

    /// A result whose output is the text `content`.
    pub fn with_content(content: impl Into<String>) -> Self {
        AgentResult {
            content: Some(content.into()),
            ..AgentResult::default()
        }
    }

    /// The payload a state sees as `output`: the structured output, else `{"content": …}`,
    /// else `{}`. Without a structured output, the tool calls the model asked for are under
    /// `tool_calls`, so that a machine can route on them.
    pub fn output_payload(&self) -> JsonMap {
        let mut map = match (&self.output, &self.content) {
            (Some(output), _) => return output.clone(),
            (None, Some(content)) => {
                let mut map = Map::new();
                map.insert("content".into(), Value::String(content.clone()));
                map
            }
            (None, None) => Map::new(),
        };
        if let Some(calls) = self.tool_calls.as_ref().filter(|calls| !calls.is_empty()) {
            map.insert(
                "tool_calls".into(),
                serde_json::to_value(calls).unwrap_or(Value::Null),
            );
        }
        map
    }

    /// API calls this result accounts for: `usage.api_calls`, else `usage.requests`, else
    /// `usage.calls`, else 0.
    pub fn api_calls(&self) -> u64 {
        let Some(usage) = &self.usage else { return 0 };
        ["api_calls", "requests", "calls"]
            .iter()
            .filter_map(|key| usage.get(*key))
            .find_map(|value| match value {
                Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Cost this result accounts for: `cost`, else `usage.cost` (a number or `{total}`), else 0.
    pub fn total_cost(&self) -> f64 {
        if let Some(cost) = self.cost {
            return cost;
        }
        let Some(usage) = &self.usage else { return 0.0 };
        match usage.get("cost") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
            Some(Value::Object(cost)) => cost.get("total").and_then(Value::as_f64).unwrap_or(0.0),
            _ => 0.0,
        }
    }
}

/// An agent call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    /// The error type name that `on_error` maps and `context.last_error_type` see. Executors may
    /// use their own (`RateLimitError`, …); the default is `AgentError`.
    pub error_type: String,
    /// What went wrong.
    pub message: String,
    /// The HTTP status, when the failure came from a provider's response.
    pub status_code: Option<u16>,
    /// Response headers (lower-case names), when there was a response.
    pub headers: BTreeMap<String, String>,
}

impl AgentError {
    /// The error type name used when an executor gives none.
    pub const DEFAULT_TYPE: &'static str = "AgentError";

    /// An error of type [`AgentError::DEFAULT_TYPE`].
    pub fn new(message: impl Into<String>) -> Self {
        AgentError {
            error_type: Self::DEFAULT_TYPE.to_owned(),
            message: message.into(),
            status_code: None,
            headers: BTreeMap::new(),
        }
    }

    /// Sets the error type name.
    pub fn with_type(mut self, error_type: impl Into<String>) -> Self {
        self.error_type = error_type.into();
        self
    }

    /// Sets the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status_code = Some(status);
        self
    }

    /// Adds a response header (the name is lower-cased).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }
}

/// Runs one agent call.
///
/// # Contract
///
/// 1. `execute` may be called concurrently (parallel sampling, voting).
/// 2. A failed call is an `Err`, never an `Ok` holding an error description.
/// 3. `metadata` is constant for the executor's life; execution strategies read their options
///    from it (for example `mdap` and `parsing` for voting).
#[async_trait]
pub trait AgentExecutor: Send + Sync + Debug {
    /// Calls the agent with the rendered `input`; `context` is the machine context, read only.
    async fn execute(&self, input: &JsonMap, context: &JsonMap) -> Result<AgentResult, AgentError>;

    /// The agent's metadata.
    fn metadata(&self) -> Option<&JsonMap> {
        None
    }

    /// The tools the agent declares (`data.tools`), which a tool loop offers along with its
    /// providers' tools.
    fn declared_tools(&self) -> &[ToolDefinition] {
        &[]
    }

    /// The tool servers the agent declares (`data.mcp`), which a tool loop starts and offers
    /// along with its providers' tools.
    fn tool_servers(&self) -> Option<&DeclaredServers> {
        None
    }

    /// Whether [`AgentExecutor::execute_turn`] is implemented, so that a state may run this
    /// agent in a `tool_loop`.
    fn supports_tool_loop(&self) -> bool {
        false
    }

    /// One model turn of a tool loop: the prompt rendered from `turn.input`, then the
    /// conversation so far, offering exactly `turn.tools`. The result's `tool_calls` are the
    /// calls the model asks for.
    async fn execute_turn(
        &self,
        turn: &AgentTurn<'_>,
        context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        let _ = (turn, context);
        Err(AgentError::new(
            "this agent cannot run in a tool loop: its executor does not implement `execute_turn`",
        )
        .with_type("ToolLoopUnsupported"))
    }
}

/// What one turn of a tool loop sends to the model.
#[derive(Debug, Clone, Copy)]
pub struct AgentTurn<'a> {
    /// The state's rendered input, which the agent's prompt is rendered from on every turn.
    pub input: &'a JsonMap,
    /// The conversation after the prompt: the model's earlier turns, the tool results that
    /// answered them, and any steering messages.
    pub conversation: &'a [Message],
    /// The tools offered on this turn, already filtered by the loop's allow and deny lists.
    pub tools: &'a [ToolDefinition],
    /// The same tools as prompts see them (`tools`, `tool_prompt`), one per entry of `tools`.
    pub catalog: &'a [ToolInfo],
    /// The model must answer in text: `tools` are sent only because the conversation holds
    /// calls to them (Anthropic refuses such a conversation without them), with the
    /// provider's "call no tool" choice.
    pub answer_only: bool,
}

/// What an adapter knows about where an agent is declared.
#[derive(Debug, Clone, Default)]
pub struct AdapterContext {
    /// The directory of the machine config that declares the agent; relative refs resolve here.
    pub config_dir: PathBuf,
    /// The machine's `settings`.
    pub settings: JsonMap,
    /// The machine's name.
    pub machine_name: String,
    /// A `profiles.yml` to use instead of discovering one.
    pub profiles_file: Option<PathBuf>,
    /// The directory of the run's root machine, whose profiles are the fallback for child
    /// machines declared elsewhere.
    pub root_config_dir: Option<PathBuf>,
}

/// Builds executors for one agent type (`flatagent`, or a user's own).
///
/// # Contract
///
/// `create_executor` runs when a machine is prepared, before anything executes: it checks the
/// reference and config and fails with a message naming the agent when they are unusable.
pub trait AgentAdapter: Send + Sync + Debug {
    /// The `type` this adapter serves.
    fn type_name(&self) -> &str;

    /// Builds the executor for the agent `agent_name` declared as `agent_ref`.
    fn create_executor(
        &self,
        agent_name: &str,
        agent_ref: &AgentRef,
        context: &AdapterContext,
    ) -> Result<Arc<dyn AgentExecutor>, AgentError>;
}

/// How a state calls its agent: once, with retries, several samples, or voting.
///
/// # Contract
///
/// 1. The strategy calls `executor` one or more times and folds the results into one.
/// 2. The returned result's `usage.api_calls` and `cost` account for every call made.
#[async_trait]
pub trait ExecutionType: Send + Sync + Debug {
    /// Runs the agent according to this strategy.
    async fn execute(
        &self,
        executor: &dyn AgentExecutor,
        input: &JsonMap,
        context: &JsonMap,
    ) -> Result<AgentResult, AgentError>;
}

impl fmt::Display for AgentResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let payload = Value::Object(self.output_payload());
        write!(f, "{payload}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> JsonMap {
        match value {
            Value::Object(map) => map,
            _ => JsonMap::new(),
        }
    }

    #[test]
    fn payload_prefers_output_then_content() {
        let both = AgentResult {
            output: Some(map(json!({"a": 1}))),
            content: Some("text".into()),
            ..AgentResult::default()
        };
        assert_eq!(Value::Object(both.output_payload()), json!({"a": 1}));
        let content = AgentResult::with_content("hi");
        assert_eq!(
            Value::Object(content.output_payload()),
            json!({"content": "hi"})
        );
        assert_eq!(AgentResult::default().output_payload(), JsonMap::new());
    }

    #[test]
    fn usage_counters_follow_the_reference_fallbacks() {
        let result = AgentResult {
            usage: Some(map(json!({"requests": 2, "cost": {"total": 0.5}}))),
            ..AgentResult::default()
        };
        assert_eq!(result.api_calls(), 2);
        assert_eq!(result.total_cost(), 0.5);
        let result = AgentResult {
            usage: Some(map(json!({"api_calls": 3, "cost": 0.25}))),
            cost: Some(1.0),
            ..AgentResult::default()
        };
        assert_eq!(result.api_calls(), 3);
        assert_eq!(result.total_cost(), 1.0);
    }
}
