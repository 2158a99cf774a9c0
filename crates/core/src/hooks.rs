//! Machine hooks: the extension points of an execution.

use std::fmt::{self, Debug};

use async_trait::async_trait;
use serde_json::Value;

use crate::tools::ToolCallResult;
use crate::{AgentToolCall, Context};

/// A state's failure as hooks and `on_error` routing see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError {
    /// The error type name, as stored in `context.last_error_type` and matched against the keys
    /// of an `on_error` map (`TemplateError`, `Timeout`, an agent's own type, …).
    pub error_type: String,
    /// The message, as stored in `context.last_error`.
    pub message: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for StateError {}

/// A hook failed. The engine treats it as a failure of the state (or run) it ran in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HookError(pub String);

impl HookError {
    /// A hook error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        HookError(message.into())
    }
}

/// Extension points called during an execution. Every method has a pass-through default, so an
/// implementation overrides only what it needs.
///
/// # Contract
///
/// 1. Hooks run in this order per step: `on_state_enter`, (`on_action` when the state has an
///    `action`), `on_state_exit`, `on_transition`; `on_error` when a state fails and its
///    `on_error` config did not route the error; `on_machine_start` once before the first state
///    and `on_machine_end` once after the last. A state running a tool loop calls
///    `on_tool_calls` once per model turn that asks for tools and `on_tool_result` once per
///    call, between `on_state_enter` and `on_state_exit`.
/// 2. Changes a hook makes to the context are kept and checkpointed.
/// 3. A hook returning `Err` fails the state (or, for machine hooks, the run) with error type
///    `HookError`.
#[async_trait]
pub trait MachineHooks: Send + Sync + Debug {
    /// Before the first state. May change the initial context.
    async fn on_machine_start(&self, context: &mut Context) -> Result<(), HookError> {
        let _ = context;
        Ok(())
    }

    /// After the last state. May change the final output.
    async fn on_machine_end(
        &self,
        context: &mut Context,
        output: &mut Value,
    ) -> Result<(), HookError> {
        let _ = (context, output);
        Ok(())
    }

    /// Before a state runs. May change the context.
    async fn on_state_enter(&self, state: &str, context: &mut Context) -> Result<(), HookError> {
        let _ = (state, context);
        Ok(())
    }

    /// After a state ran. May change the state's output (`None` when it produced none).
    async fn on_state_exit(
        &self,
        state: &str,
        context: &mut Context,
        output: &mut Option<Value>,
    ) -> Result<(), HookError> {
        let _ = (state, context, output);
        Ok(())
    }

    /// Before moving from `from` to `to`. Return `Some(state)` to go elsewhere.
    async fn on_transition(
        &self,
        from: &str,
        to: &str,
        context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        let _ = (from, to, context);
        Ok(None)
    }

    /// A state failed and its `on_error` config did not route the error. Return `Some(state)`
    /// to recover there, `None` to let the run fail.
    async fn on_error(
        &self,
        state: &str,
        error: &StateError,
        context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        let _ = (state, error, context);
        Ok(None)
    }

    /// Runs the state's `action`. Return `true` when this hook handled it; an action no hook
    /// handles is logged as a warning and otherwise ignored, like the reference does.
    async fn on_action(&self, action: &str, context: &mut Context) -> Result<bool, HookError> {
        let _ = (action, context);
        Ok(false)
    }

    /// A tool loop's model turn asked for `calls`, before any of them runs. The hook may set,
    /// in the context, `_abort_tool_loop: true` (the loop ends, stop reason `aborted`) or
    /// `_skip_tools: [name or call id, …]` (those calls are not made; the model reads that
    /// they were skipped). The loop removes these keys once it has read them.
    async fn on_tool_calls(
        &self,
        state: &str,
        calls: &[AgentToolCall],
        context: &mut Context,
    ) -> Result<(), HookError> {
        let _ = (state, calls, context);
        Ok(())
    }

    /// A tool call of a tool loop finished (or was refused). The hook may set, in the context,
    /// `_abort_tool_loop: true` or `_steering_messages: [{role, content}, …]`, messages added
    /// to the conversation before the next model turn.
    async fn on_tool_result(
        &self,
        state: &str,
        result: &ToolCallResult,
        context: &mut Context,
    ) -> Result<(), HookError> {
        let _ = (state, result, context);
        Ok(())
    }
}
