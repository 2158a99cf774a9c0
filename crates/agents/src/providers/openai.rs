//! OpenAI's chat-completions API, as OpenAI and its compatibles speak it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use flatmachines_core::{AgentError, AgentToolCall, JsonMap};

use super::sse::SseEvent;
use super::{ChatRequest, Completion, StreamState, Usage, count, event_json};
use crate::error::error_types;
use crate::http::{Target, embedded_error};
use crate::settings::ModelSettings;

/// The request body.
pub(super) fn body(settings: &ModelSettings, request: &ChatRequest<'_>) -> Value {
    let preset = settings.preset;
    let mut body = JsonMap::new();
    body.insert("model".into(), Value::from(settings.model.as_str()));
    body.insert(
        "messages".into(),
        serde_json::to_value(request.messages).unwrap_or(Value::Array(Vec::new())),
    );
    body.insert(
        "temperature".into(),
        Value::from(request.temperature.unwrap_or(settings.temperature)),
    );
    if let Some(max_tokens) = request.max_tokens.or(settings.max_tokens) {
        // OpenAI's own API replaced `max_tokens` (which its reasoning models refuse);
        // compatible servers still read the old name.
        let field = if preset.name == "openai"
            && settings.endpoint.starts_with("https://api.openai.com/")
        {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(field.into(), Value::from(max_tokens));
    }
    let mut optional = |key: &str, value: Option<Value>, accepted: bool| {
        if let Some(value) = value.filter(|_| accepted) {
            body.insert(key.into(), value);
        }
    };
    optional("top_p", settings.top_p.map(Value::from), true);
    optional("top_k", settings.top_k.map(Value::from), preset.top_k);
    optional(
        "frequency_penalty",
        settings.frequency_penalty.map(Value::from),
        preset.penalties,
    );
    optional(
        "presence_penalty",
        settings.presence_penalty.map(Value::from),
        preset.penalties,
    );
    optional("seed", settings.seed.map(Value::from), preset.seed);
    if request.json && settings.json_mode && request.tools.is_none() {
        body.insert("response_format".into(), json!({"type": "json_object"}));
    }
    if let Some(tools) = request.tools {
        body.insert(
            "tools".into(),
            serde_json::to_value(tools).unwrap_or(Value::Array(Vec::new())),
        );
        if request.answer_only {
            body.insert("tool_choice".into(), Value::from("none"));
        }
    }
    if settings.stream {
        body.insert("stream".into(), Value::Bool(true));
        body.insert(
            "stream_options".into(),
            settings
                .stream_options
                .clone()
                .unwrap_or_else(|| json!({"include_usage": true})),
        );
    }
    for (key, value) in &settings.extra_body {
        body.insert(key.clone(), value.clone());
    }
    Value::Object(body)
}

/// Reads a (non-streamed) response body.
pub(super) fn parse(raw: Value, target: Target<'_>) -> Result<Completion, AgentError> {
    let choice = raw
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first());
    let Some(choice) = choice else {
        if let Some(error) = raw.get("error").filter(|e| e.is_object()) {
            return Err(embedded_error(target, error));
        }
        return Err(target.error(
            error_types::INVALID_RESPONSE,
            "the response has no `choices[0]` (expected a chat completion)",
        ));
    };
    let message = choice.get("message").unwrap_or(&Value::Null);
    let content = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        // Some servers send content parts: [{type: text, text}, ...].
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect(),
        // No text, for example when the model only called tools.
        None | Some(Value::Null) if message.is_object() => String::new(),
        _ => {
            return Err(target.error(
                error_types::INVALID_RESPONSE,
                "`choices[0].message.content` is missing or not text",
            ));
        }
    };
    let tool_calls = tool_calls_of(message, target)?;
    let usage = raw.get("usage").map(usage_of).unwrap_or_default();
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Completion {
        content,
        raw,
        usage,
        finish_reason,
        tool_calls,
    })
}

/// `message.tool_calls`: `[{id, type: function, function: {name, arguments}}]`, arguments as
/// JSON text.
fn tool_calls_of(message: &Value, target: Target<'_>) -> Result<Vec<AgentToolCall>, AgentError> {
    let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(calls) = calls.as_array() else {
        return Err(target.error(
            error_types::INVALID_RESPONSE,
            "`choices[0].message.tool_calls` is not a list",
        ));
    };
    calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let function = call.get("function").unwrap_or(&Value::Null);
            let name = function.get("name").and_then(Value::as_str).ok_or_else(|| {
                target.error(
                    error_types::INVALID_RESPONSE,
                    format!("tool call {index} of `choices[0].message.tool_calls` has no `function.name`"),
                )
            })?;
            Ok(AgentToolCall {
                id: call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("call_{index}"), str::to_owned),
                name: name.to_owned(),
                arguments: super::call_arguments(function.get("arguments")),
            })
        })
        .collect()
}

fn usage_of(usage: &Value) -> Usage {
    let prompt_tokens = count(usage, "prompt_tokens");
    let completion_tokens = count(usage, "completion_tokens");
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: usage
            .get("total_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(prompt_tokens + completion_tokens),
        reported_cost: usage.get("cost").and_then(Value::as_f64),
    }
}

/// A streamed answer being put together.
#[derive(Debug, Default)]
pub(super) struct Stream {
    seen: bool,
    id: Option<Value>,
    model: Option<Value>,
    content: String,
    finish_reason: Option<String>,
    usage: Option<Value>,
    /// Tool calls by index: id, name, argument fragments.
    tool_calls: BTreeMap<u64, (Value, String, String)>,
}

impl StreamState for Stream {
    fn event(&mut self, event: &SseEvent, target: Target<'_>) -> Result<bool, AgentError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk = event_json(event, target)?;
        if let Some(error) = chunk.get("error").filter(|e| e.is_object()) {
            return Err(embedded_error(target, error));
        }
        self.seen = true;
        for (slot, key) in [(&mut self.id, "id"), (&mut self.model, "model")] {
            if slot.is_none() {
                *slot = chunk.get(key).cloned();
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Ok(false);
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.content.push_str(text);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let entry = self
                .tool_calls
                .entry(index)
                .or_insert_with(|| (Value::Null, String::new(), String::new()));
            if let Some(id) = call.get("id").filter(|id| !id.is_null()) {
                entry.0 = id.clone();
            }
            let function = call.get("function").unwrap_or(&Value::Null);
            if let Some(name) = function.get("name").and_then(Value::as_str) {
                entry.1.push_str(name);
            }
            if let Some(arguments) = function.get("arguments").and_then(Value::as_str) {
                entry.2.push_str(arguments);
            }
        }
        Ok(false)
    }

    fn finish(self, target: Target<'_>) -> Result<Completion, AgentError> {
        if !self.seen {
            return Err(target.error(
                error_types::INVALID_RESPONSE,
                "the stream ended before any chunk arrived",
            ));
        }
        let mut message = JsonMap::new();
        message.insert("role".into(), Value::from("assistant"));
        message.insert("content".into(), Value::String(self.content));
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self
                .tool_calls
                .into_values()
                .map(|(id, name, arguments)| {
                    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
                })
                .collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut raw = JsonMap::new();
        raw.insert("id".into(), self.id.unwrap_or(Value::Null));
        raw.insert("object".into(), Value::from("chat.completion"));
        raw.insert("model".into(), self.model.unwrap_or(Value::Null));
        raw.insert(
            "choices".into(),
            json!([{"index": 0, "message": message, "finish_reason": self.finish_reason}]),
        );
        if let Some(usage) = self.usage {
            raw.insert("usage".into(), usage);
        }
        parse(Value::Object(raw), target)
    }
}
