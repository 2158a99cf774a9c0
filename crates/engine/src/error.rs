//! Errors of a run, and the error type names states fail with.

use flatmachines_core::{ConfigError, StateError};

/// The error type names a failing state reports in `context.last_error_type` and that
/// `on_error` maps match. Agents may report their own names as well.
pub mod error_types {
    /// A template failed to render.
    pub const TEMPLATE: &str = "TemplateError";
    /// A condition could not be evaluated (for example `null >= 8`).
    pub const EXPRESSION: &str = "ExpressionError";
    /// A value had the wrong shape (`foreach` over a non-list, duplicate keys, …).
    pub const INVALID_VALUE: &str = "InvalidValue";
    /// A `timeout` expired.
    pub const TIMEOUT: &str = "Timeout";
    /// Something named at run time does not exist (a state a hook redirected to).
    pub const NOT_FOUND: &str = "NotFound";
    /// An agent call failed without naming its own error type.
    pub const AGENT: &str = "AgentError";
    /// A hook returned an error.
    pub const HOOK: &str = "HookError";
    /// A backend (checkpoints, results, locks) failed.
    pub const BACKEND: &str = "BackendError";
    /// A child machine stopped at its step limit.
    pub const STEP_LIMIT: &str = "StepLimit";
    /// A child machine would have nested deeper than the `machine_depth` limit.
    pub const DEPTH_LIMIT: &str = "MachineDepthLimit";
    /// A run tree would have started more child machines than the `tree_machines` limit.
    pub const TREE_LIMIT: &str = "MachineTreeLimit";
    /// The run tree made as many agent calls as its `max_agent_calls` budget allows.
    pub const AGENT_CALL_LIMIT: &str = "AgentCallLimit";
    /// The run tree's agents reported as much cost as its `max_cost` budget allows.
    pub const COST_LIMIT: &str = "CostLimit";
    /// A non-final state had no transition whose condition held.
    pub const NO_TRANSITION: &str = "NoTransition";
    /// An MCP server that the config marks `required` could not be started or listed.
    pub const TOOL_SERVER: &str = "ToolServerError";
    /// A child task ended abnormally (a panic in user code).
    pub const INTERNAL: &str = "InternalError";
    /// A state names an agent that `data.agents` does not declare (it fails when reached).
    pub const UNKNOWN_AGENT: &str = "UnknownAgent";
    /// A file a config names does not exist; the flatagent adapter gives it for a missing
    /// agent file (`flatmachines_agents::error_types::FILE_NOT_FOUND`, the same name).
    pub const FILE_NOT_FOUND: &str = "FileNotFound";

    /// The Python reference's name for the same kind of failure, accepted as an `on_error`
    /// key so reference configs keep routing errors the same way.
    pub fn reference_alias(error_type: &str) -> Option<&'static str> {
        Some(match error_type {
            TIMEOUT => "TimeoutError",
            INVALID_VALUE | UNKNOWN_AGENT => "ValueError",
            FILE_NOT_FOUND => "FileNotFoundError",
            NOT_FOUND => "KeyError",
            EXPRESSION => "TypeError",
            AGENT | HOOK | BACKEND | STEP_LIMIT | NO_TRANSITION | INTERNAL => "RuntimeError",
            _ => return None,
        })
    }
}

/// Builds a [`StateError`].
pub(crate) fn state_error(error_type: &str, message: impl Into<String>) -> StateError {
    StateError {
        error_type: error_type.to_owned(),
        message: message.into(),
    }
}

/// Why a run did not produce an output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The machine could not be prepared: a config or binding problem found before anything
    /// ran.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The input is not usable.
    #[error("invalid input: {0}")]
    Input(String),
    /// Another runner holds this execution's lock.
    #[error("execution `{execution_id}` is running elsewhere (its lock is held)")]
    LockHeld {
        /// The execution id.
        execution_id: String,
    },
    /// A fresh run was given an execution id that already has checkpoints: running would mix
    /// two runs' snapshots under one id. Resume it, pick another id, or set
    /// [`RunOptions::replace`](crate::RunOptions::replace).
    #[error(
        "execution `{execution_id}` already has {count} stored checkpoint(s){}; a fresh run under the same id would mix its snapshots with theirs",
        machine.as_deref().map(|m| format!(" of machine `{m}`")).unwrap_or_default()
    )]
    ExecutionExists {
        /// The execution id.
        execution_id: String,
        /// The machine the stored checkpoints belong to, when they could be read.
        machine: Option<String>,
        /// How many keys the store holds for it.
        count: usize,
    },
    /// The execution could not be resumed from its checkpoints.
    #[error("cannot resume execution `{execution_id}`: {reason}")]
    Resume {
        /// The execution id.
        execution_id: String,
        /// Why.
        reason: crate::run::ResumeFailure,
    },
    /// A state failed and no `on_error` route or hook recovered, or the run could not go on
    /// (a checkpoint write failed, no transition matched, …).
    #[error("{}", failure_message(machine, state.as_deref(), error))]
    Failed {
        /// The machine's name.
        machine: String,
        /// The state it failed in, when it failed inside one.
        state: Option<String>,
        /// The execution id.
        execution_id: String,
        /// The error type and message.
        error: StateError,
    },
}

fn failure_message(machine: &str, state: Option<&str>, error: &StateError) -> String {
    match state {
        Some(state) => format!(
            "machine `{machine}` failed in state `{state}` ({}): {}",
            error.error_type, error.message
        ),
        None => format!(
            "machine `{machine}` failed ({}): {}",
            error.error_type, error.message
        ),
    }
}

impl RunError {
    /// The error type and message, as a parent machine records a failed child.
    pub fn as_state_error(&self) -> StateError {
        match self {
            RunError::Failed { error, .. } => error.clone(),
            RunError::Config(e) => state_error("ConfigError", e.to_string()),
            RunError::Input(message) => state_error(error_types::INVALID_VALUE, message.clone()),
            RunError::LockHeld { .. }
            | RunError::Resume { .. }
            | RunError::ExecutionExists { .. } => {
                state_error(error_types::BACKEND, self.to_string())
            }
        }
    }
}
