//! Anthropic's Messages API: `system` at the top level, `max_tokens` required, content as
//! blocks, and its own stream events.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use flatmachines_core::llm::{Message, ToolDefinition};
use flatmachines_core::{AgentError, AgentToolCall, JsonMap};

use super::sse::SseEvent;
use super::{ChatRequest, Completion, StreamState, Usage, count, event_json};
use crate::error::error_types;
use crate::http::{Target, embedded_error};
use crate::settings::{DEFAULT_ANTHROPIC_MAX_TOKENS, ModelSettings};

/// The request body. Seed and the penalties are not part of this API and are left out.
pub(super) fn body(settings: &ModelSettings, request: &ChatRequest<'_>) -> Value {
    let (system, messages) = convert_messages(request.messages);
    let mut body = JsonMap::new();
    body.insert("model".into(), Value::from(settings.model.as_str()));
    body.insert(
        "max_tokens".into(),
        Value::from(
            request
                .max_tokens
                .or(settings.max_tokens)
                .unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS),
        ),
    );
    if !system.is_empty() {
        body.insert("system".into(), Value::String(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    body.insert(
        "temperature".into(),
        Value::from(request.temperature.unwrap_or(settings.temperature)),
    );
    if let Some(top_p) = settings.top_p {
        body.insert("top_p".into(), Value::from(top_p));
    }
    if let Some(top_k) = settings.top_k {
        body.insert("top_k".into(), Value::from(top_k));
    }
    if let Some(tools) = request.tools {
        body.insert(
            "tools".into(),
            Value::Array(tools.iter().map(convert_tool).collect()),
        );
        if request.answer_only {
            body.insert("tool_choice".into(), json!({"type": "none"}));
        }
    }
    if settings.stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    for (key, value) in &settings.extra_body {
        body.insert(key.clone(), value.clone());
    }
    Value::Object(body)
}

/// System messages become the top-level `system`; tool calls and results become blocks.
fn convert_messages(messages: &[Message]) -> (String, Vec<Value>) {
    let mut system = Vec::new();
    let mut converted = Vec::new();
    for message in messages {
        match message.role.as_str() {
            "system" => system.push(message.content.as_str()),
            "tool" => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id.clone().unwrap_or_default(),
                    "content": message.content,
                });
                // The results of one turn's calls answer it together: the API wants them as
                // blocks of one user message, not as user messages in a row.
                match converted.last_mut().and_then(tool_results) {
                    Some(blocks) => blocks.push(block),
                    None => converted.push(json!({"role": "user", "content": [block]})),
                }
            }
            role => match &message.tool_calls {
                Some(calls) if !calls.is_empty() => {
                    let mut blocks = Vec::new();
                    if !message.content.is_empty() {
                        blocks.push(json!({"type": "text", "text": message.content}));
                    }
                    for call in calls {
                        let input = serde_json::from_str::<Value>(&call.function.arguments)
                            .unwrap_or_else(|_| json!({}));
                        blocks.push(json!({
                            "type": "tool_use", "id": call.id,
                            "name": call.function.name, "input": input,
                        }));
                    }
                    converted.push(json!({"role": role, "content": blocks}));
                }
                _ => converted.push(json!({"role": role, "content": message.content})),
            },
        }
    }
    let system = system
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    (system, converted)
}

/// The blocks of `message` if it is a user message of tool results only.
fn tool_results(message: &mut Value) -> Option<&mut Vec<Value>> {
    if message.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    let blocks = message.get_mut("content")?.as_array_mut()?;
    blocks
        .iter()
        .all(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .then_some(blocks)
}

fn convert_tool(tool: &ToolDefinition) -> Value {
    let field = |key: &str| tool.function.get(key).cloned();
    json!({
        "name": field("name").unwrap_or(Value::Null),
        "description": field("description").unwrap_or_else(|| Value::from("")),
        "input_schema": field("parameters").unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    })
}

/// Reads a (non-streamed) response body.
pub(super) fn parse(raw: Value, target: Target<'_>) -> Result<Completion, AgentError> {
    if raw.get("type").and_then(Value::as_str) == Some("error") {
        let error = raw.get("error").cloned().unwrap_or(Value::Null);
        return Err(embedded_error(target, &error));
    }
    let Some(blocks) = raw.get("content").and_then(Value::as_array) else {
        return Err(target.error(
            error_types::INVALID_RESPONSE,
            "the response has no `content` list (expected a Messages API message)",
        ));
    };
    let content = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<String>();
    let tool_calls = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .enumerate()
        .map(|(index, block)| {
            let name = block.get("name").and_then(Value::as_str).ok_or_else(|| {
                target.error(
                    error_types::INVALID_RESPONSE,
                    format!("`tool_use` block {index} of `content` has no `name`"),
                )
            })?;
            Ok(AgentToolCall {
                id: block
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("toolu_{index}"), str::to_owned),
                name: name.to_owned(),
                arguments: super::call_arguments(block.get("input")),
            })
        })
        .collect::<Result<Vec<_>, AgentError>>()?;
    let usage = raw.get("usage").unwrap_or(&Value::Null);
    let (prompt_tokens, completion_tokens) =
        (count(usage, "input_tokens"), count(usage, "output_tokens"));
    let finish_reason = raw
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Completion {
        content,
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            reported_cost: None,
        },
        finish_reason,
        tool_calls,
        raw,
    })
}

/// A streamed message being put together.
#[derive(Debug, Default)]
pub(super) struct Stream {
    message: Option<Value>,
    /// Content blocks by index; a tool block's input arrives as JSON fragments.
    blocks: BTreeMap<u64, (Value, String)>,
    stop_reason: Option<Value>,
    output_tokens: Option<u64>,
}

impl StreamState for Stream {
    fn event(&mut self, event: &SseEvent, target: Target<'_>) -> Result<bool, AgentError> {
        if event.data.trim().is_empty() {
            return Ok(false);
        }
        let data = event_json(event, target)?;
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match data.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => self.message = data.get("message").cloned(),
            "content_block_start" => {
                let block = data.get("content_block").cloned().unwrap_or(Value::Null);
                self.blocks.insert(index, (block, String::new()));
            }
            "content_block_delta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                let entry = self
                    .blocks
                    .entry(index)
                    .or_insert_with(|| (json!({"type": "text", "text": ""}), String::new()));
                if let Some(text) = delta.get("text").and_then(Value::as_str) {
                    let so_far = entry.0.get("text").and_then(Value::as_str).unwrap_or("");
                    let joined = Value::String(format!("{so_far}{text}"));
                    set(&mut entry.0, "text", joined);
                }
                if let Some(part) = delta.get("partial_json").and_then(Value::as_str) {
                    entry.1.push_str(part);
                }
            }
            "message_delta" => {
                if let Some(reason) = data.get("delta").and_then(|d| d.get("stop_reason")) {
                    self.stop_reason = Some(reason.clone());
                }
                if let Some(tokens) = data
                    .get("usage")
                    .and_then(|u| u.get("output_tokens"))
                    .and_then(Value::as_u64)
                {
                    self.output_tokens = Some(tokens);
                }
            }
            "message_stop" => return Ok(true),
            "error" => {
                let error = data.get("error").cloned().unwrap_or(Value::Null);
                return Err(embedded_error(target, &error));
            }
            // `ping`, `content_block_stop` and event types added later.
            _ => {}
        }
        Ok(false)
    }

    fn finish(self, target: Target<'_>) -> Result<Completion, AgentError> {
        let Some(mut message) = self.message.filter(Value::is_object) else {
            return Err(target.error(
                error_types::INVALID_RESPONSE,
                "the stream ended without a `message_start` event",
            ));
        };
        let content: Vec<Value> = self
            .blocks
            .into_values()
            .map(|(mut block, partial_json)| {
                if !partial_json.is_empty() {
                    let input =
                        serde_json::from_str(&partial_json).unwrap_or(Value::String(partial_json));
                    set(&mut block, "input", input);
                }
                block
            })
            .collect();
        set(&mut message, "content", Value::Array(content));
        if let Some(reason) = self.stop_reason {
            set(&mut message, "stop_reason", reason);
        }
        if let Some(tokens) = self.output_tokens {
            let mut usage = message.get("usage").cloned().unwrap_or_else(|| json!({}));
            set(&mut usage, "output_tokens", Value::from(tokens));
            set(&mut message, "usage", usage);
        }
        parse(message, target)
    }
}

/// Sets `key` on an object, replacing anything that is not an object (a stream is untrusted
/// input; indexing a non-object would panic).
fn set(value: &mut Value, key: &str, new: Value) {
    if !value.is_object() {
        *value = json!({});
    }
    if let Value::Object(map) = value {
        map.insert(key.to_owned(), new);
    }
}

#[cfg(test)]
mod tests {
    use flatmachines_core::llm::{FunctionCall, ToolCall};

    use super::*;

    fn message(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            tool_call_id: None,
            tool_calls: None,
        }
    }

    #[test]
    fn results_of_one_turns_calls_share_one_user_message() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "weather".into(),
                arguments: "{}".into(),
            },
        };
        let mut turn = message("assistant", "");
        turn.tool_calls = Some(vec![call("a"), call("b")]);
        let result = |id: &str, text: &str| {
            let mut m = message("tool", text);
            m.tool_call_id = Some(id.into());
            m
        };
        let (_, messages) = convert_messages(&[
            message("user", "Weather?"),
            turn,
            result("a", "rain"),
            result("b", "sun"),
            message("user", "And tomorrow?"),
        ]);
        assert_eq!(
            Value::Array(messages),
            json!([
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "a", "name": "weather", "input": {}},
                    {"type": "tool_use", "id": "b", "name": "weather", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": "rain"},
                    {"type": "tool_result", "tool_use_id": "b", "content": "sun"}
                ]},
                {"role": "user", "content": "And tomorrow?"}
            ])
        );
    }

    #[test]
    fn system_and_tool_messages_take_the_messages_api_shape() {
        let mut call = message("assistant", "checking");
        call.tool_calls = Some(vec![ToolCall {
            id: "t1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "weather".into(),
                arguments: r#"{"city": "Oslo"}"#.into(),
            },
        }]);
        let mut result = message("tool", "rain");
        result.tool_call_id = Some("t1".into());
        let (system, messages) = convert_messages(&[
            message("system", "Be terse."),
            message("user", "Weather?"),
            call,
            result,
            message("system", "Answer in English."),
        ]);
        assert_eq!(system, "Be terse.\n\nAnswer in English.");
        assert_eq!(
            Value::Array(messages),
            json!([
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo"}}
                ]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "rain"}]}
            ])
        );
        let tool = ToolDefinition {
            kind: "function".into(),
            function: serde_json::from_value(
                json!({"name": "weather", "parameters": {"type": "object"}}),
            )
            .unwrap_or_default(),
        };
        assert_eq!(
            convert_tool(&tool),
            json!({"name": "weather", "description": "", "input_schema": {"type": "object"}})
        );
    }
}
