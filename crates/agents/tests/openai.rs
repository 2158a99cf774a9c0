//! The OpenAI-compatible provider shape against a local mock server: request bodies, JSON mode,
//! parsing, usage and cost, streaming, and failures.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use common::{Dir, SECRET, agent_yaml, bodies, headers, object, ok_chat, profiles, server, sse};
use flatmachines_agents::LlmClient;
use flatmachines_core::llm::{LlmBackend, LlmOptions, Message};
use flatmachines_core::{AgentExecutor, JsonMap};

const REVIEWER: &str = r#"  name: reviewer
  system: "You review {{ input.kind }} drafts."
  user: |
    Draft: {{ input.draft }}
    Tags: {{ input.tags }}
  instruction_suffix: Keep it short.
  output:
    score: {type: int, description: "1 to 10"}
    verdict: {type: str, enum: [accept, revise]}
    notes: {type: list, items: {type: str}, required: false}
"#;

fn input() -> JsonMap {
    object(json!({"kind": "blog", "draft": "Rust is fast.", "tags": ["lang", "perf"]}))
}

async fn call(
    dir: &Dir,
    file: &str,
) -> Result<flatmachines_core::AgentResult, flatmachines_core::AgentError> {
    dir.agent(file).execute(&input(), &JsonMap::new()).await
}

#[tokio::test]
async fn the_request_carries_every_parameter_the_preset_accepts() {
    let mock = server(
        "/chat/completions",
        ok_chat(r#"{"score": 7, "verdict": "accept"}"#),
    )
    .await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: together, name: meta-llama/Llama-3-8b, base_url: '{}', api_key_env: OPENAI_TEST_REQ_KEY, temperature: 0.2, max_tokens: 300, top_p: 0.9, top_k: 40, frequency_penalty: 0.5, presence_penalty: 0.1, seed: 42, extra_body: {{repetition_penalty: 1.1}}",
            mock.uri()
        )),
    );
    dir.write("reviewer.yml", &agent_yaml(REVIEWER));
    let result = call(&dir, "reviewer.yml").await.unwrap();
    assert_eq!(
        result.output.map(Value::Object),
        Some(json!({"score": 7, "verdict": "accept"}))
    );
    let sent = bodies(&mock).await;
    insta::assert_json_snapshot!("openai_request_all_parameters", sent[0]);
    let headers = &headers(&mock).await[0];
    let auth: Vec<_> = headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .collect();
    assert_eq!(
        auth,
        [&("authorization".to_owned(), format!("Bearer {SECRET}"))]
    );
}

#[tokio::test]
async fn parameters_a_provider_refuses_are_not_sent() {
    let mock = server("/chat/completions", ok_chat("hello")).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: gpt-4o-mini, base_url: '{}', api_key_env: OPENAI_TEST_DROP_KEY, top_k: 40, max_tokens: 64",
            mock.uri()
        )),
    );
    dir.write(
        "plain.yml",
        &agent_yaml("  user: \"Say hello to {{ input.kind }}\"\n"),
    );
    let result = call(&dir, "plain.yml").await.unwrap();
    assert_eq!(result.output, None);
    assert_eq!(
        Value::Object(result.output_payload()),
        json!({"content": "hello"})
    );
    // No output schema: no response_format, no JSON instruction; `top_k` dropped for OpenAI;
    // a custom base URL gets the classic `max_tokens`.
    insta::assert_json_snapshot!("openai_request_plain", bodies(&mock).await[0]);
}

#[tokio::test]
async fn fenced_json_is_parsed_and_coerced() {
    let answer = "Here you go:\n```json\n{\"score\": \"8\", \"verdict\": \"revise\", \"notes\": [\"tighten\"]}\n```";
    let mock = server("/chat/completions", ok_chat(answer)).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: gpt-test, base_url: '{}', api_key_env: OPENAI_TEST_FENCE_KEY",
            mock.uri()
        )),
    );
    dir.write("reviewer.yml", &agent_yaml(REVIEWER));
    let result = call(&dir, "reviewer.yml").await.unwrap();
    assert_eq!(
        Value::Object(result.output.unwrap()),
        json!({"score": 8, "verdict": "revise", "notes": ["tighten"]})
    );
    assert_eq!(result.content.as_deref(), Some(answer));
    assert_eq!(result.metadata.unwrap().get("missing_fields"), None);
    let sent = &bodies(&mock).await[0];
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You review blog drafts.\n\nAnswer with a single JSON object"),
        "{system}"
    );
}

#[tokio::test]
async fn missing_fields_and_unparseable_answers_are_reported() {
    let (answers, _) = common::Sequence::new(vec![
        ok_chat(r#"{"verdict": "accept"}"#),
        ok_chat("I think it is good."),
    ]);
    let mock = server("/chat/completions", answers).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: gpt-test, base_url: '{}', api_key_env: OPENAI_TEST_MISSING_KEY",
            mock.uri()
        )),
    );
    dir.write("reviewer.yml", &agent_yaml(REVIEWER));
    let agent = dir.agent("reviewer.yml");
    let first = agent.execute(&input(), &JsonMap::new()).await.unwrap();
    assert_eq!(first.metadata.unwrap()["missing_fields"], json!(["score"]));
    let second = agent.execute(&input(), &JsonMap::new()).await.unwrap();
    assert_eq!(
        Value::Object(second.output.unwrap()),
        json!({"_raw": "I think it is good."})
    );
    assert!(second.metadata.unwrap()["parse_error"].is_string());
}

#[tokio::test]
async fn usage_is_counted_and_priced() {
    let mock = server("/chat/completions", ok_chat("hi")).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: gpt-test, base_url: '{}', api_key_env: OPENAI_TEST_PRICE_KEY, input_cost_per_million: 2.0, output_cost_per_million: 10.0",
            mock.uri()
        )),
    );
    dir.write("a.yml", &agent_yaml("  user: hi\n"));
    let result = call(&dir, "a.yml").await.unwrap();
    let expected_cost = (12.0 * 2.0 + 5.0 * 10.0) / 1_000_000.0;
    assert_eq!(result.cost, Some(expected_cost));
    assert_eq!(
        Value::Object(result.usage.clone().unwrap()),
        json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "api_calls": 1, "cost": expected_cost})
    );
    assert_eq!(result.api_calls(), 1);
    assert_eq!(result.raw.unwrap()["id"], json!("chatcmpl-1"));
}

#[tokio::test]
async fn a_cost_reported_by_the_provider_is_used_without_prices() {
    let mut answer = common::chat("hi");
    answer["usage"]["cost"] = json!(0.00042);
    let mock = server(
        "/chat/completions",
        ResponseTemplate::new(200).set_body_json(answer),
    )
    .await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openrouter, name: openai/gpt-4o-mini, base_url: '{}', api_key_env: OPENAI_TEST_ROUTER_KEY",
            mock.uri()
        )),
    );
    dir.write("a.yml", &agent_yaml("  user: hi\n"));
    let result = call(&dir, "a.yml").await.unwrap();
    assert_eq!(result.cost, Some(0.00042));
    assert_eq!(result.total_cost(), 0.00042);
    assert_eq!(bodies(&mock).await[0]["model"], json!("openai/gpt-4o-mini"));
}

#[tokio::test]
async fn a_stream_is_aggregated() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}",
            json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-test",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let events = [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "{\"score\": "}), Value::Null),
        ": keep-alive".to_owned(),
        chunk(
            json!({"content": "9, \"verdict\": \"accept\"}"}),
            Value::Null,
        ),
        chunk(json!({}), json!("stop")),
        format!(
            "data: {}",
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}})
        ),
        "data: [DONE]".to_owned(),
    ];
    let events: Vec<&str> = events.iter().map(String::as_str).collect();
    let mock = server("/chat/completions", sse(&events)).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: gpt-test, base_url: '{}', api_key_env: OPENAI_TEST_STREAM_KEY, stream: true",
            mock.uri()
        )),
    );
    dir.write("reviewer.yml", &agent_yaml(REVIEWER));
    let result = call(&dir, "reviewer.yml").await.unwrap();
    assert_eq!(
        Value::Object(result.output.unwrap()),
        json!({"score": 9, "verdict": "accept"})
    );
    assert_eq!(result.usage.unwrap()["total_tokens"], json!(39));
    let raw = result.raw.unwrap();
    assert_eq!(
        raw["choices"][0]["message"]["content"],
        json!("{\"score\": 9, \"verdict\": \"accept\"}")
    );
    assert_eq!(raw["choices"][0]["finish_reason"], json!("stop"));
    let sent = &bodies(&mock).await[0];
    assert_eq!(sent["stream"], json!(true));
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn an_error_inside_a_stream_fails_the_call() {
    let events = [
        r#"data: {"choices": [{"index": 0, "delta": {"content": "par"}}]}"#,
        r#"data: {"error": {"code": 429, "message": "Rate limit exceeded upstream"}}"#,
    ];
    let mock = server("/chat/completions", sse(&events)).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openrouter, name: x/y, base_url: '{}', api_key_env: OPENAI_TEST_STREAMERR_KEY, stream: true",
            mock.uri()
        )),
    );
    dir.write("a.yml", &agent_yaml("  user: hi\n"));
    let error = call(&dir, "a.yml").await.unwrap_err();
    assert_eq!(error.error_type, "RateLimitError");
    assert_eq!(error.status_code, Some(429));
    assert!(
        error.message.contains("Rate limit exceeded upstream"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_slow_provider_times_out() {
    let slow = ok_chat("late").set_delay(Duration::from_secs(5));
    let mock = server("/chat/completions", slow).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: gpt-test, base_url: '{}', api_key_env: OPENAI_TEST_TIMEOUT_KEY, timeout: 0.2",
            mock.uri()
        )),
    );
    dir.write("a.yml", &agent_yaml("  user: hi\n"));
    let started = Instant::now();
    let error = call(&dir, "a.yml").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error.error_type, "Timeout");
    assert!(error.message.contains("within 0.2 s"), "{}", error.message);
    assert_eq!(error.status_code, None);
}

#[tokio::test]
async fn malformed_bodies_are_invalid_responses() {
    let (answers, _) = common::Sequence::new(vec![
        ResponseTemplate::new(200).set_body_raw("<html>gateway</html>", "text/html"),
        ResponseTemplate::new(200)
            .set_body_json(json!({"object": "chat.completion", "choices": []})),
        ResponseTemplate::new(200)
            .set_body_json(json!({"choices": [{"message": {"content": 42}}]})),
        ResponseTemplate::new(200)
            .set_body_json(json!({"error": {"code": 502, "message": "upstream down"}})),
    ]);
    let mock = server("/chat/completions", answers).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: gpt-test, base_url: '{}', api_key_env: OPENAI_TEST_MALFORMED_KEY",
            mock.uri()
        )),
    );
    dir.write("a.yml", &agent_yaml("  user: hi\n"));
    let agent = dir.agent("a.yml");
    let mut types = Vec::new();
    for _ in 0..4 {
        let error = agent.execute(&input(), &JsonMap::new()).await.unwrap_err();
        types.push((error.error_type, error.status_code));
    }
    assert_eq!(
        types,
        [
            ("InvalidResponse".to_owned(), None),
            ("InvalidResponse".to_owned(), None),
            ("InvalidResponse".to_owned(), None),
            ("ServerError".to_owned(), Some(502)),
        ]
    );
}

#[tokio::test]
async fn http_errors_carry_status_headers_and_body_but_never_the_key() {
    let echo = ResponseTemplate::new(401)
        .insert_header("X-Request-Id", "req-77")
        .set_body_json(json!({"error": {"message": format!("Incorrect API key provided: {SECRET}"), "type": "invalid_request_error"}}));
    let mock = server("/chat/completions", echo).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: gpt-test, base_url: '{}', api_key_env: OPENAI_TEST_401_KEY",
            mock.uri()
        )),
    );
    dir.write("a.yml", &agent_yaml("  user: hi\n"));
    let agent = dir.agent("a.yml");
    assert!(!format!("{agent:?}").contains(SECRET));
    let error = agent.execute(&input(), &JsonMap::new()).await.unwrap_err();
    assert_eq!(error.error_type, "AuthenticationError");
    assert_eq!(error.status_code, Some(401));
    assert_eq!(
        error.headers.get("x-request-id").map(String::as_str),
        Some("req-77")
    );
    assert!(error.message.contains("HTTP 401"), "{}", error.message);
    assert!(
        error
            .message
            .contains("Incorrect API key provided: [redacted]"),
        "{}",
        error.message
    );
    let everything = format!("{error:?} {error}");
    assert!(!everything.contains(SECRET), "{everything}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_connection_error() {
    // Bind and drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: vllm, name: m, base_url: 'http://127.0.0.1:{port}/v1', connect_timeout: 2"
        )),
    );
    dir.write("a.yml", &agent_yaml("  user: hi\n"));
    let error = call(&dir, "a.yml").await.unwrap_err();
    assert!(
        ["ConnectionError", "Timeout"].contains(&error.error_type.as_str()),
        "{error:?}"
    );
    // vllm needs no key: nothing was looked up.
    assert!(
        error.message.starts_with(&format!(
            "vllm (model `m`): cannot reach http://127.0.0.1:{port}/v1/chat/completions: "
        )),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn llm_client_implements_the_core_backend_trait() {
    let mock = server("/chat/completions", ok_chat("{\"a\": 1}")).await;
    let model = serde_json::from_value(json!({
        "provider": "openai", "name": "gpt-test", "base_url": mock.uri(),
        "api_key_env": "OPENAI_TEST_LLM_KEY", "input_cost_per_million": 1.0
    }))
    .unwrap();
    let client = LlmClient::new(&model, &common::keys()).unwrap();
    let messages = [Message {
        role: "user".into(),
        content: "give JSON".into(),
        tool_call_id: None,
        tool_calls: None,
    }];
    let options = LlmOptions {
        temperature: Some(0.0),
        max_tokens: Some(20),
        response_format: Some(json!({"type": "json_object"})),
        ..LlmOptions::default()
    };
    assert_eq!(
        client.call(&messages, &options).await.unwrap(),
        "{\"a\": 1}"
    );
    let raw = client
        .call_raw(&messages, &LlmOptions::default())
        .await
        .unwrap();
    assert_eq!(raw["usage"]["total_tokens"], json!(17));
    assert_eq!(client.total_api_calls(), 2);
    assert!((client.total_cost() - 24.0 / 1_000_000.0).abs() < 1e-12);
    let sent = bodies(&mock).await;
    assert_eq!(sent[0]["temperature"], json!(0.0));
    assert_eq!(sent[0]["max_tokens"], json!(20));
    assert_eq!(sent[0]["response_format"], json!({"type": "json_object"}));
    assert_eq!(sent[1].get("response_format"), None);
}
