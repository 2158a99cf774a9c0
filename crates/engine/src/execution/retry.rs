//! The `retry` execution type.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use flatmachines_core::config::ExecutionConfig;
use flatmachines_core::{AgentError, AgentExecutor, AgentResult, ExecutionType, JsonMap};

use super::{cost_of, usage_of};

/// Retries failed calls after each backoff, then reports the last error as the output.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryExecution {
    /// Seconds to wait before each retry; one attempt more than there are backoffs.
    pub backoffs: Vec<f64>,
    /// Each wait varies randomly by up to this fraction either way.
    pub jitter: f64,
    /// Treat an empty output as a failure.
    pub retry_on_empty: bool,
}

impl RetryExecution {
    /// The reference's default backoffs: 2 + 8 + 16 + 35 = 61 s, long enough for a fresh
    /// requests-per-minute window.
    pub const DEFAULT_BACKOFFS: [f64; 4] = [2.0, 8.0, 16.0, 35.0];

    /// Reads `backoffs`, `jitter` (default 0.1) and `retry_on_empty`.
    pub fn from_config(config: &ExecutionConfig) -> Result<Self, String> {
        let backoffs = config
            .backoffs
            .clone()
            .unwrap_or_else(|| Self::DEFAULT_BACKOFFS.to_vec());
        if let Some(bad) = backoffs.iter().find(|b| !b.is_finite() || **b < 0.0) {
            return Err(format!("backoffs must be seconds ≥ 0, found {bad}"));
        }
        let jitter = config.jitter.unwrap_or(0.1);
        if !(0.0..=1.0).contains(&jitter) {
            return Err(format!("jitter must be between 0 and 1, found {jitter}"));
        }
        Ok(RetryExecution {
            backoffs,
            jitter,
            retry_on_empty: config.retry_on_empty.unwrap_or(false),
        })
    }

    fn delay(&self, backoff: f64) -> Duration {
        let spread = backoff * self.jitter;
        let seconds = backoff + (fastrand::f64() * 2.0 - 1.0) * spread;
        Duration::from_secs_f64(seconds.max(0.0))
    }
}

/// The longest `Retry-After` honoured; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait a failed call's `Retry-After` header asks for: seconds, or an HTTP date.
fn retry_after(error: &AgentError) -> Option<Duration> {
    let value = error.headers.get("retry-after")?.trim();
    let wait = match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Duration::from_secs_f64(seconds),
        Ok(_) => return None,
        Err(_) => {
            let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[async_trait]
impl ExecutionType for RetryExecution {
    async fn execute(
        &self,
        executor: &dyn AgentExecutor,
        input: &JsonMap,
        context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        let attempts = self.backoffs.len() + 1;
        let mut api_calls = 0;
        let mut cost = 0.0;
        let mut last_error = None;
        for attempt in 0..attempts {
            match executor.execute(input, context).await {
                Ok(mut result) => {
                    api_calls += result.api_calls();
                    cost += result.total_cost();
                    if self.retry_on_empty && result.output_payload().is_empty() {
                        last_error = Some(
                            AgentError::new("empty response from agent")
                                .with_type(crate::error_types::INVALID_VALUE),
                        );
                    } else {
                        let mut usage = result.usage.take().unwrap_or_default();
                        if api_calls > 0 {
                            usage.insert("api_calls".into(), Value::from(api_calls));
                        }
                        result.usage = (!usage.is_empty()).then_some(usage);
                        result.cost = cost_of(cost).or(result.cost);
                        return Ok(result);
                    }
                }
                Err(error) => last_error = Some(error),
            }
            if let Some(error) = &last_error {
                tracing::warn!(attempt = attempt + 1, attempts, error = %error, "agent call failed");
            }
            if let Some(backoff) = self.backoffs.get(attempt) {
                if let Some(error) = &last_error {
                    crate::observe::report_retry(attempt as u64 + 1, &error.error_type);
                }
                // Never sooner than the server asked.
                let asked = last_error
                    .as_ref()
                    .and_then(retry_after)
                    .unwrap_or_default();
                tokio::time::sleep(self.delay(*backoff).max(asked)).await;
            }
        }
        let error = last_error.unwrap_or_else(|| AgentError::new("agent call failed"));
        let mut payload = Map::new();
        payload.insert("_error".into(), Value::String(error.message.clone()));
        payload.insert(
            "_error_type".into(),
            Value::String(error.error_type.clone()),
        );
        if let Some(status) = error.status_code {
            payload.insert("_error_status_code".into(), Value::from(status));
        }
        if !error.headers.is_empty() {
            let headers = error
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            payload.insert("_error_headers".into(), Value::Object(headers));
        }
        Ok(AgentResult {
            output: Some(payload),
            usage: usage_of(api_calls),
            cost: cost_of(cost),
            ..AgentResult::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let error = |value: &str| AgentError::new("busy").with_header("Retry-After", value);
        assert_eq!(retry_after(&error("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&error("1.5")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after(&error("-3")), None);
        assert_eq!(retry_after(&error("soon")), None);
        assert_eq!(retry_after(&error("99999999")), Some(MAX_RETRY_AFTER));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = retry_after(&error(&later)).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(retry_after(&AgentError::new("no header")), None);
    }
}
