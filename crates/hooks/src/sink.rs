//! [`EventSink`], a transport for hook events, and [`EventHooks`], the [`MachineHooks`] that
//! sends events through one and applies the replies.

use std::fmt::Debug;

use async_trait::async_trait;
use serde_json::Value;

use flatmachines_core::hooks::HookError;
use flatmachines_core::{
    AgentToolCall, Context, JsonMap, MachineHooks, StateError, ToolCallResult,
};

use crate::error::DeliveryError;
use crate::event::{EventSet, HookEvent};
use crate::reply::{Reply, ReplyProblem};

/// Carries hook events to a receiver and brings its replies back.
///
/// # Contract
///
/// 1. `deliver` returns within the sink's own timeout, whatever the receiver does.
/// 2. `Ok(None)` means the receiver asked for no change; `Ok(Some(map))` is its reply object.
/// 3. Errors name the sink (with any credentials left out), the event and what went wrong.
#[async_trait]
pub trait EventSink: Send + Sync + Debug {
    /// Sends `event` and waits for the reply.
    async fn deliver(&self, event: &HookEvent<'_>) -> Result<Option<JsonMap>, DeliveryError>;

    /// How log lines and errors name this sink: `webhook http://host/path`, `command
    /// `python3 hooks.py``.
    fn describe(&self) -> String;
}

/// What a failed delivery means, and which events are sent. The default sends every event
/// and logs failures, as the reference's webhooks do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// A failed delivery fails the state (or the run) with `HookError`; otherwise it is logged
    /// and the run goes on as if the hook had asked for nothing.
    pub fatal: bool,
    /// The events sent; the others pass through unchanged.
    pub events: EventSet,
}

impl DeliveryPolicy {
    /// Every event; failures are logged and the run goes on.
    pub const LENIENT: DeliveryPolicy = DeliveryPolicy {
        fatal: false,
        events: EventSet::ALL,
    };

    /// Every event; failures fail the state.
    pub const FATAL: DeliveryPolicy = DeliveryPolicy {
        fatal: true,
        events: EventSet::ALL,
    };
}

/// Machine hooks that hand every event to an [`EventSink`] and apply the replies (see the
/// crate docs and `docs/hooks.md` for the reply keys). A reply with `hook_error` fails the
/// state whatever the policy says: the hook itself asked for it.
#[derive(Debug)]
pub struct EventHooks<S> {
    sink: S,
    policy: DeliveryPolicy,
}

impl<S: EventSink> EventHooks<S> {
    /// Hooks sending through `sink` under `policy`.
    pub fn with_sink(sink: S, policy: DeliveryPolicy) -> Self {
        EventHooks { sink, policy }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The policy.
    pub fn policy(&self) -> DeliveryPolicy {
        self.policy
    }

    /// Sends `event` when the policy asks for it. `Ok(None)`: not sent, no reply, or a
    /// failure the policy lets pass.
    async fn exchange(&self, event: HookEvent<'_>) -> Result<Option<Reply>, HookError> {
        if !self.policy.events.contains(event.kind()) {
            return Ok(None);
        }
        match self.sink.deliver(&event).await {
            Ok(None) => Ok(None),
            Ok(Some(map)) => {
                let reply = Reply(map);
                match reply.hook_error() {
                    Some(message) => Err(HookError::new(format!(
                        "{} reported for `{}`: {message}",
                        self.sink.describe(),
                        event.kind()
                    ))),
                    None => Ok(Some(reply)),
                }
            }
            Err(error) => self.failed(error).map(|()| None),
        }
    }

    /// A delivery failed: an error under a fatal policy, a logged warning otherwise.
    fn failed(&self, error: DeliveryError) -> Result<(), HookError> {
        if self.policy.fatal {
            return Err(HookError::new(error.to_string()));
        }
        tracing::error!(
            target: "flatmachines::hooks",
            event = error.event().unwrap_or_default(),
            "{error}; the run goes on without this hook's changes"
        );
        Ok(())
    }

    /// A reply was unusable: handled like a failed delivery.
    fn bad_reply(&self, event: &'static str, problem: &ReplyProblem) -> Result<(), HookError> {
        self.failed(DeliveryError::BadReply {
            hook: self.sink.describe(),
            event,
            problem: problem.to_string(),
        })
    }

    /// Applies `context` from the reply.
    fn apply_context(
        &self,
        reply: &Reply,
        event: &'static str,
        context: &mut Context,
    ) -> Result<(), HookError> {
        match reply.context() {
            Ok(Some(map)) => *context = Context::from(map),
            Ok(None) => {}
            Err(problem) => self.bad_reply(event, &problem)?,
        }
        Ok(())
    }

    /// Applies a tool loop event's reply: its `context`, then its loop keys.
    fn apply_loop_reply(
        &self,
        reply: &Reply,
        event: &'static str,
        context: &mut Context,
    ) -> Result<(), HookError> {
        self.apply_context(reply, event, context)?;
        let mut keys = reply.loop_keys().peekable();
        if keys.peek().is_some() {
            let map = context.make_mut();
            for (key, value) in keys {
                map.insert(key.to_owned(), value.clone());
            }
        }
        Ok(())
    }

    /// Reads a state name from the reply.
    fn reply_state(
        &self,
        reply: &Reply,
        event: &'static str,
        field: &'static str,
    ) -> Result<Option<String>, HookError> {
        match reply.state(field) {
            Ok(state) => Ok(state),
            Err(problem) => self.bad_reply(event, &problem).map(|()| None),
        }
    }
}

#[async_trait]
impl<S: EventSink> MachineHooks for EventHooks<S> {
    async fn on_machine_start(&self, context: &mut Context) -> Result<(), HookError> {
        let event = HookEvent::MachineStart {
            context: context.as_map(),
        };
        if let Some(reply) = self.exchange(event).await? {
            self.apply_context(&reply, "machine_start", context)?;
        }
        Ok(())
    }

    async fn on_machine_end(
        &self,
        context: &mut Context,
        output: &mut Value,
    ) -> Result<(), HookError> {
        let event = HookEvent::MachineEnd {
            context: context.as_map(),
            output,
        };
        if let Some(reply) = self.exchange(event).await? {
            self.apply_context(&reply, "machine_end", context)?;
            if let Some(new) = reply.output() {
                *output = new.clone();
            }
        }
        Ok(())
    }

    async fn on_state_enter(&self, state: &str, context: &mut Context) -> Result<(), HookError> {
        let event = HookEvent::StateEnter {
            state,
            context: context.as_map(),
        };
        if let Some(reply) = self.exchange(event).await? {
            self.apply_context(&reply, "state_enter", context)?;
        }
        Ok(())
    }

    async fn on_state_exit(
        &self,
        state: &str,
        context: &mut Context,
        output: &mut Option<Value>,
    ) -> Result<(), HookError> {
        let event = HookEvent::StateExit {
            state,
            context: context.as_map(),
            output: output.as_ref(),
        };
        if let Some(reply) = self.exchange(event).await? {
            self.apply_context(&reply, "state_exit", context)?;
            if let Some(new) = reply.output() {
                *output = (!new.is_null()).then(|| new.clone());
            }
        }
        Ok(())
    }

    async fn on_transition(
        &self,
        from: &str,
        to: &str,
        context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        let event = HookEvent::Transition {
            from,
            to,
            context: context.as_map(),
        };
        let Some(reply) = self.exchange(event).await? else {
            return Ok(None);
        };
        self.apply_context(&reply, "transition", context)?;
        self.reply_state(&reply, "transition", "to_state")
    }

    async fn on_error(
        &self,
        state: &str,
        error: &StateError,
        context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        let event = HookEvent::Error {
            state,
            error: &error.message,
            error_type: &error.error_type,
            context: context.as_map(),
        };
        let Some(reply) = self.exchange(event).await? else {
            return Ok(None);
        };
        self.apply_context(&reply, "error", context)?;
        self.reply_state(&reply, "error", "recovery_state")
    }

    async fn on_tool_calls(
        &self,
        state: &str,
        calls: &[AgentToolCall],
        context: &mut Context,
    ) -> Result<(), HookError> {
        let event = HookEvent::ToolCalls {
            state,
            tool_calls: calls,
            context: context.as_map(),
        };
        if let Some(reply) = self.exchange(event).await? {
            self.apply_loop_reply(&reply, "tool_calls", context)?;
        }
        Ok(())
    }

    async fn on_tool_result(
        &self,
        state: &str,
        result: &ToolCallResult,
        context: &mut Context,
    ) -> Result<(), HookError> {
        let event = HookEvent::ToolResult {
            state,
            tool_result: result,
            context: context.as_map(),
        };
        if let Some(reply) = self.exchange(event).await? {
            self.apply_loop_reply(&reply, "tool_result", context)?;
        }
        Ok(())
    }

    async fn on_action(&self, action: &str, context: &mut Context) -> Result<bool, HookError> {
        if !self.policy.events.contains(crate::EventKind::Action) {
            return Ok(false);
        }
        let event = HookEvent::Action {
            action,
            context: context.as_map(),
        };
        match self.sink.deliver(&event).await {
            // Delivered with nothing to say: the receiver took the action.
            Ok(None) => Ok(true),
            Ok(Some(map)) => {
                let reply = Reply(map);
                if let Some(message) = reply.hook_error() {
                    return Err(HookError::new(format!(
                        "{} reported: {message}",
                        self.sink.describe()
                    )));
                }
                self.apply_context(&reply, "action", context)?;
                match reply.handled() {
                    Ok(handled) => Ok(handled),
                    Err(problem) => self.bad_reply("action", &problem).map(|()| false),
                }
            }
            Err(error) => self.failed(error).map(|()| false),
        }
    }
}
