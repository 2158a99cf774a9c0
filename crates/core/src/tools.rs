//! Tools that a machine-driven tool loop calls for its agent: [`ToolProvider`], the id each
//! call carries ([`ToolCallId`]) and what a call gives back ([`ToolOutcome`]).

use std::fmt::{self, Debug};
use std::time::Instant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::llm::ToolDefinition;

/// The stable identity of one tool call in a tool loop: the execution, the step of the state
/// that runs the loop, the model turn (from 1) and the call's place in that turn (from 0).
///
/// A run resumed from a checkpoint that repeats a step gives its calls the same ids, so a tool
/// with side effects can use [`ToolCallId::key`] to do its work once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolCallId {
    /// The execution running the loop.
    pub execution_id: String,
    /// The step of the state running the loop.
    pub step: u64,
    /// The model turn that asked for the call, from 1.
    pub turn: u32,
    /// The call's position among that turn's calls, from 0.
    pub index: u32,
}

impl ToolCallId {
    /// `execution/step/turn/index`: one string naming the call, for idempotency keys.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.execution_id, self.step, self.turn, self.index
        )
    }
}

impl fmt::Display for ToolCallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// One call a [`ToolProvider`] is asked to make.
#[derive(Debug, Clone)]
pub struct ToolRequest<'a> {
    /// The tool's name, as the model wrote it.
    pub name: &'a str,
    /// The arguments the model wrote: a JSON object, or `{"_raw": text}` when its text was not
    /// JSON.
    pub arguments: &'a Value,
    /// The provider's id of the call (`call_…`, `toolu_…`).
    pub call_id: &'a str,
    /// The call's stable identity in the run.
    pub id: &'a ToolCallId,
    /// When the call must be done by (the loop's `tool_timeout`), if there is such a bound.
    /// The loop stops waiting then whatever the tool does; a tool holding resources may use it
    /// to give up early.
    pub deadline: Option<Instant>,
}

/// What a tool call gave back: the text the model reads, and whether it is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolOutcome {
    /// The result as the model reads it.
    pub content: String,
    /// Whether the call failed; the model reads the content either way.
    #[serde(default)]
    pub is_error: bool,
}

impl ToolOutcome {
    /// A successful result.
    pub fn ok(content: impl Into<String>) -> Self {
        ToolOutcome {
            content: content.into(),
            is_error: false,
        }
    }

    /// A failed call, reported to the model.
    pub fn error(content: impl Into<String>) -> Self {
        ToolOutcome {
            content: content.into(),
            is_error: true,
        }
    }
}

/// One finished tool call as the `on_tool_result` hook sees it (upstream's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallResult {
    /// The provider's id of the call.
    pub tool_call_id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments the model wrote.
    pub arguments: Value,
    /// The result as the model reads it.
    pub content: String,
    /// Whether the call failed (an error, a timeout, an unknown, denied or skipped tool).
    pub is_error: bool,
}

/// A tool call that could not be made at all. The tool loop turns it into a tool error that
/// the model reads, so that the model can recover; the run does not fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// No tool of that name is provided.
    #[error("no tool named `{0}` is available")]
    Unknown(String),
    /// The tool failed.
    #[error("{0}")]
    Failed(String),
}

/// The tools a tool loop may call.
///
/// # Contract
///
/// 1. `definitions` lists every tool the provider serves, in the OpenAI function format, with
///    distinct names; it is read once per tool loop, so it may change between loops but not
///    within one.
/// 2. `call` may be called concurrently, from several loops at once.
/// 3. A call to a name the provider does not serve is [`ToolError::Unknown`]; a tool that fails
///    is a [`ToolError::Failed`] or an `Ok` whose `is_error` is set. Neither panics.
/// 4. The loop stops waiting at [`ToolRequest::deadline`] and drops the call's future, so a
///    call must be safe to cancel at any `.await`.
#[async_trait]
pub trait ToolProvider: Send + Sync + Debug {
    /// The tools served.
    fn definitions(&self) -> Vec<ToolDefinition>;

    /// Makes one call.
    async fn call(&self, request: ToolRequest<'_>) -> Result<ToolOutcome, ToolError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_name_execution_step_turn_and_index() {
        let id = ToolCallId {
            execution_id: "exec-1".into(),
            step: 3,
            turn: 2,
            index: 1,
        };
        assert_eq!(id.key(), "exec-1/3/2/1");
        assert_eq!(id.to_string(), id.key());
    }
}
