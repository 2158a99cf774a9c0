//! One state's work: action, launch, children, agent, final output.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tracing::Instrument;

use flatmachines_core::{AgentError, CheckpointEvent, Context, LaunchIntent, StateError};

use super::{Execution, StateFailure, ids};
use crate::definition::{ChildRef, Launch, MachineDef, StateDef};
use crate::error::{error_types, state_error};
use crate::template::{RenderError, Root, TemplateTree, Vars};

pub(crate) fn template_error(error: RenderError) -> StateError {
    state_error(
        error_types::TEMPLATE,
        format!("cannot render `{}`: {}", error.location, error.message),
    )
}

pub(super) fn agent_error(agent: &str, error: AgentError) -> StateError {
    StateError {
        error_type: error.error_type,
        message: format!("agent `{agent}` failed: {}", error.message),
    }
}

impl Execution {
    /// Runs the state's work in the spec's order and returns its output.
    pub(super) async fn execute_state(
        &mut self,
        definition: &MachineDef,
        index: usize,
        step: u64,
        context: &mut Context,
    ) -> Result<Option<Value>, StateFailure> {
        let state = &definition.states[index];
        let mut output = None;
        // What a checkpoint recorded of this state's agent, taken now: left for later, it
        // would keep the step loop from checkpointing the states that follow.
        let recorded_answer = self.take_recorded_answer(index, step);
        let journaled = match self.recorded_loop.take() {
            Some((at, at_step, recorded)) if at == index && at_step == step => Some(recorded),
            _ => None,
        };

        if let Some(action) = &state.action {
            let hooks = self.prepared.machines[self.machine].hooks.clone();
            let handled = match hooks {
                Some(hooks) => hooks.on_action(action, context).await.map_err(|e| {
                    state_error(
                        error_types::HOOK,
                        format!("hook `on_action` failed for action `{action}`: {e}"),
                    )
                })?,
                None => false,
            };
            if !handled {
                tracing::warn!(
                    machine = %definition.name,
                    state = %state.name,
                    "action `{action}` was not handled by any hook"
                );
            }
        }

        if let Some(launch) = &state.launch {
            self.launch(definition, state, launch, step, context)
                .await?;
        }

        if let Some(work) = &state.children {
            let result = self.run_children(state, work, step, context).await?;
            self.apply_output(state, &result, context)?;
            output = Some(result);
        }

        if let Some(call) = &state.agent {
            if let Some(answer) = recorded_answer {
                tracing::info!(
                    state = %state.name,
                    agent = %call.name,
                    step,
                    "the agent's answer was recorded before the interruption; it is used, and the agent is not called again"
                );
                self.apply_output(state, &answer, context)?;
                return Ok(Some(answer));
            }
            let Some(bound) = self.prepared.machines[self.machine]
                .agents
                .get(index)
                .and_then(Option::as_ref)
            else {
                return Err(state_error(
                    error_types::NOT_FOUND,
                    format!("agent `{}` has no executor", call.name),
                )
                .into());
            };
            if let Some(looped) = &call.tool_loop {
                // Owned, so that the tool loop may borrow the execution mutably.
                let bound = bound.clone();
                let bound = &bound;
                let result = self
                    .run_tool_loop(
                        super::tool_loop::LoopSite {
                            definition,
                            index,
                            step,
                            call,
                            bound,
                        },
                        looped,
                        journaled,
                        context,
                    )
                    .await?;
                // A loop that chose its next state mid-loop is not recorded: the choice would
                // be lost, and the state is run again instead.
                if self.loop_next.is_none() {
                    self.record_answer(definition, state, step, context, &result)
                        .await?;
                }
                self.apply_output(state, &result, context)?;
                return Ok(Some(result));
            }
            let input = call
                .input
                .render_map(&self.set.templates, &Vars::state(context.shared()))
                .map_err(template_error)?;
            self.budget
                .reserve(&call.name, &state.name)
                .map_err(|error| StateFailure { error, fatal: true })?;
            let started = Instant::now();
            let result = crate::observe::within_agent_call(
                self.agent_call_scope(definition, &state.name, &call.name),
                bound
                    .strategy
                    .execute(&*bound.executor, &input, context.as_map()),
            )
            .instrument(self.agent_span(&state.name, step, &call.name))
            .await;
            self.observe_agent_call(definition, &state.name, &call.name, started, &result);
            let result = result.map_err(|e| agent_error(&call.name, e))?;
            self.budget.spend(result.api_calls(), result.total_cost());
            self.api_calls += result.api_calls();
            self.cost += result.total_cost();
            let result = Value::Object(result.output_payload());
            self.record_answer(definition, state, step, context, &result)
                .await?;
            self.apply_output(state, &result, context)?;
            output = Some(result);
        }

        if let (true, Some(tree)) = (state.is_final, &state.output) {
            let rendered = tree
                .render(&self.set.templates, &Vars::state(context.shared()))
                .map_err(template_error)?;
            output = Some(rendered);
        }
        Ok(output)
    }

    /// The answer an `agent_result` checkpoint recorded for state `index` at `step`, once.
    fn take_recorded_answer(&mut self, index: usize, step: u64) -> Option<Value> {
        match self.recorded_answer.take() {
            Some((state, at, answer)) if state == index && at == step => Some(answer),
            _ => None,
        }
    }

    /// Checkpoints the agent's `answer` (`agent_result`) before anything uses it: from here a
    /// crash resumes with the answer rather than a second call. A write that fails is fatal,
    /// as for the outbox.
    async fn record_answer(
        &mut self,
        definition: &MachineDef,
        state: &StateDef,
        step: u64,
        context: &Context,
        answer: &Value,
    ) -> Result<(), StateFailure> {
        self.checkpoint(
            definition,
            CheckpointEvent::AgentResult,
            &state.name,
            step,
            context,
            Some(answer),
        )
        .await
        .map_err(|error| StateFailure { error, fatal: true })
    }

    /// `output_to_context`: each entry sees the context as updated by the entries before it.
    fn apply_output(
        &self,
        state: &StateDef,
        output: &Value,
        context: &mut Context,
    ) -> Result<(), StateError> {
        if state.output_to_context.is_empty() {
            return Ok(());
        }
        let output = Root::Value(Arc::new(output.clone()));
        for (key, tree) in &state.output_to_context {
            let value = render_with_output(tree, &self.set.templates, context, &output)?;
            context.insert(key.clone(), value);
        }
        Ok(())
    }

    /// `launch`: records the intents, checkpoints them, then starts the children without
    /// waiting for them.
    async fn launch(
        &mut self,
        definition: &MachineDef,
        state: &StateDef,
        launch: &Launch,
        step: u64,
        context: &Context,
    ) -> Result<(), StateFailure> {
        let input = launch
            .input
            .render_map(&self.set.templates, &Vars::state(context.shared()))
            .map_err(template_error)?;
        let mut new = Vec::with_capacity(launch.machines.len());
        for (slot, (name, machine)) in launch.machines.iter().enumerate() {
            let execution_id =
                ids::child_execution_id(&self.id, step, &state.name, &format!("launch:{slot}"));
            // A state run again after a resume finds its launches already in the outbox,
            // restarted when the execution resumed.
            if self.outbox.iter().any(|i| i.execution_id == execution_id) {
                continue;
            }
            new.push((execution_id.clone(), name, *machine));
            self.outbox.push(LaunchIntent {
                execution_id,
                machine: name.clone(),
                input: input.clone(),
                launched: false,
            });
        }
        if new.is_empty() {
            return Ok(());
        }
        // The outbox is durable before any child starts, so a crash from here on leaves
        // intents a resumed parent honours, and none it would repeat.
        self.checkpoint(
            definition,
            CheckpointEvent::Launch,
            &state.name,
            step,
            context,
            None,
        )
        .await
        .map_err(|error| StateFailure { error, fatal: true })?;
        // The checkpoint may have pruned the intents of children that finished meanwhile, so
        // the new intents are found by id, not by position.
        for (id, name, machine) in new {
            let Some(intent) = self.outbox.iter_mut().find(|i| i.execution_id == id) else {
                continue;
            };
            intent.launched = true;
            let input = intent.input.clone();
            let child = ChildRef {
                name: name.clone(),
                id: machine,
            };
            let handle = self.spawn(&child, id, input);
            self.background.push(handle);
        }
        Ok(())
    }
}

fn render_with_output(
    tree: &TemplateTree,
    templates: &crate::template::TemplateEngine,
    context: &Context,
    output: &Root,
) -> Result<Value, StateError> {
    // The variables hold a reference to the context only while rendering, so the insert that
    // follows does not copy the map.
    let vars = Vars::state(context.shared()).with("output", output.clone());
    tree.render(templates, &vars).map_err(template_error)
}
