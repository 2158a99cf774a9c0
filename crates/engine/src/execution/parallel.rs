//! The `parallel` execution type.

use async_trait::async_trait;
use futures::future::join_all;
use serde_json::{Map, Value};

use flatmachines_core::config::ExecutionConfig;
use flatmachines_core::{AgentError, AgentExecutor, AgentResult, ExecutionType, JsonMap};

use super::{cost_of, usage_of};

/// Calls the agent `n_samples` times at once; the output is `{results, count}` of the calls
/// that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParallelExecution {
    /// How many calls to make.
    pub n_samples: u32,
}

impl ParallelExecution {
    /// Most samples one state may ask for.
    pub const MAX_SAMPLES: u32 = 256;

    /// Reads `n_samples` (default 3).
    pub fn from_config(config: &ExecutionConfig) -> Result<Self, String> {
        let n_samples = config.n_samples.unwrap_or(3);
        if n_samples == 0 || n_samples > Self::MAX_SAMPLES {
            return Err(format!(
                "n_samples must be between 1 and {}, found {n_samples}",
                Self::MAX_SAMPLES
            ));
        }
        Ok(ParallelExecution { n_samples })
    }
}

#[async_trait]
impl ExecutionType for ParallelExecution {
    async fn execute(
        &self,
        executor: &dyn AgentExecutor,
        input: &JsonMap,
        context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        let calls = (0..self.n_samples).map(|_| executor.execute(input, context));
        let results = join_all(calls).await;
        let successes: Vec<AgentResult> = results
            .into_iter()
            .filter_map(|result| match result {
                Ok(result) => Some(result),
                Err(error) => {
                    tracing::warn!(error = %error, "parallel sample failed");
                    None
                }
            })
            .collect();
        if successes.is_empty() {
            return Ok(AgentResult::default());
        }
        let api_calls = successes.iter().map(AgentResult::api_calls).sum();
        let cost = successes.iter().map(AgentResult::total_cost).sum();
        let payloads: Vec<Value> = successes
            .iter()
            .map(|r| Value::Object(r.output_payload()))
            .collect();
        let count = payloads.len();
        let mut output = Map::new();
        output.insert("results".into(), Value::Array(payloads));
        output.insert("count".into(), Value::from(count));
        Ok(AgentResult {
            output: Some(output),
            usage: usage_of(api_calls),
            cost: cost_of(cost),
            ..AgentResult::default()
        })
    }
}
