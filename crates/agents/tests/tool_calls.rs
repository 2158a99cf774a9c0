//! Tools declared on an agent reach the model in each provider's shape, and the tool calls
//! the model answers with come back in the result, streamed or not.

mod common;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use common::{Dir, agent_yaml, bodies, object, profiles, server, sse};
use flatmachines_core::{AgentExecutor, AgentToolCall, JsonMap};

const PLANNER: &str = r#"  name: planner
  user: "Plan a trip to {{ input.city }}."
  output:
    plan: {type: str}
  tools:
    - type: function
      function:
        name: weather
        description: The forecast for a city
        parameters:
          type: object
          properties: {city: {type: string}}
          required: [city]
    - type: function
      function:
        name: hotels
        description: Hotels with rooms free
        parameters: {type: object, properties: {city: {type: string}, nights: {type: integer}}}
"#;

fn setup(provider: &str, uri: &str, key_env: &str, stream: bool) -> Dir {
    let dir = Dir::new();
    let stream = if stream { ", stream: true" } else { "" };
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: {provider}, name: test-model, base_url: '{uri}', api_key_env: {key_env}{stream}"
        )),
    );
    dir.write("planner.yml", &agent_yaml(PLANNER));
    dir
}

fn input() -> JsonMap {
    object(json!({"city": "Lisbon"}))
}

/// The two calls every scripted answer below asks for.
fn expected_calls() -> Vec<AgentToolCall> {
    vec![
        AgentToolCall {
            id: "call_w".into(),
            name: "weather".into(),
            arguments: json!({"city": "Lisbon"}),
        },
        AgentToolCall {
            id: "call_h".into(),
            name: "hotels".into(),
            arguments: json!({"city": "Lisbon", "nights": 3}),
        },
    ]
}

async fn planner(dir: &Dir) -> flatmachines_core::AgentResult {
    dir.agent("planner.yml")
        .execute(&input(), &JsonMap::new())
        .await
        .unwrap()
}

/// The result of a turn that only called tools: the calls, no parsed output (there is no
/// answer yet), and a state payload a machine can route on.
fn assert_tool_turn(result: &flatmachines_core::AgentResult) {
    assert_eq!(result.tool_calls.as_deref(), Some(&expected_calls()[..]));
    assert_eq!(result.output, None, "a tool turn has no answer to parse");
    let payload = Value::Object(result.output_payload());
    assert_eq!(payload["tool_calls"][1]["name"], json!("hotels"));
    assert_eq!(payload["tool_calls"][1]["arguments"]["nights"], json!(3));
    let metadata = result.metadata.clone().unwrap_or_default();
    assert!(!metadata.contains_key("parse_error"), "{metadata:?}");
}

#[tokio::test]
async fn openai_gets_the_tools_and_its_tool_calls_come_back() {
    let answer = json!({
        "id": "c1", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [
                {"id": "call_w", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\": \"Lisbon\"}"}},
                {"id": "call_h", "type": "function",
                 "function": {"name": "hotels", "arguments": "{\"city\": \"Lisbon\", \"nights\": 3}"}}
            ]}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
    });
    let mock = server(
        "/chat/completions",
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;
    let dir = setup("openai", &mock.uri(), "TOOLS_OPENAI_KEY", false);
    let result = planner(&dir).await;
    assert_tool_turn(&result);
    assert_eq!(
        result.metadata.unwrap()["finish_reason"],
        json!("tool_calls")
    );
    let sent = &bodies(&mock).await[0];
    assert_eq!(sent["tools"][0]["type"], json!("function"));
    assert_eq!(sent["tools"][0]["function"]["name"], json!("weather"));
    assert_eq!(
        sent["tools"][1]["function"]["parameters"]["properties"]["nights"],
        json!({"type": "integer"})
    );
    // JSON mode and tools do not mix on OpenAI: the tools win.
    assert!(sent.get("response_format").is_none(), "{sent}");
}

#[tokio::test]
async fn openai_tool_call_deltas_over_a_stream_are_put_together() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}",
            json!({"id": "c1", "object": "chat.completion.chunk", "model": "test-model",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let call_start = |index: u64, id: &str, name: &str| {
        json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                               "function": {"name": name, "arguments": ""}}]})
    };
    let call_args = |index: u64, part: &str| json!({"tool_calls": [{"index": index, "function": {"arguments": part}}]});
    let events = [
        chunk(json!({"role": "assistant", "content": null}), Value::Null),
        chunk(call_start(0, "call_w", "weather"), Value::Null),
        chunk(call_args(0, "{\"city\": "), Value::Null),
        chunk(call_start(1, "call_h", "hotels"), Value::Null),
        chunk(call_args(0, "\"Lisbon\"}"), Value::Null),
        chunk(call_args(1, "{\"city\": \"Lisbon\", "), Value::Null),
        chunk(call_args(1, "\"nights\": 3}"), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        "data: [DONE]".to_owned(),
    ];
    let events: Vec<&str> = events.iter().map(String::as_str).collect();
    let mock = server("/chat/completions", sse(&events)).await;
    let dir = setup("openai", &mock.uri(), "TOOLS_OPENAI_STREAM_KEY", true);
    let result = planner(&dir).await;
    assert_tool_turn(&result);
    assert_eq!(bodies(&mock).await[0]["stream"], json!(true));
}

fn anthropic_blocks() -> Value {
    json!([
        {"type": "text", "text": "Let me look that up."},
        {"type": "tool_use", "id": "call_w", "name": "weather", "input": {"city": "Lisbon"}},
        {"type": "tool_use", "id": "call_h", "name": "hotels",
         "input": {"city": "Lisbon", "nights": 3}}
    ])
}

#[tokio::test]
async fn anthropic_gets_the_tools_and_its_tool_use_blocks_come_back() {
    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "test-model",
        "content": anthropic_blocks(), "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 40, "output_tokens": 30}
    });
    let mock = server(
        "/v1/messages",
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;
    let dir = setup("anthropic", &mock.uri(), "TOOLS_ANTHROPIC_KEY", false);
    let result = planner(&dir).await;
    assert_tool_turn(&result);
    assert_eq!(result.content.as_deref(), Some("Let me look that up."));
    let sent = &bodies(&mock).await[0];
    assert_eq!(
        sent["tools"][0],
        json!({"name": "weather", "description": "The forecast for a city",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]}})
    );
    assert_eq!(sent["tools"][1]["name"], json!("hotels"));
}

#[tokio::test]
async fn anthropic_tool_use_over_a_stream_is_put_together() {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}");
    let block_start = |index: u64, block: Value| {
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        )
    };
    let json_delta = |index: u64, part: &str| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index,
                   "delta": {"type": "input_json_delta", "partial_json": part}}),
        )
    };
    let stop = |index: u64| {
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        )
    };
    let events = [
        event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": "msg_2", "type": "message", "role": "assistant", "model": "test-model",
                "content": [], "stop_reason": null,
                "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ),
        block_start(0, json!({"type": "text", "text": ""})),
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": "Let me look that up."}}),
        ),
        stop(0),
        block_start(
            1,
            json!({"type": "tool_use", "id": "call_w", "name": "weather", "input": {}}),
        ),
        json_delta(1, "{\"city\""),
        json_delta(1, ": \"Lisbon\"}"),
        stop(1),
        block_start(
            2,
            json!({"type": "tool_use", "id": "call_h", "name": "hotels", "input": {}}),
        ),
        json_delta(2, "{\"city\": \"Lisbon\", \"nights\": 3}"),
        stop(2),
        event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                   "usage": {"output_tokens": 30}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ];
    let events: Vec<&str> = events.iter().map(String::as_str).collect();
    let mock = server("/v1/messages", sse(&events)).await;
    let dir = setup("anthropic", &mock.uri(), "TOOLS_ANTHROPIC_STREAM_KEY", true);
    let result = planner(&dir).await;
    assert_tool_turn(&result);
    assert_eq!(result.content.as_deref(), Some("Let me look that up."));
}

#[tokio::test]
async fn an_answer_without_tool_calls_is_parsed_as_before() {
    let mock = server(
        "/chat/completions",
        common::ok_chat(r#"{"plan": "Walk the Alfama."}"#),
    )
    .await;
    let dir = setup("openai", &mock.uri(), "TOOLS_OPENAI_PLAIN_KEY", false);
    let result = planner(&dir).await;
    assert_eq!(result.tool_calls, None);
    assert_eq!(
        result.output.map(Value::Object),
        Some(json!({"plan": "Walk the Alfama."}))
    );
}

#[test]
fn bad_tool_declarations_are_refused_naming_the_tool() {
    let cases = [
        (
            "  user: hi\n  tools:\n    - type: function\n      function: {description: nameless}\n",
            "`data.tools[0]` has no `function.name`",
        ),
        (
            "  user: hi\n  tools:\n    - {type: function, function: {name: a}}\n    - {type: function, function: {name: a}}\n",
            "`data.tools[1]` repeats the tool name `a`",
        ),
        (
            "  user: hi\n  tools:\n    - {type: retrieval, function: {name: a}}\n",
            "only `function` tools are supported",
        ),
        (
            "  user: hi\n  tools:\n    - {type: function, function: {name: a, parameters: [1]}}\n",
            "not a JSON Schema object",
        ),
    ];
    for (data, expected) in cases {
        let dir = setup("openai", "http://127.0.0.1:9", "TOOLS_BAD_KEY", false);
        dir.write("bad.yml", &agent_yaml(data));
        let error =
            flatmachines_agents::FlatAgent::from_file(&dir.path().join("bad.yml"), &common::keys())
                .unwrap_err()
                .to_string();
        assert!(error.contains(expected), "{error}");
    }
}
