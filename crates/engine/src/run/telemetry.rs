//! What an execution tells the outside while it runs: `tracing` spans (per machine run, child
//! machine, state and agent call) and the events of the runtime's observers.
//!
//! Spans are at `INFO`, so every record a run writes at `INFO` or more carries the execution
//! id, the state and the step of where it happened; with the usual `WARN` filter they cost
//! nothing. Observer events are built only when an observer listens.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use serde_json::Value;
use tokio::task::JoinError;

use flatmachines_core::observe::{ExecutionRef, RunEvent, TokenUsage};
use flatmachines_core::{AgentError, AgentResult, CheckpointEvent, StateError};

use super::{ChildReport, Execution, RunOutcome, StateFailure};
use crate::definition::{MachineDef, StateDef};
use crate::error::RunError;
use crate::observe::AgentCallScope;

impl Execution {
    /// Where this execution is, for observer events.
    pub(super) fn execution_ref<'a>(&'a self, definition: &'a MachineDef) -> ExecutionRef<'a> {
        ExecutionRef {
            execution_id: &self.id,
            parent_execution_id: self.parent_id.as_deref(),
            machine: &definition.name,
        }
    }

    /// The span of the whole execution: `machine` for a root, `child_machine` for a child.
    pub(super) fn run_span(&self, definition: &MachineDef) -> tracing::Span {
        match &self.parent_id {
            None => tracing::info_span!(
                "machine",
                machine = %definition.name,
                execution_id = %self.id,
            ),
            Some(parent) => tracing::info_span!(
                "child_machine",
                machine = %definition.name,
                execution_id = %self.id,
                parent_execution_id = %parent,
            ),
        }
    }

    /// The span of one step.
    pub(super) fn state_span(&self, state: &str, step: u64) -> tracing::Span {
        tracing::info_span!("state", execution_id = %self.id, state = %state, step)
    }

    /// The span of one agent call.
    pub(super) fn agent_span(&self, state: &str, step: u64, agent: &str) -> tracing::Span {
        tracing::info_span!("agent", agent = %agent, execution_id = %self.id, state = %state, step)
    }

    pub(super) fn observe_start(&self, definition: &MachineDef) {
        if self.prepared.observers.active() {
            self.prepared.observers.emit(&RunEvent::MachineStarted {
                execution: self.execution_ref(definition),
            });
        }
    }

    pub(super) fn observe_finish(
        &self,
        definition: &MachineDef,
        result: &Result<RunOutcome, RunError>,
    ) {
        if !self.prepared.observers.active() {
            return;
        }
        let failure;
        let (steps, completed, error) = match result {
            Ok(outcome) => (Some(outcome.steps), outcome.is_completed(), None),
            Err(RunError::Failed { error, .. }) => (None, false, Some(error)),
            Err(other) => {
                failure = other.as_state_error();
                (None, false, Some(&failure))
            }
        };
        self.prepared.observers.emit(&RunEvent::MachineFinished {
            execution: self.execution_ref(definition),
            steps,
            completed,
            error,
        });
    }

    pub(super) fn observe_state_entered(&self, definition: &MachineDef, state: &str, step: u64) {
        if self.prepared.observers.active() {
            self.prepared.observers.emit(&RunEvent::StateEntered {
                execution: self.execution_ref(definition),
                state,
                step,
            });
        }
    }

    pub(super) fn observe_state_finished(
        &self,
        definition: &MachineDef,
        state: &str,
        step: u64,
        started: Instant,
        result: &Result<Option<Value>, StateFailure>,
    ) {
        if self.prepared.observers.active() {
            self.prepared.observers.emit(&RunEvent::StateFinished {
                execution: self.execution_ref(definition),
                state,
                step,
                elapsed: started.elapsed(),
                error: result.as_ref().err().map(|failure| &failure.error),
            });
        }
    }

    /// Who to tell about the retries of the agent call of `state`, when anyone listens.
    pub(super) fn agent_call_scope(
        &self,
        definition: &MachineDef,
        state: &str,
        agent: &str,
    ) -> Option<AgentCallScope> {
        self.prepared.observers.active().then(|| AgentCallScope {
            observers: self.prepared.observers.clone(),
            execution_id: Arc::from(self.id.as_str()),
            parent_execution_id: self.parent_id.as_deref().map(Arc::from),
            machine: Arc::from(definition.name.as_str()),
            state: Arc::from(state),
            agent: Arc::from(agent),
        })
    }

    pub(super) fn observe_agent_call(
        &self,
        definition: &MachineDef,
        state: &str,
        agent: &str,
        started: Instant,
        result: &Result<AgentResult, AgentError>,
    ) {
        if !self.prepared.observers.active() {
            return;
        }
        let (api_calls, tokens, cost, error_type) = match result {
            Ok(result) => (
                result.api_calls(),
                result
                    .usage
                    .as_ref()
                    .map(TokenUsage::from_usage)
                    .unwrap_or_default(),
                result.total_cost(),
                // `retry` reports a call that failed every attempt as an error payload.
                result
                    .output
                    .as_ref()
                    .filter(|output| output.contains_key("_error"))
                    .map(|output| {
                        output
                            .get("_error_type")
                            .and_then(Value::as_str)
                            .unwrap_or(crate::error_types::INTERNAL)
                    }),
            ),
            Err(error) => (
                0,
                TokenUsage::default(),
                0.0,
                Some(error.error_type.as_str()),
            ),
        };
        self.prepared.observers.emit(&RunEvent::AgentCalled {
            execution: self.execution_ref(definition),
            state,
            agent,
            elapsed: started.elapsed(),
            api_calls,
            tokens,
            cost,
            error_type,
        });
    }

    pub(super) fn observe_checkpoint(
        &self,
        definition: &MachineDef,
        event: CheckpointEvent,
        started: Instant,
        ok: bool,
    ) {
        if self.prepared.observers.active() {
            self.prepared.observers.emit(&RunEvent::CheckpointWritten {
                execution: self.execution_ref(definition),
                event,
                elapsed: started.elapsed(),
                ok,
            });
        }
    }

    /// A state is about to wait for `children` child machines.
    pub(super) fn observe_fan_out(&self, state: &StateDef, children: usize) {
        if self.prepared.observers.active() && children > 0 {
            let definition = &self.set.machines[self.machine];
            self.prepared.observers.emit(&RunEvent::FanOutStarted {
                execution: self.execution_ref(definition),
                state: &state.name,
                children,
            });
        }
    }

    /// One child of a fan-out finished.
    pub(super) fn observe_child(&self, state: &StateDef, report: &ChildReport) {
        if self.prepared.observers.active() {
            let definition = &self.set.machines[self.machine];
            self.prepared.observers.emit(&RunEvent::ChildFinished {
                execution: self.execution_ref(definition),
                state: &state.name,
                child_execution_id: &report.execution_id,
                error: report.result.as_ref().err(),
            });
        }
    }

    /// The children of a fan-out, each telling the observers when it finishes (while its
    /// siblings still run, which is what a progress display needs).
    pub(super) fn observe_children<T>(
        &self,
        state: &StateDef,
        handles: Vec<T>,
    ) -> Vec<impl Future<Output = Result<ChildReport, JoinError>> + use<T>>
    where
        T: Future<Output = Result<ChildReport, JoinError>>,
    {
        let observers = self.prepared.observers.clone();
        let execution_id: Arc<str> = Arc::from(self.id.as_str());
        let parent_execution_id: Option<Arc<str>> = self.parent_id.as_deref().map(Arc::from);
        let machine: Arc<str> = Arc::from(self.set.machines[self.machine].name.as_str());
        let state: Arc<str> = Arc::from(state.name.as_str());
        handles
            .into_iter()
            .map(|handle| {
                let observers = observers.clone();
                let execution_id = Arc::clone(&execution_id);
                let parent_execution_id = parent_execution_id.clone();
                let machine = Arc::clone(&machine);
                let state = Arc::clone(&state);
                handle.inspect(move |report| {
                    if !observers.active() {
                        return;
                    }
                    let abnormal;
                    let (child_execution_id, error) = match report {
                        Ok(report) => (report.execution_id.as_str(), report.result.as_ref().err()),
                        Err(e) => {
                            abnormal = StateError {
                                error_type: crate::error_types::INTERNAL.to_owned(),
                                message: format!("the child machine's task ended abnormally: {e}"),
                            };
                            ("", Some(&abnormal))
                        }
                    };
                    observers.emit(&RunEvent::ChildFinished {
                        execution: ExecutionRef {
                            execution_id: &execution_id,
                            parent_execution_id: parent_execution_id.as_deref(),
                            machine: &machine,
                        },
                        state: &state,
                        child_execution_id,
                        error,
                    });
                })
            })
            .collect()
    }
}
