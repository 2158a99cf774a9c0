//! The step loop of one execution, and the checkpoints and background children it tends.

use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use futures::stream::StreamExt;
use serde_json::Value;
use tracing::Instrument;

use flatmachines_core::{CheckpointEvent, Context, JsonMap, MachineHooks, StateError};

use super::resume::{At, Start};
use super::{
    ChildReport, ConditionScope, Execution, RunOutcome, RunStatus, StateFailure, backend_error,
    hook_error,
};
use crate::checkpoint::{CheckpointData, ToolLoopRecord};
use crate::definition::MachineDef;
use crate::error::{RunError, error_types, state_error};
use crate::runtime::DEFAULT_MAX_STEPS;

impl Execution {
    /// The step loop, from `start` to a final state, a failure or the step limit.
    pub(super) async fn drive(
        &mut self,
        definition: &MachineDef,
        start: Start,
        max_steps: Option<u64>,
    ) -> Result<RunOutcome, RunError> {
        let limit = max_steps
            .or(definition.max_steps)
            .unwrap_or(DEFAULT_MAX_STEPS);
        let hooks = self.prepared.machines[self.machine].hooks.clone();
        let Start {
            mut context,
            at,
            mut step,
        } = start;
        let mut current = match at {
            At::State(state) => state,
            At::Finished(output) => {
                return self
                    .finish(
                        definition,
                        context,
                        output,
                        RunStatus::Completed,
                        step,
                        hooks.as_ref(),
                    )
                    .await;
            }
            At::Ended(output) => {
                return Ok(self.outcome(output, RunStatus::Completed, step));
            }
        };
        let (output, status) = loop {
            let state = &definition.states[current];
            if step >= limit {
                let status = RunStatus::StepLimit {
                    limit,
                    state: state.name.clone(),
                };
                break (Value::Object(JsonMap::new()), status);
            }
            step += 1;
            let fail = |this: &Self, error| this.failure(definition, Some(&state.name), error);
            let state_span = self.state_span(&state.name, step);
            self.observe_state_entered(definition, &state.name, step);
            tracing::debug!(parent: &state_span, machine = %definition.name, state = %state.name, step, "entering state");
            self.checkpoint(
                definition,
                CheckpointEvent::StateEnter,
                &state.name,
                step,
                &context,
                None,
            )
            .await
            .map_err(|e| fail(self, e))?;
            if let Some(hooks) = &hooks {
                hooks
                    .on_state_enter(&state.name, &mut context)
                    .instrument(state_span.clone())
                    .await
                    .map_err(|e| fail(self, hook_error("on_state_enter", e)))?;
            }
            self.checkpoint(
                definition,
                CheckpointEvent::Execute,
                &state.name,
                step,
                &context,
                None,
            )
            .await
            .map_err(|e| fail(self, e))?;

            let state_started = Instant::now();
            let result = self
                .execute_state(definition, current, step, &mut context)
                .instrument(state_span.clone())
                .await;
            self.observe_state_finished(definition, &state.name, step, state_started, &result);
            let mut output = match result {
                Ok(output) => output,
                Err(StateFailure { error, fatal: true }) => return Err(fail(self, error)),
                Err(StateFailure { error, .. }) => {
                    let context_map = context.make_mut();
                    context_map.insert("last_error".into(), Value::String(error.message.clone()));
                    context_map.insert(
                        "last_error_type".into(),
                        Value::String(error.error_type.clone()),
                    );
                    let mut recovery = state
                        .on_error
                        .as_ref()
                        .and_then(|routes| routes.route(&error.error_type));
                    if recovery.is_none()
                        && let Some(hooks) = &hooks
                    {
                        let target = hooks
                            .on_error(&state.name, &error, &mut context)
                            .instrument(state_span.clone())
                            .await
                            .map_err(|e| fail(self, hook_error("on_error", e)))?;
                        recovery = match target {
                            Some(target) => Some(
                                self.state_named(definition, &target, "on_error")
                                    .map_err(|e| fail(self, e))?,
                            ),
                            None => None,
                        };
                    }
                    match recovery {
                        Some(next) => {
                            tracing::info!(
                                machine = %definition.name,
                                state = %state.name,
                                recovery = %definition.states[next].name,
                                error = %error,
                                "state failed; recovering"
                            );
                            current = next;
                            continue;
                        }
                        None => return Err(fail(self, error)),
                    }
                }
            };

            let final_output = if state.is_final {
                output.as_ref()
            } else {
                None
            };
            self.checkpoint(
                definition,
                CheckpointEvent::StateExit,
                &state.name,
                step,
                &context,
                final_output,
            )
            .await
            .map_err(|e| fail(self, e))?;
            if let Some(hooks) = &hooks {
                hooks
                    .on_state_exit(&state.name, &mut context, &mut output)
                    .instrument(state_span.clone())
                    .await
                    .map_err(|e| fail(self, hook_error("on_state_exit", e)))?;
            }
            if state.is_final {
                let output = output.unwrap_or_else(|| Value::Object(JsonMap::new()));
                break (output, RunStatus::Completed);
            }

            let next = self
                .transition(
                    definition,
                    current,
                    &mut context,
                    output.as_ref(),
                    hooks.as_ref(),
                )
                .instrument(state_span)
                .await
                .map_err(|e| fail(self, e))?;
            tracing::debug!(
                machine = %definition.name,
                from = %state.name,
                to = %definition.states[next].name,
                "transition"
            );
            current = next;
        };

        self.finish(definition, context, output, status, step, hooks.as_ref())
            .await
    }

    /// After the loop: waits for background children, then (when completed) checkpoints
    /// `machine_end` and runs `on_machine_end`.
    async fn finish(
        &mut self,
        definition: &MachineDef,
        mut context: Context,
        mut output: Value,
        status: RunStatus,
        step: u64,
        hooks: Option<&Arc<dyn MachineHooks>>,
    ) -> Result<RunOutcome, RunError> {
        self.drain_background().await;
        if let Some(error) = self.runaway.take() {
            return Err(self.failure(definition, None, error));
        }
        if status == RunStatus::Completed {
            self.checkpoint(
                definition,
                CheckpointEvent::MachineEnd,
                "end",
                step,
                &context,
                Some(&output),
            )
            .await
            .map_err(|e| self.failure(definition, None, e))?;
            if let Some(hooks) = hooks {
                hooks
                    .on_machine_end(&mut context, &mut output)
                    .await
                    .map_err(|e| self.failure(definition, None, hook_error("on_machine_end", e)))?;
            }
        }
        if self.is_root() {
            tracing::info!(machine = %definition.name, execution_id = %self.id, steps = step, "machine finished");
        }
        Ok(self.outcome(output, status, step))
    }

    pub(super) fn outcome(&self, output: Value, status: RunStatus, step: u64) -> RunOutcome {
        RunOutcome {
            execution_id: self.id.clone(),
            output,
            status,
            steps: step,
            total_api_calls: self.api_calls,
            total_cost: self.cost,
        }
    }

    /// The next state after `current`: the first transition whose condition holds, then the
    /// `on_transition` hook's redirect.
    pub(super) async fn transition(
        &mut self,
        definition: &MachineDef,
        current: usize,
        context: &mut Context,
        output: Option<&Value>,
        hooks: Option<&Arc<dyn MachineHooks>>,
    ) -> Result<usize, StateError> {
        let next = match self.loop_next.take() {
            Some(chosen) => chosen,
            None => self.next_state(definition, current, context, output)?,
        };
        let Some(hooks) = hooks else {
            return Ok(next);
        };
        let from = &definition.states[current].name;
        let to = &definition.states[next].name;
        match hooks
            .on_transition(from, to, context)
            .await
            .map_err(|e| hook_error("on_transition", e))?
        {
            Some(redirect) => self.state_named(definition, &redirect, "on_transition"),
            None => Ok(next),
        }
    }

    pub(super) fn state_named(
        &self,
        definition: &MachineDef,
        name: &str,
        hook: &str,
    ) -> Result<usize, StateError> {
        definition.state_index(name).ok_or_else(|| {
            state_error(
                error_types::NOT_FOUND,
                format!("hook `{hook}` chose state `{name}`, which does not exist"),
            )
        })
    }

    /// The first transition out of `current` whose condition holds.
    pub(super) fn next_state(
        &self,
        definition: &MachineDef,
        current: usize,
        context: &Context,
        output: Option<&Value>,
    ) -> Result<usize, StateError> {
        if let Some(next) = self.first_holding(definition, current, context, output, false)? {
            return Ok(next);
        }
        let state = &definition.states[current];
        Err(state_error(
            error_types::NO_TRANSITION,
            format!(
                "state `{}` is not final and none of its {} transition(s) matched",
                state.name,
                state.transitions.len()
            ),
        ))
    }

    /// The first transition out of `current` that holds; with `conditional_only` (a tool loop
    /// checking mid-loop), transitions without a condition are passed over.
    pub(super) fn first_holding(
        &self,
        definition: &MachineDef,
        current: usize,
        context: &Context,
        output: Option<&Value>,
        conditional_only: bool,
    ) -> Result<Option<usize>, StateError> {
        let state = &definition.states[current];
        let scope = ConditionScope {
            context: context.as_map(),
            output,
        };
        for (index, transition) in state.transitions.iter().enumerate() {
            let Some(condition) = &transition.condition else {
                if conditional_only {
                    continue;
                }
                return Ok(Some(transition.to));
            };
            match condition.evaluate_bool(&scope) {
                Ok(true) => return Ok(Some(transition.to)),
                Ok(false) => {}
                Err(e) => {
                    let when = if conditional_only {
                        " (checked after a tool call)"
                    } else {
                        ""
                    };
                    return Err(state_error(
                        error_types::EXPRESSION,
                        format!("transitions[{index}] of state `{}`{when}: {e}", state.name),
                    ));
                }
            }
        }
        Ok(None)
    }

    /// Writes a checkpoint when the machine's policy asks for `event`.
    pub(super) async fn checkpoint(
        &mut self,
        definition: &MachineDef,
        event: CheckpointEvent,
        state: &str,
        step: u64,
        context: &Context,
        output: Option<&Value>,
    ) -> Result<(), StateError> {
        self.checkpoint_with(definition, event, state, step, context, output, None)
            .await
    }

    /// [`checkpoint`](Self::checkpoint), with a tool loop's journal.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn checkpoint_with(
        &mut self,
        definition: &MachineDef,
        event: CheckpointEvent,
        state: &str,
        step: u64,
        context: &Context,
        output: Option<&Value>,
        tool_loop_state: Option<&ToolLoopRecord<'_>>,
    ) -> Result<(), StateError> {
        if !self.background.is_empty() {
            self.collect_finished_background();
        }
        let Some(writer) = &self.checkpoints else {
            return Ok(());
        };
        if !definition.checkpoints.wants(event) {
            return Ok(());
        }
        // A state run again to take a recorded answer or continue a journaled loop does not
        // checkpoint its entry: `latest` would move back before the record, and a second
        // crash would make the recorded calls again.
        if matches!(
            event,
            CheckpointEvent::StateEnter | CheckpointEvent::Execute
        ) && (self.recorded_answer.is_some() || self.recorded_loop.is_some())
        {
            return Ok(());
        }
        // A runner whose lease ran out stops here rather than overwrite the checkpoints of
        // whoever took the execution over.
        self.prepared
            .lock
            .ensure_held(&self.lock_key)
            .map_err(|e| {
                state_error(
                    error_types::BACKEND,
                    format!(
                        "{e}; the `{}` checkpoint was not written, since another runner may own the execution now",
                        event.as_str()
                    ),
                )
            })?;
        let started = Instant::now();
        let saved = writer
            .save(
                context,
                CheckpointData {
                    event,
                    state,
                    step,
                    output,
                    total_api_calls: self.api_calls,
                    total_cost: self.cost,
                    pending_launches: &self.outbox,
                    tool_loop_state,
                },
            )
            .await;
        self.observe_checkpoint(definition, event, started, saved.is_ok());
        saved.map_err(backend_error)
    }

    pub(super) fn record_background(
        &mut self,
        report: Result<ChildReport, tokio::task::JoinError>,
    ) {
        match report {
            Ok(report) => {
                self.api_calls += report.api_calls;
                self.cost += report.cost;
                if let Err(error) = &report.result {
                    tracing::warn!(child = %report.execution_id, error = %error, "background child machine failed");
                    if super::children::is_tree_bound(error) && self.runaway.is_none() {
                        self.runaway = Some(error.clone());
                    }
                }
                self.outbox
                    .retain(|intent| intent.execution_id != report.execution_id);
            }
            Err(e) => tracing::warn!(error = %e, "background child machine task ended abnormally"),
        }
    }

    /// Takes the reports of background children that already finished, without waiting.
    pub(super) fn collect_finished_background(&mut self) {
        while let Some(Some(report)) = self.background.next().now_or_never() {
            self.record_background(report);
        }
    }

    pub(super) async fn drain_background(&mut self) {
        while let Some(report) = self.background.next().await {
            self.record_background(report);
        }
    }
}
