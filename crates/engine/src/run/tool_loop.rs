//! A state's machine-driven tool loop: model turns, the tool calls they ask for, the hooks
//! between them and the guardrails that end the loop.
//!
//! Per turn: check `total_timeout`, `max_turns` and `max_cost` → one model turn → stop if it
//! asked for no tool (`complete`) or for more than `max_tool_calls` allows → `on_tool_calls`
//! → per call: refuse it (skipped, denied, unknown) or make it within `tool_timeout` →
//! `on_tool_result` → stop on `_abort_tool_loop` or on a conditional transition that holds →
//! then the hooks' steering messages join the conversation. A loop that a guardrail stopped
//! before the model wrote any text makes one last turn with no tools.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::Value;
use tracing::Instrument;

use flatmachines_core::llm::{FunctionCall, Message, ToolCall};
use flatmachines_core::observe::RunEvent;
use flatmachines_core::{
    AgentResult, AgentToolCall, AgentTurn, Context, JsonMap, Limit, StateError, ToolCallId,
    ToolCallResult, ToolError, ToolLoopState, ToolOutcome, ToolRequest,
};

use super::{Execution, StateFailure, hook_error};
use crate::definition::{AgentCall, GuardrailDef, MachineDef, ToolLoopDef};
use crate::error::{error_types, state_error};
use crate::runtime::BoundAgent;
use crate::template::Vars;
use crate::tools::LoopTools;

/// Why a loop ended, as `_tool_loop_stop` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Complete,
    MaxTurns,
    MaxToolCalls,
    Timeout,
    CostLimit,
    Aborted,
    Transition,
}

impl Stop {
    fn as_str(self) -> &'static str {
        match self {
            Stop::Complete => "complete",
            Stop::MaxTurns => "max_turns",
            Stop::MaxToolCalls => "max_tool_calls",
            Stop::Timeout => "timeout",
            Stop::CostLimit => "cost_limit",
            Stop::Aborted => "aborted",
            Stop::Transition => "transition",
        }
    }

    /// Whether a guardrail ended the loop, so that the model may owe an answer.
    fn is_guardrail(self) -> bool {
        matches!(
            self,
            Stop::MaxTurns | Stop::MaxToolCalls | Stop::Timeout | Stop::CostLimit
        )
    }
}

/// The loop's guardrails, rendered for this run of the state (0: no bound).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_tool_calls: u64,
    max_turns: u64,
    tool_timeout: Option<Duration>,
    total_timeout: Option<Duration>,
    max_cost: f64,
}

/// What the user message of the last, tool-less turn says.
const ANSWER_NOW: &str = "[The tool budget of this step is spent: no more tools can be called. Answer now with what you have learned so far.]";

/// Context keys the hooks set to steer the loop.
const ABORT_KEY: &str = "_abort_tool_loop";
const SKIP_KEY: &str = "_skip_tools";
const STEERING_KEY: &str = "_steering_messages";

/// Where a loop runs: the machine, the state (by index) and its step, the state's agent call
/// and the executor serving it.
#[derive(Clone, Copy)]
pub(super) struct LoopSite<'a> {
    pub(super) definition: &'a MachineDef,
    pub(super) index: usize,
    pub(super) step: u64,
    pub(super) call: &'a AgentCall,
    pub(super) bound: &'a BoundAgent,
}

/// The state of one running loop.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) conversation: Vec<Message>,
    pub(super) turns: u64,
    pub(super) calls: u64,
    pub(super) cost: f64,
    pub(super) content: Option<String>,
    /// The structured output of the last turn that had one.
    pub(super) structured: Option<JsonMap>,
}

/// The tool calls of the latest turn, and how far the loop has got with them.
pub(super) struct TurnCalls {
    pub(super) calls: Arc<[AgentToolCall]>,
    /// Whether `on_tool_calls` has seen them and the skip list is taken.
    pub(super) dispatched: bool,
    /// The calls `on_tool_calls` asked to skip.
    pub(super) skip: Vec<String>,
    /// How many calls have been answered (made or refused).
    pub(super) answered: usize,
}

impl TurnCalls {
    fn new(calls: Vec<AgentToolCall>) -> Self {
        TurnCalls {
            calls: calls.into(),
            dispatched: false,
            skip: Vec::new(),
            answered: 0,
        }
    }
}

impl Execution {
    /// Runs `call`'s agent in a tool loop and returns the state's output. A `transition`
    /// stop leaves the chosen state in `self.loop_next` for the step loop.
    pub(super) async fn run_tool_loop(
        &mut self,
        site: LoopSite<'_>,
        looped: &ToolLoopDef,
        journaled: Option<ToolLoopState>,
        context: &mut Context,
    ) -> Result<Value, StateFailure> {
        let LoopSite {
            definition,
            index,
            step,
            call,
            bound,
        } = site;
        let state = &definition.states[index];
        let resumed = match journaled {
            Some(recorded) => self.continue_loop(index, &call.name, recorded)?,
            None => None,
        };
        // A continued loop keeps the prompt it started with, whatever the hooks changed since.
        let input = match &resumed {
            Some(resumed) => resumed.input.clone(),
            None => call
                .input
                .render_map(&self.set.templates, &Vars::state(context.shared()))
                .map_err(super::state::template_error)?,
        };
        let bounds = self.bounds(looped, &state.name, context)?;
        let served = match (bound.executor.tool_servers(), &self.tool_pool) {
            (Some(servers), Some(pool)) if !servers.config.servers.is_empty() => Some(
                pool.connect(&call.name, servers)
                    .await
                    .map_err(|e| state_error(error_types::TOOL_SERVER, e.to_string()))?,
            ),
            _ => None,
        };
        let tools = self.prepared.tools.for_loop(
            looped.machine_tools.iter().map(|tool| &tool.definition),
            served.as_ref(),
            bound.executor.declared_tools(),
            |tool| looped.permits(tool),
        );
        let unserved: Vec<&str> = tools.unserved().collect();
        if !unserved.is_empty() {
            tracing::warn!(
                state = %state.name,
                agent = %call.name,
                "no tool provider serves {}, which the agent declares: the model is offered them, and its calls to them fail (register tools with RuntimeBuilder::tool or tool_provider)",
                unserved.join(", ")
            );
        }
        // Left by an earlier loop, a stop reason would be read as this loop's.
        context.make_mut().remove("_tool_loop_stop");
        let hooks = self.prepared.machines[self.machine].hooks.clone();
        let (mut progress, mut pending, started) = match resumed {
            Some(resumed) => (resumed.progress, Some(resumed.turn), resumed.started),
            None => (Progress::default(), None, Instant::now()),
        };
        let mut next = None;

        let stop = 'turns: loop {
            let mut turn = match pending.take() {
                // Resumed: the journaled turn is not made again.
                Some(turn) => turn,
                None => {
                    if bounds
                        .total_timeout
                        .is_some_and(|limit| started.elapsed() >= limit)
                    {
                        break Stop::Timeout;
                    }
                    if bounds.max_turns > 0 && progress.turns >= bounds.max_turns {
                        break Stop::MaxTurns;
                    }
                    if bounds.max_cost > 0.0 && progress.cost >= bounds.max_cost {
                        break Stop::CostLimit;
                    }
                    let mut result = self
                        .turn(&site, &input, &progress, &tools, false, context)
                        .await?;
                    progress.turns += 1;
                    progress.cost += result.total_cost();
                    let calls = result.tool_calls.take().unwrap_or_default();
                    progress.record(result, context);
                    progress.conversation.push(assistant_message(
                        progress.content.as_deref().unwrap_or(""),
                        &calls,
                    ));
                    let turn = TurnCalls::new(calls);
                    self.journal(&site, &input, &progress, &turn, started, context)
                        .await?;
                    turn
                }
            };
            // Shared, so that the turn's progress can be updated while its calls are read.
            let calls = Arc::clone(&turn.calls);
            let calls = &calls[..];
            if !turn.dispatched {
                if calls.is_empty() {
                    break Stop::Complete;
                }
                if bounds.max_tool_calls > 0
                    && progress.calls + calls.len() as u64 > bounds.max_tool_calls
                {
                    // Every call must be answered before the model is asked again.
                    for tool_call in calls {
                        progress.conversation.push(tool_message(
                            &tool_call.id,
                            format!(
                                "Tool '{}' was not called: this step may make at most {} tool calls.",
                                tool_call.name, bounds.max_tool_calls
                            ),
                        ));
                    }
                    break Stop::MaxToolCalls;
                }
                if let Some(hooks) = &hooks {
                    hooks
                        .on_tool_calls(&state.name, calls, context)
                        .await
                        .map_err(|e| hook_error("on_tool_calls", e))?;
                }
                if take_abort(context) {
                    break Stop::Aborted;
                }
                turn.skip = take_strings(context, SKIP_KEY)?;
                turn.dispatched = true;
            } else if turn.answered > 0 {
                // Resumed after a journaled result: what followed it comes first.
                let last = turn.answered - 1;
                if let Some(stop) = self.after_call(
                    definition,
                    index,
                    calls,
                    last,
                    &mut progress,
                    context,
                    &mut next,
                )? {
                    break 'turns stop;
                }
            }

            for position in turn.answered..calls.len() {
                let tool_call = &calls[position];
                let id = ToolCallId {
                    execution_id: self.id.clone(),
                    step,
                    turn: u32::try_from(progress.turns).unwrap_or(u32::MAX),
                    index: u32::try_from(position).unwrap_or(u32::MAX),
                };
                let call_started = Instant::now();
                let refusal = if turn
                    .skip
                    .iter()
                    .any(|s| *s == tool_call.id || *s == tool_call.name)
                {
                    Some(format!("Tool '{}' was skipped by policy.", tool_call.name))
                } else if !looped.permits(&tool_call.name) {
                    Some(format!("Tool '{}' is not allowed.", tool_call.name))
                } else {
                    None
                };
                let outcome = match (refusal, looped.machine_tool(&tool_call.name)) {
                    (Some(message), _) => ToolOutcome::error(message),
                    (None, Some(machine)) => {
                        progress.calls += 1;
                        let outcome = self
                            .run_machine_tool(
                                &state.name,
                                machine,
                                &id,
                                &tool_call.arguments,
                                bounds.tool_timeout,
                            )
                            .await;
                        cut_to_limit(outcome, self.set.limits.get(Limit::ToolResultBytes))
                    }
                    (None, None) => {
                        progress.calls += 1;
                        self.make_call(
                            &state.name,
                            step,
                            &tools,
                            tool_call,
                            &id,
                            bounds.tool_timeout,
                        )
                        .await
                    }
                };
                self.observe_tool_call(
                    definition,
                    &state.name,
                    &tool_call.name,
                    &id,
                    call_started,
                    outcome.is_error,
                );
                progress
                    .conversation
                    .push(tool_message(&tool_call.id, outcome.content.clone()));
                context
                    .make_mut()
                    .insert("_tool_calls_count".into(), Value::from(progress.calls));
                if let Some(hooks) = &hooks {
                    let result = ToolCallResult {
                        tool_call_id: tool_call.id.clone(),
                        name: tool_call.name.clone(),
                        arguments: tool_call.arguments.clone(),
                        content: outcome.content,
                        is_error: outcome.is_error,
                    };
                    hooks
                        .on_tool_result(&state.name, &result, context)
                        .await
                        .map_err(|e| hook_error("on_tool_result", e))?;
                }
                turn.answered = position + 1;
                self.journal(&site, &input, &progress, &turn, started, context)
                    .await?;
                if let Some(stop) = self.after_call(
                    definition,
                    index,
                    calls,
                    position,
                    &mut progress,
                    context,
                    &mut next,
                )? {
                    break 'turns stop;
                }
            }
            for message in take_messages(context)? {
                progress.conversation.push(message);
            }
        };

        if stop.is_guardrail()
            && progress
                .content
                .as_deref()
                .is_none_or(|text| text.trim().is_empty())
        {
            progress
                .conversation
                .push(text_message("user", ANSWER_NOW.to_owned()));
            match self
                .turn(&site, &input, &progress, &tools, true, context)
                .await
            {
                Ok(result) => {
                    progress.cost += result.total_cost();
                    progress.record(result, context);
                }
                // The loop has already ended on its guardrail, which the output reports; a
                // failed last answer leaves `content` empty rather than failing the state.
                Err(failure) => tracing::warn!(
                    state = %state.name,
                    error = %failure.error,
                    "the last, tool-less turn of the tool loop failed; `content` stays empty"
                ),
            }
        }

        let map = context.make_mut();
        progress.write_counters(map);
        map.insert("_tool_loop_stop".into(), Value::from(stop.as_str()));
        self.loop_next = next;
        let mut output = progress.structured.take().unwrap_or_default();
        // A turn that only called tools has no text: `null`, as the reference reports it.
        output.insert(
            "content".into(),
            progress
                .content
                .take()
                .filter(|text| !text.is_empty())
                .map_or(Value::Null, Value::String),
        );
        progress.write_counters(&mut output);
        output.insert("_tool_loop_stop".into(), Value::from(stop.as_str()));
        Ok(Value::Object(output))
    }

    /// What follows each answered call: `_abort_tool_loop`, then the state's conditional
    /// transitions. Either ends the loop, and the turn's calls not yet made are answered as
    /// unmade.
    #[allow(clippy::too_many_arguments)]
    fn after_call(
        &self,
        definition: &MachineDef,
        index: usize,
        calls: &[AgentToolCall],
        position: usize,
        progress: &mut Progress,
        context: &mut Context,
        next: &mut Option<usize>,
    ) -> Result<Option<Stop>, StateError> {
        let rest = calls.get(position + 1..).unwrap_or_default();
        if take_abort(context) {
            answer_unmade(&mut progress.conversation, rest);
            return Ok(Some(Stop::Aborted));
        }
        // Unconditional transitions are the loop's normal exit, taken after it ends.
        if let Some(target) = self.first_holding(definition, index, context, None, true)? {
            answer_unmade(&mut progress.conversation, rest);
            *next = Some(target);
            return Ok(Some(Stop::Transition));
        }
        Ok(None)
    }

    /// One model turn, observed and counted like any agent call.
    async fn turn(
        &mut self,
        site: &LoopSite<'_>,
        input: &JsonMap,
        progress: &Progress,
        tools: &LoopTools,
        answer_only: bool,
        context: &Context,
    ) -> Result<AgentResult, StateFailure> {
        let turn = AgentTurn {
            input,
            conversation: &progress.conversation,
            tools: &tools.definitions,
            catalog: &tools.catalog,
            answer_only,
        };
        let LoopSite {
            definition,
            index,
            step,
            call,
            bound,
        } = *site;
        let state = definition.states[index].name.as_str();
        self.budget
            .reserve(&call.name, state)
            .map_err(|error| StateFailure { error, fatal: true })?;
        let started = Instant::now();
        let result = bound
            .executor
            .execute_turn(&turn, context.as_map())
            .instrument(self.agent_span(state, step, &call.name))
            .await;
        self.observe_agent_call(definition, state, &call.name, started, &result);
        let result = result.map_err(|e| super::state::agent_error(&call.name, e))?;
        self.budget.spend(result.api_calls(), result.total_cost());
        self.api_calls += result.api_calls();
        self.cost += result.total_cost();
        Ok(result)
    }

    /// Makes one call the loop allows; every failure becomes a tool error for the model.
    async fn make_call(
        &self,
        state: &str,
        step: u64,
        tools: &LoopTools,
        tool_call: &AgentToolCall,
        id: &ToolCallId,
        timeout: Option<Duration>,
    ) -> ToolOutcome {
        let name = tool_call.name.as_str();
        let provider = match tools.server(name) {
            Ok(Some(provider)) => provider,
            Ok(None) => {
                return ToolOutcome::error(format!(
                    "Tool '{name}' is declared by the agent but no tool provider serves it."
                ));
            }
            Err(()) => return ToolOutcome::error(tools.not_offered(name)),
        };
        let deadline = timeout.map(|limit| Instant::now() + limit);
        let request = ToolRequest {
            name,
            arguments: &tool_call.arguments,
            call_id: &tool_call.id,
            id,
            deadline,
        };
        let span = tracing::info_span!("tool", tool = %name, call = %id, state = %state, step);
        // A panicking tool is one failed call, not a lost run.
        let call = AssertUnwindSafe(provider.call(request)).catch_unwind();
        let result = match (deadline, timeout) {
            (Some(deadline), Some(limit)) => {
                match tokio::time::timeout_at(deadline.into(), call)
                    .instrument(span)
                    .await
                {
                    Ok(result) => result,
                    Err(_) => {
                        return ToolOutcome::error(format!(
                            "Tool '{name}' timed out after {}s",
                            limit.as_secs_f64()
                        ));
                    }
                }
            }
            _ => call.instrument(span).await,
        };
        match result {
            Ok(Ok(outcome)) => cut_to_limit(outcome, self.set.limits.get(Limit::ToolResultBytes)),
            Ok(Err(ToolError::Unknown(_))) => {
                ToolOutcome::error(format!("Tool '{name}' does not exist."))
            }
            Ok(Err(ToolError::Failed(message))) => cut_to_limit(
                ToolOutcome::error(format!("Error executing '{name}': {message}")),
                self.set.limits.get(Limit::ToolResultBytes),
            ),
            Err(_) => ToolOutcome::error(format!("Error executing '{name}': the tool panicked")),
        }
    }

    /// Renders the guardrails against the context as the loop starts.
    fn bounds(
        &self,
        looped: &ToolLoopDef,
        state: &str,
        context: &Context,
    ) -> Result<Bounds, StateError> {
        let number = |field: &str, guardrail: &Option<GuardrailDef>| -> Result<f64, StateError> {
            let (value, source) = match guardrail {
                None => return Ok(0.0),
                Some(GuardrailDef::Number(n)) => return Ok(*n),
                Some(GuardrailDef::Template { source, template }) => (
                    self.set
                        .templates
                        .render(template, &Vars::state(context.shared()))
                        .map_err(super::state::template_error)?,
                    source,
                ),
            };
            let parsed = match &value {
                Value::Number(n) => n.as_f64(),
                Value::String(text) => text.trim().parse::<f64>().ok(),
                _ => None,
            };
            parsed
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| {
                    state_error(
                        error_types::INVALID_VALUE,
                        format!(
                            "`tool_loop.{field}` of state `{state}` is `{source}`, which gave {value}; expected a number at least 0"
                        ),
                    )
                })
        };
        let seconds =
            |n: f64| (n > 0.0).then(|| Duration::try_from_secs_f64(n).unwrap_or(Duration::MAX));
        let count = |n: f64| n.floor().min(u64::MAX as f64) as u64;
        Ok(Bounds {
            max_tool_calls: count(number("max_tool_calls", &looped.max_tool_calls)?),
            max_turns: count(number("max_turns", &looped.max_turns)?),
            tool_timeout: seconds(number("tool_timeout", &looped.tool_timeout)?),
            total_timeout: seconds(number("total_timeout", &looped.total_timeout)?),
            max_cost: number("max_cost", &looped.max_cost)?,
        })
    }

    fn observe_tool_call(
        &self,
        definition: &MachineDef,
        state: &str,
        tool: &str,
        call: &ToolCallId,
        started: Instant,
        is_error: bool,
    ) {
        tracing::debug!(machine = %definition.name, state, tool, call = %call, is_error, "tool call finished");
        if self.prepared.observers.active() {
            self.prepared.observers.emit(&RunEvent::ToolCalled {
                execution: self.execution_ref(definition),
                state,
                tool,
                call,
                elapsed: started.elapsed(),
                is_error,
            });
        }
    }
}

impl Progress {
    /// Takes a turn's answer: its text, its structured output, and the context keys that
    /// report them.
    fn record(&mut self, result: AgentResult, context: &mut Context) {
        let map = context.make_mut();
        self.write_counters(map);
        map.insert(
            "_tool_loop_content".into(),
            result.content.clone().map_or(Value::Null, Value::String),
        );
        map.insert(
            "_tool_loop_usage".into(),
            result.usage.clone().map_or(Value::Null, Value::Object),
        );
        if result.output.is_some() {
            self.structured = result.output;
        }
        self.content = result.content;
    }
}

impl Progress {
    /// `_tool_calls_count`, `_tool_loop_turns` and `_tool_loop_cost`, as the context and the
    /// output report them.
    fn write_counters(&self, map: &mut JsonMap) {
        map.insert("_tool_calls_count".into(), Value::from(self.calls));
        map.insert("_tool_loop_turns".into(), Value::from(self.turns));
        map.insert("_tool_loop_cost".into(), Value::from(self.cost));
    }
}

fn text_message(role: &str, content: String) -> Message {
    Message {
        role: role.to_owned(),
        content,
        tool_call_id: None,
        tool_calls: None,
    }
}

fn tool_message(call_id: &str, content: String) -> Message {
    Message {
        role: "tool".to_owned(),
        content,
        tool_call_id: Some(call_id.to_owned()),
        tool_calls: None,
    }
}

/// The model's turn as the conversation keeps it: its text and the calls it asked for.
fn assistant_message(content: &str, calls: &[AgentToolCall]) -> Message {
    let calls = calls
        .iter()
        .map(|call| ToolCall {
            id: call.id.clone(),
            kind: "function".to_owned(),
            function: FunctionCall {
                name: call.name.clone(),
                arguments: argument_text(&call.arguments),
            },
        })
        .collect::<Vec<_>>();
    Message {
        role: "assistant".to_owned(),
        content: content.to_owned(),
        tool_call_id: None,
        tool_calls: (!calls.is_empty()).then_some(calls),
    }
}

/// The arguments as the model wrote them: the raw text of ones that were not JSON.
fn argument_text(arguments: &Value) -> String {
    if let Value::Object(map) = arguments
        && map.len() == 1
        && let Some(Value::String(raw)) = map.get("_raw")
    {
        return raw.clone();
    }
    arguments.to_string()
}

/// Answers the calls of a turn that the loop left before making them.
fn answer_unmade(conversation: &mut Vec<Message>, calls: &[AgentToolCall]) {
    for call in calls {
        conversation.push(tool_message(
            &call.id,
            format!("Tool '{}' was not called: the step ended first.", call.name),
        ));
    }
}

/// Reads and removes `_abort_tool_loop`.
fn take_abort(context: &mut Context) -> bool {
    if !context.as_map().contains_key(ABORT_KEY) {
        return false;
    }
    match context.make_mut().remove(ABORT_KEY) {
        Some(Value::Bool(abort)) => abort,
        Some(Value::Null) | None => false,
        Some(_) => true,
    }
}

/// Reads and removes a list of strings a hook set.
fn take_strings(context: &mut Context, key: &str) -> Result<Vec<String>, StateError> {
    if !context.as_map().contains_key(key) {
        return Ok(Vec::new());
    }
    match context.make_mut().remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                other => Err(reply_error(key, "tool names or call ids (strings)", &other)),
            })
            .collect(),
        Some(other) => Err(reply_error(key, "a list of tool names or call ids", &other)),
    }
}

/// Reads and removes `_steering_messages`: `{role, content}` objects.
fn take_messages(context: &mut Context) -> Result<Vec<Message>, StateError> {
    if !context.as_map().contains_key(STEERING_KEY) {
        return Ok(Vec::new());
    }
    let items = match context.make_mut().remove(STEERING_KEY) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(reply_error(STEERING_KEY, "a list of messages", &other)),
    };
    items
        .into_iter()
        .map(|item| {
            let role = item.get("role").and_then(Value::as_str);
            let content = item.get("content").and_then(Value::as_str);
            match (role, content) {
                (Some(role @ ("user" | "assistant" | "system")), Some(content)) => {
                    Ok(text_message(role, content.to_owned()))
                }
                _ => Err(reply_error(
                    STEERING_KEY,
                    "messages `{role: user|assistant|system, content: text}`",
                    &item,
                )),
            }
        })
        .collect()
}

fn reply_error(key: &str, expected: &str, found: &Value) -> StateError {
    state_error(
        error_types::HOOK,
        format!(
            "a hook set `{key}` to {}; expected {expected}",
            super::truncated(found, 120)
        ),
    )
}

/// Cuts a tool result longer than `limit` bytes (`tool_result_bytes`) at a character boundary,
/// with a note the model reads saying how much was left out.
fn cut_to_limit(mut outcome: ToolOutcome, limit: u64) -> ToolOutcome {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let total = outcome.content.len();
    if total <= limit {
        return outcome;
    }
    let mut end = limit;
    while !outcome.content.is_char_boundary(end) {
        end -= 1;
    }
    outcome.content.truncate(end);
    outcome.content.push_str(&format!(
        "\n[The tool result was cut here: it had {total} bytes ({})]",
        Limit::ToolResultBytes.hint(limit as u64)
    ));
    outcome
}
