//! What a whole run tree may spend on agents: `max_agent_calls` and `max_cost`, counted over
//! the root and every child machine it runs in this process, and kept across a resume.
//!
//! Every agent call (a plain call, or one model turn of a tool loop) first reserves one call.
//! The reservation is refused once the calls made reach `max_agent_calls`, or the cost the
//! agents reported reaches `max_cost`; the first refusal is kept, and the root's run fails
//! with it whatever the machines do about the error. Calls running in parallel each hold a
//! reservation, so the call bound is exact; the cost of calls already under way when the
//! bound is reached is added when they answer.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use flatmachines_core::StateError;

use crate::error::{error_types, state_error};

/// Bounds on what a run tree may spend on agents (`RunOptions::budget`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    /// Agent calls the whole tree may make (`flatmachines run --max-agent-calls`). A call
    /// counts what its agent reports in `usage.api_calls`, and at least 1.
    pub max_agent_calls: Option<u64>,
    /// Cost the agents of the whole tree may report (`--max-cost`), in the providers' unit
    /// (usually US dollars). No call starts once it is reached.
    pub max_cost: Option<f64>,
}

impl Budget {
    /// Whether neither bound is set.
    pub fn is_unbounded(&self) -> bool {
        self.max_agent_calls.is_none() && self.max_cost.is_none()
    }
}

/// One run tree's spending against its [`Budget`].
#[derive(Debug, Default)]
pub(crate) struct TreeBudget {
    limits: Budget,
    calls: AtomicU64,
    cost: Mutex<f64>,
    /// The first refusal, which ends the run.
    spent: Mutex<Option<StateError>>,
}

impl TreeBudget {
    pub(crate) fn new(limits: Budget) -> Self {
        TreeBudget {
            limits,
            ..TreeBudget::default()
        }
    }

    /// Counts what a resumed execution had spent before the interruption (its snapshot's
    /// `total_api_calls` and `total_cost`).
    pub(crate) fn restore(&self, calls: u64, cost: f64) {
        self.calls.fetch_add(calls, Ordering::SeqCst);
        *self.cost.lock().unwrap_or_else(PoisonError::into_inner) += cost;
    }

    /// Reserves one call for agent `agent` of state `state`, or says which bound refuses it.
    pub(crate) fn reserve(&self, agent: &str, state: &str) -> Result<(), StateError> {
        if self.limits.is_unbounded() {
            return Ok(());
        }
        if let Some(error) = self.refusal() {
            return Err(error);
        }
        if let Some(limit) = self.limits.max_cost {
            let cost = *self.cost.lock().unwrap_or_else(PoisonError::into_inner);
            if cost >= limit {
                return Err(self.refuse(state_error(
                    error_types::COST_LIMIT,
                    format!(
                        "the run's agents reported a cost of {cost}, which reaches its max_cost budget of {limit}; agent `{agent}` of state `{state}` was not called (resume with a higher max_cost to go on)"
                    ),
                )));
            }
        }
        if let Some(limit) = self.limits.max_agent_calls {
            let reserved = self
                .calls
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |made| {
                    (made < limit).then_some(made + 1)
                });
            if let Err(made) = reserved {
                return Err(self.refuse(state_error(
                    error_types::AGENT_CALL_LIMIT,
                    format!(
                        "the run has made {made} agent calls, its max_agent_calls budget of {limit}; agent `{agent}` of state `{state}` was not called (resume with a higher max_agent_calls to go on)"
                    ),
                )));
            }
        }
        Ok(())
    }

    /// Counts a call that had reserved its place: the API calls its agent reported beyond
    /// the one reserved, and its cost.
    pub(crate) fn spend(&self, api_calls: u64, cost: f64) {
        if self.limits.is_unbounded() {
            return;
        }
        if api_calls > 1 {
            self.calls.fetch_add(api_calls - 1, Ordering::SeqCst);
        }
        if cost.is_finite() && cost > 0.0 {
            *self.cost.lock().unwrap_or_else(PoisonError::into_inner) += cost;
        }
    }

    /// The refusal that ended the run, if a bound was reached.
    pub(crate) fn refusal(&self) -> Option<StateError> {
        self.spent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn refuse(&self, error: StateError) -> StateError {
        let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        spent.get_or_insert_with(|| error.clone()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_bound_is_exact_under_contention() {
        let budget = std::sync::Arc::new(TreeBudget::new(Budget {
            max_agent_calls: Some(5),
            max_cost: None,
        }));
        let granted = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = std::sync::Arc::clone(&budget);
                let granted = std::sync::Arc::clone(&granted);
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        if budget.reserve("a", "s").is_ok() {
                            granted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(granted.load(Ordering::SeqCst), 5);
        let error = budget.refusal().unwrap();
        assert_eq!(error.error_type, error_types::AGENT_CALL_LIMIT);
        assert!(error.message.contains("budget of 5"), "{}", error.message);
    }

    #[test]
    fn the_cost_bound_stops_the_call_after_the_one_that_reached_it() {
        let budget = TreeBudget::new(Budget {
            max_agent_calls: None,
            max_cost: Some(0.025),
        });
        let mut made = 0;
        while budget.reserve("a", "s").is_ok() {
            made += 1;
            budget.spend(1, 0.01);
        }
        assert_eq!(made, 3);
        assert_eq!(
            budget.refusal().unwrap().error_type,
            error_types::COST_LIMIT
        );
    }

    #[test]
    fn a_resumed_tree_counts_what_it_had_spent() {
        let budget = TreeBudget::new(Budget {
            max_agent_calls: Some(7),
            max_cost: None,
        });
        budget.restore(5, 0.0);
        assert!(budget.reserve("a", "s").is_ok());
        assert!(budget.reserve("a", "s").is_ok());
        assert!(budget.reserve("a", "s").is_err());
    }
}
