//! Anthropic's Messages API against a local mock server.

mod common;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use common::{Dir, SECRET, agent_yaml, bodies, headers, object, profiles, server, sse};
use flatmachines_core::{AgentExecutor, JsonMap};

const CRITIC: &str = r#"  name: critic
  system: Act as a careful critic.
  user: "Critique: {{ input.draft }}"
  output:
    critique: {type: str, description: Specific problems}
    severity: {type: str, enum: [High, Medium, Low]}
"#;

fn message(text: &str) -> Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 40, "output_tokens": 11}
    })
}

fn setup(uri: &str, key_env: &str, extra: &str) -> Dir {
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: anthropic, name: claude-test, base_url: '{uri}', api_key_env: {key_env}{extra}"
        )),
    );
    dir.write("critic.yml", &agent_yaml(CRITIC));
    dir
}

fn input() -> JsonMap {
    object(json!({"draft": "The sky is green."}))
}

#[tokio::test]
async fn the_messages_api_gets_its_own_request_shape() {
    let answer = ResponseTemplate::new(200).set_body_json(message(
        "```json\n{\"critique\": \"The sky is blue.\", \"severity\": \"High\"}\n```",
    ));
    let mock = server("/v1/messages", answer).await;
    let dir = setup(
        &mock.uri(),
        "ANTHROPIC_TEST_REQ_KEY",
        ", temperature: 0.3, top_p: 0.8, top_k: 20, seed: 5, frequency_penalty: 0.2, input_cost_per_million: 3, output_cost_per_million: 15",
    );
    let result = dir
        .agent("critic.yml")
        .execute(&input(), &JsonMap::new())
        .await
        .unwrap();
    assert_eq!(
        Value::Object(result.output.unwrap()),
        json!({"critique": "The sky is blue.", "severity": "High"})
    );
    assert_eq!(
        Value::Object(result.usage.unwrap()),
        json!({"prompt_tokens": 40, "completion_tokens": 11, "total_tokens": 51, "api_calls": 1,
               "cost": (40.0 * 3.0 + 11.0 * 15.0) / 1_000_000.0})
    );
    assert_eq!(result.metadata.unwrap()["finish_reason"], json!("end_turn"));
    // `system` at the top level, `max_tokens` defaulted, no seed or penalties, no
    // response_format: the JSON instruction is in the system prompt.
    insta::assert_json_snapshot!("anthropic_request", bodies(&mock).await[0]);
    let sent = &headers(&mock).await[0];
    let get = |name: &str| {
        sent.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-api-key"), Some(SECRET));
    assert_eq!(get("anthropic-version"), Some("2023-06-01"));
    assert_eq!(get("authorization"), None);
}

#[tokio::test]
async fn a_message_stream_is_aggregated() {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}");
    let events = [
        event(
            "message_start",
            json!({"type": "message_start", "message": {
            "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [], "stop_reason": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "{\"critique\": \"Wrong colour\", "}}),
        ),
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "\"severity\": \"Low\"}"}}),
        ),
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        event(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 14}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ];
    let events: Vec<&str> = events.iter().map(String::as_str).collect();
    let mock = server("/v1/messages", sse(&events)).await;
    let dir = setup(&mock.uri(), "ANTHROPIC_TEST_STREAM_KEY", ", stream: true");
    let result = dir
        .agent("critic.yml")
        .execute(&input(), &JsonMap::new())
        .await
        .unwrap();
    assert_eq!(
        Value::Object(result.output.unwrap()),
        json!({"critique": "Wrong colour", "severity": "Low"})
    );
    let usage = result.usage.unwrap();
    assert_eq!(
        (
            usage["prompt_tokens"].clone(),
            usage["completion_tokens"].clone()
        ),
        (json!(25), json!(14))
    );
    let raw = result.raw.unwrap();
    assert_eq!(raw["id"], json!("msg_2"));
    assert_eq!(raw["stop_reason"], json!("end_turn"));
    assert_eq!(
        raw["content"][0]["text"],
        json!("{\"critique\": \"Wrong colour\", \"severity\": \"Low\"}")
    );
    let sent = &bodies(&mock).await[0];
    assert_eq!(sent["stream"], json!(true));
    assert_eq!(sent.get("stream_options"), None);
}

#[tokio::test]
async fn stream_errors_and_overload_are_server_errors() {
    let events = [
        r#"event: message_start
data: {"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 1}}}"#,
        r#"event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
    ];
    let (answers, _) = common::Sequence::new(vec![
        sse(&events),
        ResponseTemplate::new(529)
            .insert_header("retry-after", "3")
            .set_body_json(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
    ]);
    let mock = server("/v1/messages", answers).await;
    let dir = setup(&mock.uri(), "ANTHROPIC_TEST_ERR_KEY", ", stream: true");
    let agent = dir.agent("critic.yml");
    let first = agent.execute(&input(), &JsonMap::new()).await.unwrap_err();
    assert_eq!(first.error_type, "ServerError");
    assert!(first.message.contains("Overloaded"), "{}", first.message);
    let second = agent.execute(&input(), &JsonMap::new()).await.unwrap_err();
    assert_eq!(
        (second.error_type.as_str(), second.status_code),
        ("ServerError", Some(529))
    );
    assert_eq!(
        second.headers.get("retry-after").map(String::as_str),
        Some("3")
    );
}

#[tokio::test]
async fn a_body_that_is_not_a_message_is_an_invalid_response() {
    let mock = server(
        "/v1/messages",
        ResponseTemplate::new(200).set_body_json(json!({"choices": []})),
    )
    .await;
    let dir = setup(&mock.uri(), "ANTHROPIC_TEST_BAD_KEY", "");
    let error = dir
        .agent("critic.yml")
        .execute(&input(), &JsonMap::new())
        .await
        .unwrap_err();
    assert_eq!(error.error_type, "InvalidResponse");
    assert!(
        error.message.starts_with("anthropic (model `claude-test`)"),
        "{}",
        error.message
    );
}
