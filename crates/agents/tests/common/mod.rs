//! Helpers shared by the integration tests: temp configs, mock providers, key sources.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tempfile::TempDir;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

use flatmachines_agents::{FlatAgent, FlatAgentAdapter, KeySource};
use flatmachines_core::{AdapterContext, AgentRef, JsonMap};

/// The API key tests use. It must never show up in errors, logs, checkpoints or results.
pub const SECRET: &str = "sk-test-SECRET-7f3a9c";

pub fn object(value: Value) -> JsonMap {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Keys looked up in a fixed table: every `*_KEY` variable a test names holds [`SECRET`].
/// (Rust 2024 makes setting real environment variables `unsafe`, which the workspace forbids.)
pub fn keys() -> KeySource {
    KeySource::from_fn(|name| name.ends_with("_KEY").then(|| SECRET.to_owned()))
}

pub fn adapter() -> FlatAgentAdapter {
    FlatAgentAdapter::with_keys(keys())
}

/// A temp directory holding configs.
pub struct Dir(pub TempDir);

impl Dir {
    pub fn new() -> Dir {
        Dir(tempfile::tempdir().expect("temp dir"))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    pub fn context(&self) -> AdapterContext {
        AdapterContext {
            config_dir: self.path().to_owned(),
            machine_name: "test".into(),
            ..AdapterContext::default()
        }
    }

    /// Builds the agent in `file` with the test keys.
    pub fn agent(&self, file: &str) -> FlatAgent {
        adapter()
            .build("agent", &AgentRef::Path(file.to_owned()), &self.context())
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A profiles document with one profile, `mock`, as the default.
pub fn profiles(fields: &str) -> String {
    format!(
        "spec: flatprofiles\nspec_version: \"1.0.0\"\ndata:\n  model_profiles:\n    mock: {{{fields}}}\n  default: mock\n"
    )
}

/// An agent document with the given `data` body (indented YAML lines).
pub fn agent_yaml(data: &str) -> String {
    format!("spec: flatagent\nspec_version: \"1.0.0\"\ndata:\n{data}")
}

/// An OpenAI chat-completions answer.
pub fn chat(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    })
}

pub fn ok_chat(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(chat(content))
}

/// A server-sent-events body.
pub fn sse(events: &[&str]) -> ResponseTemplate {
    let body: String = events.iter().map(|e| format!("{e}\n\n")).collect();
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

/// A mock server answering every POST to `path` with `responder`.
pub async fn server(path: &str, responder: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path(path))
        .respond_with(responder)
        .mount(&server)
        .await;
    server
}

/// Answers in turn; the last answer repeats.
pub struct Sequence {
    calls: Arc<AtomicUsize>,
    answers: Vec<ResponseTemplate>,
}

impl Sequence {
    pub fn new(answers: Vec<ResponseTemplate>) -> (Sequence, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        (
            Sequence {
                calls: Arc::clone(&calls),
                answers,
            },
            calls,
        )
    }
}

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let index = call.min(self.answers.len().saturating_sub(1));
        self.answers[index].clone()
    }
}

/// The JSON bodies the server received, in order.
pub async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON request body"))
        .collect()
}

/// Every header of every request the server received, as `name: value` lines.
pub async fn headers(server: &MockServer) -> Vec<Vec<(String, String)>> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect()
        })
        .collect()
}
