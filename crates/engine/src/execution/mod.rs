//! Execution types: how a state calls its agent.
//!
//! - `default`: one call.
//! - `retry`: retries failures after each of `backoffs` (seconds, ±`jitter`); when every
//!   attempt fails, the output is an error payload (`_error`, `_error_type`, and
//!   `_error_status_code` / `_error_headers` when known) rather than a failure of the state.
//! - `parallel`: `n_samples` concurrent calls; output `{results, count}` of the successes.
//! - `mdap_voting`: samples until one answer leads by `k_margin` votes (first-to-ahead-by-k),
//!   at most `max_candidates` samples, discarding red-flagged answers.

mod mdap;
mod parallel;
mod retry;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use flatmachines_core::config::ExecutionConfig;
use flatmachines_core::{AgentError, AgentExecutor, AgentResult, ExecutionType, JsonMap};

pub use mdap::MdapVoting;
pub use parallel::ParallelExecution;
pub use retry::RetryExecution;

/// Builds an execution type from a state's `execution:` config.
pub type ExecutionTypeFactory =
    Arc<dyn Fn(&ExecutionConfig) -> Result<Arc<dyn ExecutionType>, String> + Send + Sync>;

/// One call, no retry.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultExecution;

#[async_trait]
impl ExecutionType for DefaultExecution {
    async fn execute(
        &self,
        executor: &dyn AgentExecutor,
        input: &JsonMap,
        context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        executor.execute(input, context).await
    }
}

/// Execution types by name: the four built-ins plus any registered ones.
#[derive(Clone)]
pub struct ExecutionTypes {
    factories: HashMap<String, ExecutionTypeFactory>,
}

impl fmt::Debug for ExecutionTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.factories.keys().collect();
        names.sort();
        f.debug_struct("ExecutionTypes")
            .field("names", &names)
            .finish()
    }
}

impl Default for ExecutionTypes {
    fn default() -> Self {
        let mut types = ExecutionTypes {
            factories: HashMap::new(),
        };
        types.register("default", |_| Ok(Arc::new(DefaultExecution)));
        types.register("retry", |config| {
            Ok(Arc::new(RetryExecution::from_config(config)?))
        });
        types.register("parallel", |config| {
            Ok(Arc::new(ParallelExecution::from_config(config)?))
        });
        types.register("mdap_voting", |config| {
            Ok(Arc::new(MdapVoting::from_config(config)?))
        });
        types
    }
}

impl ExecutionTypes {
    /// Registers (or replaces) the execution type `name`.
    pub fn register<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&ExecutionConfig) -> Result<Arc<dyn ExecutionType>, String> + Send + Sync + 'static,
    {
        self.factories.insert(name.to_owned(), Arc::new(factory));
    }

    /// Builds the execution type a config asks for.
    pub fn build(&self, config: &ExecutionConfig) -> Result<Arc<dyn ExecutionType>, String> {
        match self.factories.get(&config.kind) {
            Some(factory) => factory(config),
            None => {
                let mut names: Vec<&str> = self.factories.keys().map(String::as_str).collect();
                names.sort_unstable();
                Err(format!(
                    "unknown execution type `{}` (known: {})",
                    config.kind,
                    names.join(", ")
                ))
            }
        }
    }
}

/// `{"api_calls": n}` when there were calls, as the reference reports combined usage.
fn usage_of(api_calls: u64) -> Option<JsonMap> {
    (api_calls > 0).then(|| {
        let mut usage = Map::new();
        usage.insert("api_calls".into(), Value::from(api_calls));
        usage
    })
}

/// `Some(cost)` when it is not zero.
fn cost_of(cost: f64) -> Option<f64> {
    (cost != 0.0).then_some(cost)
}
