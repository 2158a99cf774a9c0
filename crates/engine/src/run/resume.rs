//! Where an execution starts: from its input, or from a checkpoint.
//!
//! A resumed execution continues from its latest snapshot:
//!
//! | latest event | continues with |
//! |---|---|
//! | `machine_end` | nothing: the stored output is the outcome |
//! | `machine_start` | the initial state |
//! | `state_enter`, `execute`, `launch` | that state again, as the same step |
//! | `tool_call` | that state again, as the same step, its tool loop continuing from the journal (upstream's snapshots, which have none, run the state again) |
//! | `agent_result` | that state again, as the same step, with the recorded answer instead of a new agent call |
//! | `state_exit` | the transition out of that state (or the end, for a final state) |
//!
//! Repeating a state keeps its step number, so the children it starts get the ids they got the
//! first time: a child that already finished gives its stored output, one that was interrupted
//! resumes, and only one never started starts now. Launched children are restarted the same
//! way from the outbox.

use std::sync::Arc;

use serde_json::Value;

use flatmachines_core::{CheckpointEvent, Context, JsonMap, MachineSnapshot};

use super::{Execution, RunError, backend_error, children, hook_error, state};
use crate::checkpoint::{CheckpointError, load_latest};
use crate::definition::{ChildRef, MachineDef};
use crate::template::Vars;

/// How an execution begins.
pub(crate) enum Begin {
    /// From the machine input.
    Fresh(JsonMap),
    /// From the latest snapshot in the store.
    Latest,
    /// From this snapshot.
    Snapshot(Box<MachineSnapshot>),
}

/// The position the step loop starts from.
pub(super) struct Start {
    pub(super) context: Context,
    pub(super) at: At,
    /// Steps already taken.
    pub(super) step: u64,
}

pub(super) enum At {
    /// Enter this state next.
    State(usize),
    /// A final state has run and produced this output; only the end remains.
    Finished(Value),
    /// The execution had ended with this output.
    Ended(Value),
}

/// Why an execution could not be resumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeFailure {
    /// The store holds nothing for the execution.
    #[error("no checkpoints were found for it")]
    Unknown,
    /// Its checkpoints could not be read.
    #[error(transparent)]
    Checkpoint(CheckpointError),
    /// Its checkpoints were written by another machine.
    #[error("its checkpoints belong to machine `{found}`, not `{expected}`")]
    WrongMachine {
        /// The machine being resumed.
        expected: String,
        /// The machine named in the snapshot.
        found: String,
    },
    /// The snapshot's state is not in the machine (the config changed).
    #[error("its latest snapshot is in state `{state}`, which machine `{machine}` does not have")]
    UnknownState {
        /// The machine.
        machine: String,
        /// The missing state.
        state: String,
    },
    /// The snapshot's event is not one this runtime writes.
    #[error("its latest snapshot has the unknown event {0:?}")]
    UnknownEvent(Option<String>),
    /// A launch intent names a machine that is not declared.
    #[error("a launch intent names machine `{0}`, which is not declared under `data.machines`")]
    UnknownLaunch(String),
}

impl Execution {
    pub(super) async fn begin(
        &mut self,
        definition: &MachineDef,
        begin: Begin,
    ) -> Result<Start, RunError> {
        match begin {
            Begin::Fresh(input) => self.fresh_start(definition, input).await,
            Begin::Latest => {
                let snapshot = match load_latest(&*self.prepared.persistence, &self.id).await {
                    Ok(Some(snapshot)) => snapshot,
                    Ok(None) => return Err(self.not_resumable(ResumeFailure::Unknown)),
                    Err(e) => return Err(self.not_resumable(ResumeFailure::Checkpoint(e))),
                };
                self.restore(definition, snapshot).await
            }
            Begin::Snapshot(snapshot) => self.restore(definition, *snapshot).await,
        }
    }

    fn not_resumable(&self, reason: ResumeFailure) -> RunError {
        RunError::Resume {
            execution_id: self.id.clone(),
            reason,
        }
    }

    /// Renders the context from the input, checkpoints `machine_start` and runs
    /// `on_machine_start`.
    async fn fresh_start(
        &mut self,
        definition: &MachineDef,
        input: JsonMap,
    ) -> Result<Start, RunError> {
        let mut context: Context = definition
            .context
            .render_map(&self.set.templates, &Vars::input(Arc::new(input)))
            .map_err(|e| self.failure(definition, None, state::template_error(e)))?
            .into();
        if self.is_root() {
            tracing::info!(machine = %definition.name, execution_id = %self.id, "machine started");
        } else {
            tracing::debug!(machine = %definition.name, execution_id = %self.id, "child machine started");
        }
        self.checkpoint(
            definition,
            CheckpointEvent::MachineStart,
            "start",
            0,
            &context,
            None,
        )
        .await
        .map_err(|e| self.failure(definition, None, e))?;
        if let Some(hooks) = self.prepared.machines[self.machine].hooks.clone() {
            hooks
                .on_machine_start(&mut context)
                .await
                .map_err(|e| self.failure(definition, None, hook_error("on_machine_start", e)))?;
        }
        Ok(Start {
            context,
            at: super::resume::At::State(definition.initial),
            step: 0,
        })
    }

    /// Takes up an execution where `snapshot` left it.
    async fn restore(
        &mut self,
        definition: &MachineDef,
        snapshot: MachineSnapshot,
    ) -> Result<Start, RunError> {
        if snapshot.machine_name != definition.name {
            return Err(self.not_resumable(ResumeFailure::WrongMachine {
                expected: definition.name.clone(),
                found: snapshot.machine_name,
            }));
        }
        let Some(event) = snapshot.checkpoint_event() else {
            return Err(self.not_resumable(ResumeFailure::UnknownEvent(snapshot.event)));
        };
        self.api_calls = snapshot.total_api_calls.unwrap_or(0);
        self.cost = snapshot.total_cost.unwrap_or(0.0);
        // What this execution spent is not yet in its parent's totals (which a resumed
        // parent restored), since the parent adds it only when the child ends.
        self.budget.restore(self.api_calls, self.cost);
        let mut context: Context = snapshot.context.into();
        let step = snapshot.step;
        let output = snapshot
            .output
            .unwrap_or_else(|| Value::Object(JsonMap::new()));
        if event == CheckpointEvent::MachineEnd {
            return Ok(Start {
                context,
                at: At::Ended(output),
                step,
            });
        }
        self.outbox = snapshot.pending_launches.unwrap_or_default();
        self.restart_launches(definition)?;
        let state = match event {
            CheckpointEvent::MachineStart => definition.initial,
            _ => definition
                .state_index(&snapshot.current_state)
                .ok_or_else(|| {
                    self.not_resumable(ResumeFailure::UnknownState {
                        machine: definition.name.clone(),
                        state: snapshot.current_state.clone(),
                    })
                })?,
        };
        tracing::info!(
            machine = %definition.name,
            execution_id = %self.id,
            event = %event,
            state = %definition.states[state].name,
            step,
            "resuming"
        );
        let start = match event {
            CheckpointEvent::MachineStart => Start {
                context,
                at: At::State(state),
                step: 0,
            },
            CheckpointEvent::StateExit if definition.states[state].is_final => Start {
                context,
                at: At::Finished(output),
                step,
            },
            CheckpointEvent::StateExit => {
                let hooks = self.prepared.machines[self.machine].hooks.clone();
                let next = self
                    .transition(definition, state, &mut context, None, hooks.as_ref())
                    .await
                    .map_err(|e| {
                        self.failure(definition, Some(&definition.states[state].name), e)
                    })?;
                Start {
                    context,
                    at: At::State(next),
                    step,
                }
            }
            // The agent had answered: the state runs again, and takes the recorded answer.
            CheckpointEvent::AgentResult => {
                self.recorded_answer = Some((state, step, output));
                Start {
                    context,
                    at: At::State(state),
                    step: step.saturating_sub(1),
                }
            }
            // The loop was under way: the state runs again, and its loop continues.
            CheckpointEvent::ToolCall => {
                match snapshot.tool_loop_state {
                    Some(journaled) if journaled.journal.is_some() => {
                        self.recorded_loop = Some((state, step, journaled));
                    }
                    _ => tracing::warn!(
                        machine = %definition.name,
                        execution_id = %self.id,
                        state = %definition.states[state].name,
                        "the `tool_call` snapshot has no journal this runtime can continue from (upstream writes none): the state runs again, its tool loop from the start"
                    ),
                }
                Start {
                    context,
                    at: At::State(state),
                    step: step.saturating_sub(1),
                }
            }
            // The state had not finished: it runs again as the same step.
            _ => Start {
                context,
                at: At::State(state),
                step: step.saturating_sub(1),
            },
        };
        Ok(start)
    }

    /// Starts again the launched children of the outbox that may not have finished: all of
    /// them when children run in this process (they died with it), and those not yet handed
    /// over when an invoker runs them elsewhere.
    fn restart_launches(&mut self, definition: &MachineDef) -> Result<(), RunError> {
        let remote = self.prepared.invoker.is_some();
        for index in 0..self.outbox.len() {
            let intent = &self.outbox[index];
            if remote && intent.launched {
                continue;
            }
            let Some(&machine) = definition.children.get(&intent.machine) else {
                return Err(
                    self.not_resumable(ResumeFailure::UnknownLaunch(intent.machine.clone()))
                );
            };
            let child = ChildRef {
                name: intent.machine.clone(),
                id: machine,
            };
            let task = children::ChildTask::spawn(
                &self.prepared,
                &child,
                intent.execution_id.clone(),
                self.as_parent(),
                intent.input.clone(),
                true,
            );
            self.background.push(task);
            self.outbox[index].launched = true;
        }
        Ok(())
    }
}

/// A child's checkpoint could not be read while resuming it.
pub(super) fn child_checkpoint_error(error: CheckpointError) -> flatmachines_core::StateError {
    match error {
        CheckpointError::Backend(e) => backend_error(e),
        other => crate::error::state_error(crate::error::error_types::BACKEND, other.to_string()),
    }
}
