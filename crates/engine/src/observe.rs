//! The run observers registered with a runtime, and the scope that lets execution types report
//! retries of the agent call they run in.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use flatmachines_core::RunObserver;
use flatmachines_core::observe::{ExecutionRef, RunEvent};

/// The observers of a runtime; emitting to none costs one branch.
#[derive(Clone, Default)]
pub(crate) struct Observers(Arc<[Arc<dyn RunObserver>]>);

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Observers {
    pub(crate) fn new(observers: Vec<Arc<dyn RunObserver>>) -> Self {
        Observers(observers.into())
    }

    /// Whether any observer listens, so callers can skip building costly events.
    pub(crate) fn active(&self) -> bool {
        !self.0.is_empty()
    }

    pub(crate) fn emit(&self, event: &RunEvent<'_>) {
        for observer in self.0.iter() {
            observer.on_event(event);
        }
    }
}

/// The agent call an execution type runs in: who to tell about its retries.
#[derive(Debug, Clone)]
pub(crate) struct AgentCallScope {
    pub(crate) observers: Observers,
    pub(crate) execution_id: Arc<str>,
    pub(crate) parent_execution_id: Option<Arc<str>>,
    pub(crate) machine: Arc<str>,
    pub(crate) state: Arc<str>,
    pub(crate) agent: Arc<str>,
}

tokio::task_local! {
    static AGENT_CALL: AgentCallScope;
}

/// Runs `call` so that [`report_retry`] inside it reaches `scope`'s observers. Execution
/// types poll their attempts inside the state's own task, so a task-local reaches them
/// without widening the `ExecutionType` trait.
pub(crate) async fn within_agent_call<F: Future>(
    scope: Option<AgentCallScope>,
    call: F,
) -> F::Output {
    match scope {
        Some(scope) => AGENT_CALL.scope(scope, call).await,
        None => call.await,
    }
}

/// Tells the observers of the current agent call that `attempt` failed with `error_type` and
/// is tried again; does nothing outside an observed agent call.
pub(crate) fn report_retry(attempt: u64, error_type: &str) {
    let _ = AGENT_CALL.try_with(|scope| {
        scope.observers.emit(&RunEvent::AgentRetry {
            execution: ExecutionRef {
                execution_id: &scope.execution_id,
                parent_execution_id: scope.parent_execution_id.as_deref(),
                machine: &scope.machine,
            },
            state: &scope.state,
            agent: &scope.agent,
            attempt,
            error_type,
        });
    });
}
