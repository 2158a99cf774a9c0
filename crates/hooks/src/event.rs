//! The hook events and the JSON they are sent as.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use flatmachines_core::{AgentToolCall, JsonMap, ToolCallResult};

/// One hook event, serialized as the reference's webhook payload: `{"event": "<name>", …}`
/// followed by the event's fields, in the reference's order.
///
/// | event | fields |
/// |---|---|
/// | `machine_start` | `context` |
/// | `machine_end` | `context`, `output` |
/// | `state_enter` | `state`, `context` |
/// | `state_exit` | `state`, `context`, `output` (`null` when the state produced none) |
/// | `transition` | `from`, `to`, `context` |
/// | `error` | `state`, `error` (the message), `error_type`, `context` |
/// | `action` | `action`, `context` |
/// | `tool_calls` | `state`, `tool_calls` (`[{id, name, arguments}]`), `context` |
/// | `tool_result` | `state`, `tool_result` (`{tool_call_id, name, arguments, content, is_error}`), `context` |
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HookEvent<'a> {
    /// Before the first state.
    MachineStart {
        /// The initial context.
        context: &'a JsonMap,
    },
    /// After the last state.
    MachineEnd {
        /// The final context.
        context: &'a JsonMap,
        /// The final output.
        output: &'a Value,
    },
    /// Before a state runs.
    StateEnter {
        /// The state.
        state: &'a str,
        /// The context.
        context: &'a JsonMap,
    },
    /// After a state ran.
    StateExit {
        /// The state.
        state: &'a str,
        /// The context.
        context: &'a JsonMap,
        /// The state's output.
        output: Option<&'a Value>,
    },
    /// Before moving to the next state.
    Transition {
        /// The state left.
        from: &'a str,
        /// The state chosen by the transitions.
        to: &'a str,
        /// The context.
        context: &'a JsonMap,
    },
    /// A state failed and its `on_error` did not route the error.
    Error {
        /// The state.
        state: &'a str,
        /// The error message.
        error: &'a str,
        /// The error type (`TemplateError`, `Timeout`, …).
        error_type: &'a str,
        /// The context.
        context: &'a JsonMap,
    },
    /// A state's `action`.
    Action {
        /// The action's name.
        action: &'a str,
        /// The context.
        context: &'a JsonMap,
    },
    /// A tool loop's model turn asked for tools, before any runs.
    ToolCalls {
        /// The state running the loop.
        state: &'a str,
        /// The calls asked for.
        tool_calls: &'a [AgentToolCall],
        /// The context.
        context: &'a JsonMap,
    },
    /// A tool loop's tool call finished (or was refused).
    ToolResult {
        /// The state running the loop.
        state: &'a str,
        /// The call and what it gave back.
        tool_result: &'a ToolCallResult,
        /// The context.
        context: &'a JsonMap,
    },
}

impl HookEvent<'_> {
    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            HookEvent::MachineStart { .. } => EventKind::MachineStart,
            HookEvent::MachineEnd { .. } => EventKind::MachineEnd,
            HookEvent::StateEnter { .. } => EventKind::StateEnter,
            HookEvent::StateExit { .. } => EventKind::StateExit,
            HookEvent::Transition { .. } => EventKind::Transition,
            HookEvent::Error { .. } => EventKind::Error,
            HookEvent::Action { .. } => EventKind::Action,
            HookEvent::ToolCalls { .. } => EventKind::ToolCalls,
            HookEvent::ToolResult { .. } => EventKind::ToolResult,
        }
    }
}

/// The nine kinds of hook event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `machine_start`.
    MachineStart,
    /// `machine_end`.
    MachineEnd,
    /// `state_enter`.
    StateEnter,
    /// `state_exit`.
    StateExit,
    /// `transition`.
    Transition,
    /// `error`.
    Error,
    /// `action`.
    Action,
    /// `tool_calls`.
    ToolCalls,
    /// `tool_result`.
    ToolResult,
}

impl EventKind {
    /// Every kind, in the order an execution meets them.
    pub const ALL: [EventKind; 9] = [
        EventKind::MachineStart,
        EventKind::StateEnter,
        EventKind::Action,
        EventKind::ToolCalls,
        EventKind::ToolResult,
        EventKind::StateExit,
        EventKind::Transition,
        EventKind::Error,
        EventKind::MachineEnd,
    ];

    /// The name events of this kind carry in their `event` field.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::MachineStart => "machine_start",
            EventKind::MachineEnd => "machine_end",
            EventKind::StateEnter => "state_enter",
            EventKind::StateExit => "state_exit",
            EventKind::Transition => "transition",
            EventKind::Error => "error",
            EventKind::Action => "action",
            EventKind::ToolCalls => "tool_calls",
            EventKind::ToolResult => "tool_result",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of event kinds: the events a hook is sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EventSet(u16);

impl EventSet {
    /// Every event.
    pub const ALL: EventSet = EventSet(0b1_1111_1111);

    /// No event.
    pub const NONE: EventSet = EventSet(0);

    /// These kinds.
    pub fn of(kinds: impl IntoIterator<Item = EventKind>) -> Self {
        EventSet(kinds.into_iter().fold(0, |bits, kind| bits | kind.bit()))
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

impl Default for EventSet {
    fn default() -> Self {
        EventSet::ALL
    }
}

impl fmt::Debug for EventSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(EventKind::ALL.iter().filter(|kind| self.contains(**kind)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_hold_what_they_were_given() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.name()), Some(kind));
            assert!(EventSet::ALL.contains(kind));
            assert!(!EventSet::NONE.contains(kind));
        }
        assert_eq!(EventKind::from_name("state_entered"), None);
        let set = EventSet::of([EventKind::Error, EventKind::Action]);
        assert!(set.contains(EventKind::Error) && set.contains(EventKind::Action));
        assert!(!set.contains(EventKind::StateEnter));
        assert_eq!(format!("{set:?}"), "{Action, Error}");
    }
}
