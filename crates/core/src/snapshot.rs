//! Checkpoint wire types: [`MachineSnapshot`], the outbox's [`LaunchIntent`] and a tool loop's
//! journal, [`ToolLoopState`].
//!
//! Field names and order follow the spec and the Python reference, which writes every field,
//! `null` included. Readers accept a missing optional field as `null`, so snapshots round-trip in
//! both directions.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JsonMap;

/// One checkpoint of a machine execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MachineSnapshot {
    /// The execution this snapshot belongs to.
    pub execution_id: String,
    /// The machine's `data.name`.
    pub machine_name: String,
    /// The config's `spec_version`.
    pub spec_version: String,
    /// The state being executed. The reference writes `"start"` at `machine_start` and `"end"`
    /// at `machine_end`, whatever the states are called.
    pub current_state: String,
    /// The machine context at this point.
    pub context: JsonMap,
    /// The step counter (1 for the first state executed, 0 before any).
    pub step: u64,
    /// When the snapshot was taken, ISO 8601 in UTC.
    pub created_at: String,
    /// The event that triggered it (`machine_start`, `state_enter`, …).
    #[serde(default)]
    pub event: Option<String>,
    /// The output, when known (`state_exit` of a final state, `machine_end`).
    #[serde(default)]
    pub output: Option<Value>,
    /// Agent calls so far, children included.
    #[serde(default)]
    pub total_api_calls: Option<u64>,
    /// Cost so far, children included.
    #[serde(default)]
    pub total_cost: Option<f64>,
    /// The launching machine's execution, for children.
    #[serde(default)]
    pub parent_execution_id: Option<String>,
    /// The outbox: launches recorded before they were started.
    #[serde(default)]
    pub pending_launches: Option<Vec<LaunchIntent>>,
    /// A running tool loop's progress (`tool_call` snapshots; upstream 4.x's field). Not
    /// written when absent, so that snapshots of machines without tool loops keep the 1.0.0
    /// shape, which 1.0.0 readers require field for field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_loop_state: Option<ToolLoopState>,
}

/// A tool loop's progress, written at each `tool_call` checkpoint: upstream 4.x's
/// `{chain, turns, tool_calls_count, loop_cost}`, and the `journal` this runtime continues
/// the loop from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolLoopState {
    /// The conversation of the loop so far, as OpenAI-style chat messages. Ours starts with
    /// the first assistant turn (the prompt is rendered from `journal.input`); upstream's
    /// starts with the rendered user prompt.
    #[serde(default)]
    pub chain: Vec<Value>,
    /// Model turns made.
    #[serde(default)]
    pub turns: u64,
    /// Tool calls made.
    #[serde(default)]
    pub tool_calls_count: u64,
    /// What the loop's turns cost.
    #[serde(default)]
    pub loop_cost: f64,
    /// What a resume needs to continue the loop where it stopped. Upstream does not write it
    /// (nor continue loops): a snapshot without it runs the state again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<ToolLoopJournal>,
}

/// Where in its current turn a tool loop stood at a `tool_call` checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolLoopJournal {
    /// The agent the loop runs, as the state names it.
    pub agent: String,
    /// The agent's input, as rendered when the loop started.
    pub input: JsonMap,
    /// The tool calls the last turn asked for.
    #[serde(default)]
    pub calls: Vec<crate::AgentToolCall>,
    /// How many of `calls` have been answered; absent when the turn was just recorded and its
    /// calls were not yet handed to `on_tool_calls`.
    #[serde(default)]
    pub answered: Option<u64>,
    /// The calls `on_tool_calls` asked to skip in this turn (`_skip_tools`).
    #[serde(default)]
    pub skip: Vec<String>,
    /// The text of the last turn that had one.
    #[serde(default)]
    pub content: Option<String>,
    /// The structured output of the last turn that had one.
    #[serde(default)]
    pub structured: Option<JsonMap>,
    /// Seconds the loop had run, counted against `total_timeout` after a resume.
    #[serde(default)]
    pub elapsed_seconds: f64,
}

impl MachineSnapshot {
    /// The snapshot's event, if it is one this runtime knows.
    pub fn checkpoint_event(&self) -> Option<CheckpointEvent> {
        self.event.as_deref().and_then(|e| e.parse().ok())
    }
}

/// A launch recorded in a checkpoint before the child is started (the outbox pattern), so a
/// resumed parent can tell which children still need starting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LaunchIntent {
    /// The child's execution id, chosen by the parent.
    pub execution_id: String,
    /// The child's name in the parent's `machines:` map.
    pub machine: String,
    /// The rendered input handed to the child.
    pub input: JsonMap,
    /// Whether the child has been started.
    #[serde(default)]
    pub launched: bool,
}

/// The moments at which a machine can write a checkpoint (`persistence.checkpoint_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckpointEvent {
    /// Before the first state, after the context was rendered from the input.
    MachineStart,
    /// On entering a state, before `on_state_enter`.
    StateEnter,
    /// Just before a state's work runs.
    Execute,
    /// After launch intents were recorded and before the children start (outbox). Written
    /// whenever persistence is on, whatever `checkpoint_on` says.
    Launch,
    /// After a state's agent answered (a plain call, or a whole tool loop), before the
    /// answer is used: `output` holds it, so that a resumed execution uses it rather than
    /// call the agent again. Written whenever persistence is on, whatever `checkpoint_on`
    /// says.
    AgentResult,
    /// In a tool loop, after each model turn and each tool result (and its `on_tool_result`
    /// hook), before either is used: `tool_loop_state` holds the loop's journal, so that a
    /// resumed execution continues the loop without making a recorded turn or call again.
    /// Written whenever persistence is on, whatever `checkpoint_on` says.
    ToolCall,
    /// After a state's work finished.
    StateExit,
    /// After the loop ended, with the final output.
    MachineEnd,
}

impl CheckpointEvent {
    /// Every event, in the order they occur.
    pub const ALL: [CheckpointEvent; 8] = [
        CheckpointEvent::MachineStart,
        CheckpointEvent::StateEnter,
        CheckpointEvent::Execute,
        CheckpointEvent::Launch,
        CheckpointEvent::ToolCall,
        CheckpointEvent::AgentResult,
        CheckpointEvent::StateExit,
        CheckpointEvent::MachineEnd,
    ];

    /// The events checkpointed when `checkpoint_on` is not set (the reference's default set).
    pub const DEFAULT: [CheckpointEvent; 5] = [
        CheckpointEvent::MachineStart,
        CheckpointEvent::StateEnter,
        CheckpointEvent::Execute,
        CheckpointEvent::StateExit,
        CheckpointEvent::MachineEnd,
    ];

    /// The wire name, as used in snapshot keys and `checkpoint_on`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckpointEvent::MachineStart => "machine_start",
            CheckpointEvent::StateEnter => "state_enter",
            CheckpointEvent::Execute => "execute",
            CheckpointEvent::Launch => "launch",
            CheckpointEvent::AgentResult => "agent_result",
            CheckpointEvent::ToolCall => "tool_call",
            CheckpointEvent::StateExit => "state_exit",
            CheckpointEvent::MachineEnd => "machine_end",
        }
    }
}

impl fmt::Display for CheckpointEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not a checkpoint event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown checkpoint event `{0}` (expected machine_start, state_enter, execute, launch, tool_call, agent_result, state_exit or machine_end)"
)]
pub struct UnknownEvent(pub String);

impl FromStr for CheckpointEvent {
    type Err = UnknownEvent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CheckpointEvent::ALL
            .into_iter()
            .find(|event| event.as_str() == s)
            .ok_or_else(|| UnknownEvent(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_reference_snapshot() {
        let text = r#"{"execution_id": "e1", "machine_name": "m", "spec_version": "1.0.0",
            "current_state": "start", "context": {"a": 1}, "step": 0,
            "created_at": "2025-01-01T00:00:00.000000+00:00", "event": "machine_start",
            "output": null, "total_api_calls": 0, "total_cost": 0.0,
            "parent_execution_id": null, "pending_launches": null}"#;
        let snapshot: MachineSnapshot = serde_json::from_str(text).unwrap();
        assert_eq!(
            snapshot.checkpoint_event(),
            Some(CheckpointEvent::MachineStart)
        );
        assert_eq!(snapshot.total_cost, Some(0.0));
    }

    #[test]
    fn optional_fields_may_be_missing() {
        let text = r#"{"execution_id": "e1", "machine_name": "m", "spec_version": "1.0.0",
            "current_state": "s", "context": {}, "step": 3, "created_at": "t"}"#;
        let snapshot: MachineSnapshot = serde_json::from_str(text).unwrap();
        assert_eq!(snapshot.event, None);
        assert_eq!(snapshot.pending_launches, None);
    }

    #[test]
    fn writes_every_field_in_reference_order() {
        let snapshot = MachineSnapshot {
            execution_id: "e".into(),
            machine_name: "m".into(),
            spec_version: "1.0.0".into(),
            current_state: "s".into(),
            context: JsonMap::new(),
            step: 1,
            created_at: "t".into(),
            event: None,
            output: None,
            total_api_calls: None,
            total_cost: None,
            parent_execution_id: None,
            pending_launches: None,
            tool_loop_state: None,
        };
        let text = serde_json::to_string(&snapshot).unwrap();
        assert_eq!(
            text,
            r#"{"execution_id":"e","machine_name":"m","spec_version":"1.0.0","current_state":"s","context":{},"step":1,"created_at":"t","event":null,"output":null,"total_api_calls":null,"total_cost":null,"parent_execution_id":null,"pending_launches":null}"#
        );
    }

    #[test]
    fn reads_an_upstream_tool_loop_state_without_a_journal() {
        let text = r#"{"execution_id": "e1", "machine_name": "m", "spec_version": "4.2.1",
            "current_state": "work", "context": {}, "step": 2, "created_at": "t",
            "event": "tool_call", "waiting_channel": null, "config_hash": "abc",
            "tool_loop_state": {"chain": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": []}],
                "turns": 1, "tool_calls_count": 1, "loop_cost": 0.25}}"#;
        let snapshot: MachineSnapshot = serde_json::from_str(text).unwrap();
        assert_eq!(snapshot.checkpoint_event(), Some(CheckpointEvent::ToolCall));
        let state = snapshot.tool_loop_state.unwrap();
        assert_eq!((state.turns, state.tool_calls_count), (1, 1));
        assert_eq!(state.chain.len(), 2);
        assert_eq!(state.journal, None);
    }

    #[test]
    fn event_names_round_trip() {
        for event in CheckpointEvent::ALL {
            assert_eq!(event.as_str().parse::<CheckpointEvent>(), Ok(event));
        }
        assert!("machine_started".parse::<CheckpointEvent>().is_err());
    }
}
