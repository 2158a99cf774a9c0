//! Helpers for the observability tests: a fake OpenAI-compatible server on 127.0.0.1 and a
//! directory of machines whose agents call it.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The API key the agents are given. It must never be logged.
pub const API_KEY: &str = "sk-test-NEVER-LOG-3b1d";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_flatmachines")
}

/// Answers chat completions with 12 + 5 tokens; a prompt mentioning `slow` waits 30 s first
/// (long enough for a test to look at the screen, and the test stops the run before); one
/// mentioning `bad` gets a 400.
struct Chat;

impl Respond for Chat {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&request.body);
        let reply = ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
        }));
        if body.contains("Item bad") {
            return ResponseTemplate::new(400).set_body_json(
                json!({"error": {"message": "bad item", "type": "invalid_request_error"}}),
            );
        }
        if body.contains("Item slow") {
            reply.set_delay(Duration::from_secs(30))
        } else {
            reply
        }
    }
}

/// A fake provider on 127.0.0.1.
pub async fn llm() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .respond_with(Chat)
        .mount(&server)
        .await;
    server
}

/// A directory with `parent.yml`: an agent call, then a `foreach` of one child per item, each
/// calling the agent; the agent is priced at $1000 per million tokens, so each call costs
/// $0.017. `hooks` is put under the parent's `data:` as is.
pub fn machines(llm_uri: &str, hooks: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let write =
        |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write(
        "profiles.yml",
        &format!(
            "spec: flatprofiles\nspec_version: \"1.0.0\"\ndata:\n  model_profiles:\n    mock: {{provider: openai, name: gpt-test, base_url: '{llm_uri}', api_key_env: FLATMACHINES_TEST_API_KEY, input_cost_per_million: 1000, output_cost_per_million: 1000}}\n  default: mock\n"
        ),
    );
    write(
        "writer.yml",
        "spec: flatagent\nspec_version: \"1.0.0\"\ndata:\n  name: writer\n  user: \"Item {{ input.n }}\"\n",
    );
    write(
        "child.yml",
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: item
  agents: {writer: ./writer.yml}
  context: {n: "{{ input.n }}"}
  states:
    work:
      type: initial
      agent: writer
      input: {n: "{{ context.n }}"}
      transitions: [{to: end}]
    end:
      type: final
      output: {n: "{{ context.n }}"}
"#,
    );
    write(
        "parent.yml",
        &format!(
            r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: batch
{hooks}
  agents: {{writer: ./writer.yml}}
  machines: {{item: ./child.yml}}
  context: {{items: "{{{{ input.items }}}}"}}
  states:
    start:
      type: initial
      agent: writer
      input: {{n: first}}
      transitions: [{{to: fan_out}}]
    fan_out:
      foreach: "{{{{ context.items }}}}"
      as: x
      machine: item
      input: {{n: "{{{{ x }}}}"}}
      output_to_context: {{results: "{{{{ output }}}}"}}
      transitions: [{{to: done}}]
    done:
      type: final
      output: {{count: "{{{{ context.results | length }}}}"}}
"#
        ),
    );
    dir
}

/// The CLI with a clean logging environment and the test API key.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .current_dir(dir)
        .env_remove("FLATMACHINES_LOG")
        .env_remove("RUST_LOG")
        .env_remove("FLATAGENTS_LOG_LEVEL")
        .env_remove("FLATAGENTS_LOG_FORMAT")
        .env_remove("FLATAGENTS_METRICS_ENABLED")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("FLATMACHINES_TEST_API_KEY", API_KEY);
    command
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command` off the async runtime (the test's fake servers live on it).
pub async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .expect("the command finished")
}

/// Every stderr line as JSON.
pub fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}
