//! Run observers: a read-only feed of what executions do, for progress displays and metrics.
//!
//! Unlike [`MachineHooks`](crate::MachineHooks), an observer cannot change a run, sees every
//! execution of a run tree (children included) and hears about agent calls, fan-outs and
//! checkpoint writes, which hooks never see.

use std::fmt::Debug;
use std::time::Duration;

use crate::hooks::StateError;
use crate::snapshot::CheckpointEvent;

/// Receives the events of every execution run by the runtime it is registered with.
///
/// # Contract
///
/// 1. `on_event` is called synchronously from the task running the execution, so it returns
///    quickly: it may count, record or hand the event to another thread, never wait on I/O.
/// 2. It never panics; a panic would end the task running the execution.
/// 3. Events of one execution arrive in the order they happened; events of concurrent
///    executions (children of a fan-out) interleave, and may arrive from several threads.
pub trait RunObserver: Send + Sync + Debug {
    /// One event. The borrowed fields live only for the call: copy what is kept.
    fn on_event(&self, event: &RunEvent<'_>);
}

/// Which execution an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionRef<'a> {
    /// The execution id.
    pub execution_id: &'a str,
    /// The parent's execution id, for a child machine.
    pub parent_execution_id: Option<&'a str>,
    /// The machine's name.
    pub machine: &'a str,
}

impl ExecutionRef<'_> {
    /// Whether this is the root of its run tree (it has no parent).
    pub fn is_root(&self) -> bool {
        self.parent_execution_id.is_none()
    }
}

/// Token counts reported by an agent call, when its executor reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt (input) tokens.
    pub prompt: u64,
    /// Completion (output) tokens.
    pub completion: u64,
}

impl TokenUsage {
    /// Reads an agent result's `usage`: `prompt_tokens` (or `input_tokens`) and
    /// `completion_tokens` (or `output_tokens`); missing counts are 0.
    pub fn from_usage(usage: &crate::JsonMap) -> Self {
        let count = |keys: [&str; 2]| {
            keys.iter()
                .filter_map(|key| usage.get(*key))
                .find_map(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        TokenUsage {
            prompt: count(["prompt_tokens", "input_tokens"]),
            completion: count(["completion_tokens", "output_tokens"]),
        }
    }

    /// Prompt and completion tokens together.
    pub fn total(&self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

/// How a claim on a work pool went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// An item was claimed.
    Claimed,
    /// The pool had nothing to claim.
    Empty,
    /// The backend failed.
    Failed,
}

impl ClaimOutcome {
    /// `claimed`, `empty` or `failed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClaimOutcome::Claimed => "claimed",
            ClaimOutcome::Empty => "empty",
            ClaimOutcome::Failed => "failed",
        }
    }
}

/// Something an execution did.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RunEvent<'a> {
    /// An execution began (fresh or resumed).
    MachineStarted {
        /// The execution.
        execution: ExecutionRef<'a>,
    },
    /// An execution ended: completed, stopped at its step limit, or failed.
    MachineFinished {
        /// The execution.
        execution: ExecutionRef<'a>,
        /// Steps taken, or `None` when it failed.
        steps: Option<u64>,
        /// Whether a final state was reached (`false` at the step limit, or on failure).
        completed: bool,
        /// Why it failed, when it did.
        error: Option<&'a StateError>,
    },
    /// A state is about to run.
    StateEntered {
        /// The execution.
        execution: ExecutionRef<'a>,
        /// The state.
        state: &'a str,
        /// Its step number (1 for the first state).
        step: u64,
    },
    /// A state's work (action, children, agent, output) finished or failed.
    StateFinished {
        /// The execution.
        execution: ExecutionRef<'a>,
        /// The state.
        state: &'a str,
        /// Its step number.
        step: u64,
        /// How long the state's work took.
        elapsed: Duration,
        /// Why it failed, when it did (`on_error` may still recover).
        error: Option<&'a StateError>,
    },
    /// A state's agent was called (once, or several times by its execution type).
    AgentCalled {
        /// The execution.
        execution: ExecutionRef<'a>,
        /// The state.
        state: &'a str,
        /// The agent's name in the machine.
        agent: &'a str,
        /// How long the call took, retries included.
        elapsed: Duration,
        /// API calls made.
        api_calls: u64,
        /// Tokens, when the executor reported them.
        tokens: TokenUsage,
        /// Cost, when the executor reported it.
        cost: f64,
        /// The error type, when the call failed (or every retry did).
        error_type: Option<&'a str>,
    },
    /// An agent call failed and is about to be tried again.
    AgentRetry {
        /// The execution.
        execution: ExecutionRef<'a>,
        /// The state.
        state: &'a str,
        /// The agent's name in the machine.
        agent: &'a str,
        /// The attempt that failed (1 for the first).
        attempt: u64,
        /// The error type of that attempt.
        error_type: &'a str,
    },
    /// A tool loop's tool call finished, failed, timed out or was refused.
    ToolCalled {
        /// The execution.
        execution: ExecutionRef<'a>,
        /// The state running the loop.
        state: &'a str,
        /// The tool's name.
        tool: &'a str,
        /// The call's stable id.
        call: &'a crate::ToolCallId,
        /// How long the call took (zero when it was refused without running).
        elapsed: Duration,
        /// Whether the model was given an error.
        is_error: bool,
    },
    /// A state started child machines (`machine: [..]` or `foreach`) and waits for them.
    FanOutStarted {
        /// The parent execution.
        execution: ExecutionRef<'a>,
        /// The parent's state.
        state: &'a str,
        /// How many children it started.
        children: usize,
    },
    /// One child of a fan-out finished.
    ChildFinished {
        /// The parent execution.
        execution: ExecutionRef<'a>,
        /// The parent's state.
        state: &'a str,
        /// The child's execution id.
        child_execution_id: &'a str,
        /// Why it failed, when it did.
        error: Option<&'a StateError>,
    },
    /// A checkpoint was written, or writing it failed.
    CheckpointWritten {
        /// The execution.
        execution: ExecutionRef<'a>,
        /// What the checkpoint records.
        event: CheckpointEvent,
        /// How long the write took.
        elapsed: Duration,
        /// Whether the backend stored it.
        ok: bool,
    },
    /// A worker tried to claim an item from a work pool.
    WorkClaimed {
        /// The pool's name.
        pool: &'a str,
        /// The worker.
        worker_id: &'a str,
        /// How it went.
        outcome: ClaimOutcome,
        /// How long the claim took.
        elapsed: Duration,
    },
}

impl RunEvent<'_> {
    /// A short name for the event kind (`machine_started`, `state_entered`, …).
    pub const fn kind(&self) -> &'static str {
        match self {
            RunEvent::MachineStarted { .. } => "machine_started",
            RunEvent::MachineFinished { .. } => "machine_finished",
            RunEvent::StateEntered { .. } => "state_entered",
            RunEvent::StateFinished { .. } => "state_finished",
            RunEvent::AgentCalled { .. } => "agent_called",
            RunEvent::AgentRetry { .. } => "agent_retry",
            RunEvent::ToolCalled { .. } => "tool_called",
            RunEvent::FanOutStarted { .. } => "fan_out_started",
            RunEvent::ChildFinished { .. } => "child_finished",
            RunEvent::CheckpointWritten { .. } => "checkpoint_written",
            RunEvent::WorkClaimed { .. } => "work_claimed",
        }
    }
}
