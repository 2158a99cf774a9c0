//! Provider calls: one [`ProviderClient`] per agent, speaking OpenAI's chat-completions API or
//! Anthropic's Messages API, with or without streaming.

mod anthropic;
mod openai;
pub mod presets;
mod sse;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use flatmachines_core::llm::{Message, ToolDefinition};
use flatmachines_core::{AgentError, AgentToolCall, JsonMap};

use crate::error::{ModelError, error_types};
use crate::http::{self, Target};
use crate::secret::{ApiKey, KeySource};
use crate::settings::ModelSettings;
use presets::ApiShape;
use sse::{SseEvent, SseParser};

/// What one call asks for beyond the model settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChatRequest<'a> {
    pub(crate) messages: &'a [Message],
    /// The agent wants a JSON object (it has an output schema).
    pub(crate) json: bool,
    /// Overrides the configured temperature.
    pub(crate) temperature: Option<f64>,
    /// Overrides the configured `max_tokens`.
    pub(crate) max_tokens: Option<u64>,
    pub(crate) tools: Option<&'a [ToolDefinition]>,
    /// The tools are there for the conversation's sake (it holds calls to them), but the
    /// model must answer in text (`tool_choice: none`).
    pub(crate) answer_only: bool,
}

impl<'a> ChatRequest<'a> {
    pub(crate) fn new(messages: &'a [Message], json: bool) -> ChatRequest<'a> {
        ChatRequest {
            messages,
            json,
            temperature: None,
            max_tokens: None,
            tools: None,
            answer_only: false,
        }
    }
}

/// Token counts and the cost a provider reported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
    /// `usage.cost`, as OpenRouter reports it.
    pub(crate) reported_cost: Option<f64>,
}

/// A provider's answer, streamed or not.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Completion {
    pub(crate) content: String,
    /// The response body; for a stream, the equivalent non-streamed body.
    pub(crate) raw: Value,
    pub(crate) usage: Usage,
    pub(crate) finish_reason: Option<String>,
    /// The tools the model asked to call, in order.
    pub(crate) tool_calls: Vec<AgentToolCall>,
}

/// A call's arguments as the provider sent them: a JSON text (OpenAI) or an object
/// (Anthropic). Text that is not JSON is kept as `{"_raw": text}`, for the tool to refuse.
pub(crate) fn call_arguments(arguments: Option<&Value>) -> Value {
    match arguments {
        None | Some(Value::Null) => Value::Object(JsonMap::new()),
        Some(Value::String(text)) if text.trim().is_empty() => Value::Object(JsonMap::new()),
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_else(|_| {
            let mut raw = JsonMap::new();
            raw.insert("_raw".into(), Value::String(text.clone()));
            Value::Object(raw)
        }),
        Some(other) => other.clone(),
    }
}

/// Folds a stream's events into a [`Completion`].
trait StreamState: Default + Send {
    /// Takes one event; `Ok(true)` once the stream says it is complete.
    fn event(&mut self, event: &SseEvent, target: Target<'_>) -> Result<bool, AgentError>;
    /// The answer the events add up to.
    fn finish(self, target: Target<'_>) -> Result<Completion, AgentError>;
}

/// Calls one model. Holds the key; its `Debug` does not show it.
pub(crate) struct ProviderClient {
    settings: ModelSettings,
    http: reqwest::Client,
    key: Option<ApiKey>,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient")
            .field("provider", &self.settings.preset.name)
            .field("model", &self.settings.model)
            .field("endpoint", &self.settings.endpoint)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ProviderClient {
    /// Reads the key (failing when its variable is unset) and builds the HTTP client.
    pub(crate) fn new(
        settings: ModelSettings,
        keys: &KeySource,
    ) -> Result<ProviderClient, ModelError> {
        let key = match &settings.api_key_env {
            None => None,
            Some(env) => Some(keys.get(env).ok_or_else(|| ModelError::MissingApiKey {
                provider: settings.preset.name.to_owned(),
                env: env.clone(),
            })?),
        };
        let http = http::client(settings.timeout, settings.connect_timeout)
            .map_err(|message| ModelError::Client { message })?;
        Ok(ProviderClient {
            settings,
            http,
            key,
        })
    }

    pub(crate) fn settings(&self) -> &ModelSettings {
        &self.settings
    }

    fn target(&self) -> Target<'_> {
        Target {
            provider: self.settings.preset.name,
            model: &self.settings.model,
            endpoint: &self.settings.endpoint,
            timeout: self.settings.timeout,
            connect_timeout: self.settings.connect_timeout,
            key: self.key.as_ref(),
        }
    }

    /// The request body this client would send.
    pub(crate) fn body(&self, request: &ChatRequest<'_>) -> Value {
        match self.settings.preset.shape {
            ApiShape::OpenAi => openai::body(&self.settings, request),
            ApiShape::Anthropic => anthropic::body(&self.settings, request),
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let shape = self.settings.preset.shape;
        if let Some(key) = &self.key {
            let (name, value) = match shape {
                ApiShape::OpenAi => ("authorization", format!("Bearer {}", key.expose())),
                ApiShape::Anthropic => ("x-api-key", key.expose().to_owned()),
            };
            // A key with bytes a header cannot hold is left out; the provider then answers 401.
            if let Ok(mut value) = HeaderValue::from_str(&value) {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        if shape == ApiShape::Anthropic
            && let Ok(version) = HeaderValue::from_str(&self.settings.anthropic_version)
        {
            headers.insert("anthropic-version", version);
        }
        headers
    }

    /// Sends the request and returns the answer, aggregating a stream when one comes back.
    pub(crate) async fn complete(
        &self,
        request: &ChatRequest<'_>,
    ) -> Result<Completion, AgentError> {
        let target = self.target();
        let body = self.body(request);
        let response = http::post(&self.http, target, self.headers(), &body).await?;
        let streamed = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let shape = self.settings.preset.shape;
        if streamed {
            return match shape {
                ApiShape::OpenAi => drain::<openai::Stream>(response, target).await,
                ApiShape::Anthropic => drain::<anthropic::Stream>(response, target).await,
            };
        }
        // Servers that ignore `stream: true` answer with a plain body, which is fine.
        let body = http::read_body(response, target).await?;
        let raw = http::parse_json(&body, target)?;
        match shape {
            ApiShape::OpenAi => openai::parse(raw, target),
            ApiShape::Anthropic => anthropic::parse(raw, target),
        }
    }
}

/// Reads a server-sent-events body into a completion.
async fn drain<S: StreamState>(
    mut response: reqwest::Response,
    target: Target<'_>,
) -> Result<Completion, AgentError> {
    let mut parser = SseParser::default();
    let mut state = S::default();
    let mut read = 0usize;
    'read: while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| http::transport_error(target, &e))?
    {
        read += chunk.len();
        if read > http::MAX_BODY_BYTES {
            return Err(target.error(
                error_types::INVALID_RESPONSE,
                format!("the stream is larger than {} bytes", http::MAX_BODY_BYTES),
            ));
        }
        for event in parser.push(&chunk) {
            if state.event(&event, target)? {
                break 'read;
            }
        }
    }
    if let Some(event) = parser.finish() {
        state.event(&event, target)?;
    }
    state.finish(target)
}

/// Parses one event's JSON data.
fn event_json(event: &SseEvent, target: Target<'_>) -> Result<Value, AgentError> {
    serde_json::from_str(&event.data).map_err(|e| {
        target.error(
            error_types::INVALID_RESPONSE,
            format!(
                "a stream event is not valid JSON ({e}): {}",
                crate::error::truncate(&event.data, 200)
            ),
        )
    })
}

/// A non-negative integer field, 0 when absent.
fn count(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn target() -> Target<'static> {
        Target {
            provider: "p",
            model: "m",
            endpoint: "http://127.0.0.1:1",
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            key: None,
        }
    }

    fn feed<S: StreamState>(events: &[&str]) -> Result<Completion, AgentError> {
        let mut state = S::default();
        for data in events {
            let event = SseEvent {
                event: None,
                data: (*data).to_owned(),
            };
            if state.event(&event, target())? {
                break;
            }
        }
        state.finish(target())
    }

    /// Streams are untrusted input: odd shapes are errors or ignored, never panics.
    #[test]
    fn hostile_stream_events_do_not_panic() {
        let hostile = [
            "[]",
            "null",
            "\"text\"",
            r#"{"choices": "x"}"#,
            r#"{"choices": [{"delta": [1]}]}"#,
            r#"{"choices": [{"delta": {"tool_calls": [{"index": -1, "function": 3}]}}]}"#,
            r#"{"type": "message_start", "message": [1, 2]}"#,
            r#"{"type": "content_block_start", "index": 0, "content_block": "text"}"#,
            r#"{"type": "content_block_delta", "index": 0, "delta": {"text": "hi", "partial_json": "{"}}"#,
            r#"{"type": "message_delta", "usage": "many"}"#,
            r#"{"type": "message_start", "message": {"usage": 5}}"#,
            r#"{"type": "message_delta", "usage": {"output_tokens": 3}}"#,
        ];
        for (index, _) in hostile.iter().enumerate() {
            let _ = feed::<openai::Stream>(&hostile[index..]);
            let _ = feed::<anthropic::Stream>(&hostile[index..]);
        }
        let done = feed::<anthropic::Stream>(&hostile[10..]).unwrap();
        assert_eq!(done.usage.completion_tokens, 3);
    }

    #[test]
    fn an_empty_stream_is_an_invalid_response() {
        let error = feed::<openai::Stream>(&["[DONE]"]).unwrap_err();
        assert_eq!(error.error_type, "InvalidResponse");
        let error = feed::<anthropic::Stream>(&[]).unwrap_err();
        assert_eq!(error.error_type, "InvalidResponse");
    }

    #[test]
    fn openai_stream_tool_calls_are_assembled() {
        let done = feed::<openai::Stream>(&[
            r#"{"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "look", "arguments": "{\"q\":"}}]}}]}"#,
            r#"{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}, "finish_reason": "tool_calls"}]}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(done.content, "");
        assert_eq!(
            done.raw["choices"][0]["message"]["tool_calls"],
            json!([{"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{\"q\": 1}"}}])
        );
        assert_eq!(done.finish_reason.as_deref(), Some("tool_calls"));
    }

    proptest! {
        #[test]
        fn arbitrary_event_data_never_panics(data in proptest::collection::vec(".{0,40}", 0..6)) {
            let events: Vec<&str> = data.iter().map(String::as_str).collect();
            let _ = feed::<openai::Stream>(&events);
            let _ = feed::<anthropic::Stream>(&events);
        }
    }
}
