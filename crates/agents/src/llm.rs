//! [`LlmClient`]: the core [`LlmBackend`] trait over the same provider clients agents use.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde_json::Value;

use flatmachines_core::AgentError;
use flatmachines_core::config::ModelConfig;
use flatmachines_core::llm::{LlmBackend, LlmOptions, Message};

use crate::error::ModelError;
use crate::providers::{ChatRequest, Completion, ProviderClient};
use crate::secret::KeySource;
use crate::settings::ModelSettings;

/// Calls one model with caller-built messages, counting calls and cost.
///
/// `options.response_format` of `{"type": "json_object"}` turns on JSON mode for
/// OpenAI-compatible providers; Anthropic has no such switch, so ask for JSON in the messages.
#[derive(Debug)]
pub struct LlmClient {
    client: ProviderClient,
    calls: AtomicU64,
    cost: Mutex<f64>,
}

impl LlmClient {
    /// A client for a resolved model config (see `resolve_model`), reading its key through
    /// `keys`.
    pub fn new(model: &ModelConfig, keys: &KeySource) -> Result<LlmClient, ModelError> {
        let settings = ModelSettings::from_config(model)?;
        Ok(LlmClient {
            client: ProviderClient::new(settings, keys)?,
            calls: AtomicU64::new(0),
            cost: Mutex::new(0.0),
        })
    }

    /// The model settings.
    pub fn settings(&self) -> &ModelSettings {
        self.client.settings()
    }

    async fn complete(
        &self,
        messages: &[Message],
        options: &LlmOptions,
    ) -> Result<Completion, AgentError> {
        let json = options
            .response_format
            .as_ref()
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str)
            == Some("json_object");
        let request = ChatRequest {
            temperature: options.temperature,
            max_tokens: options.max_tokens.map(u64::from),
            tools: options.tools.as_deref(),
            ..ChatRequest::new(messages, json)
        };
        let completion = self.client.complete(&request).await?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let usage = completion.usage;
        let cost = self
            .settings()
            .priced_cost(usage.prompt_tokens, usage.completion_tokens)
            .or(usage.reported_cost);
        if let Some(cost) = cost {
            // A poisoned lock only means another caller panicked mid-add; the number is fine.
            let mut total = self.cost.lock().unwrap_or_else(|e| e.into_inner());
            *total += cost;
        }
        Ok(completion)
    }
}

#[async_trait]
impl LlmBackend for LlmClient {
    async fn call(&self, messages: &[Message], options: &LlmOptions) -> Result<String, AgentError> {
        Ok(self.complete(messages, options).await?.content)
    }

    async fn call_raw(
        &self,
        messages: &[Message],
        options: &LlmOptions,
    ) -> Result<Value, AgentError> {
        Ok(self.complete(messages, options).await?.raw)
    }

    fn total_api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn total_cost(&self) -> f64 {
        *self.cost.lock().unwrap_or_else(|e| e.into_inner())
    }
}
