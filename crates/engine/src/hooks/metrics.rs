//! `MetricsHooks`: counts of states, transitions and errors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use flatmachines_core::hooks::HookError;
use flatmachines_core::{Context, MachineHooks, StateError};

/// What [`MetricsHooks`] counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// Entries per state.
    pub state_counts: BTreeMap<String, u64>,
    /// Transitions per `from->to`.
    pub transition_counts: BTreeMap<String, u64>,
    /// States entered.
    pub total_states_executed: u64,
    /// Errors seen by `on_error`.
    pub error_count: u64,
}

/// Counts states, transitions and errors. Clones share their counts, so keep one to read
/// [`MetricsHooks::metrics`] after a run.
#[derive(Debug, Clone, Default)]
pub struct MetricsHooks {
    metrics: Arc<Mutex<Metrics>>,
    log_at_end: bool,
}

impl MetricsHooks {
    /// Counts without logging.
    pub fn new() -> Self {
        MetricsHooks::default()
    }

    /// Counts and logs the counts when the machine ends (the YAML form, whose counts no code
    /// could read otherwise).
    pub fn logging_at_end() -> Self {
        MetricsHooks {
            metrics: Arc::default(),
            log_at_end: true,
        }
    }

    /// The counts so far.
    pub fn metrics(&self) -> Metrics {
        self.update(|m| m.clone())
    }

    fn update<T>(&self, f: impl FnOnce(&mut Metrics) -> T) -> T {
        let mut guard = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

#[async_trait]
impl MachineHooks for MetricsHooks {
    async fn on_machine_end(
        &self,
        _context: &mut Context,
        _output: &mut Value,
    ) -> Result<(), HookError> {
        if self.log_at_end {
            let metrics = serde_json::to_string(&self.metrics()).unwrap_or_default();
            tracing::info!(target: "flatmachines::hooks", metrics = %metrics, "machine metrics");
        }
        Ok(())
    }

    async fn on_state_enter(&self, state: &str, _context: &mut Context) -> Result<(), HookError> {
        self.update(|m| {
            *m.state_counts.entry(state.to_owned()).or_default() += 1;
            m.total_states_executed += 1;
        });
        Ok(())
    }

    async fn on_transition(
        &self,
        from: &str,
        to: &str,
        _context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        self.update(|m| {
            *m.transition_counts
                .entry(format!("{from}->{to}"))
                .or_default() += 1
        });
        Ok(None)
    }

    async fn on_error(
        &self,
        _state: &str,
        _error: &StateError,
        _context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        self.update(|m| m.error_count += 1);
        Ok(None)
    }
}
