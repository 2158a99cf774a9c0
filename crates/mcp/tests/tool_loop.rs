//! MCP servers in a machine's tool loop: the agent declares them, the mock model (a real HTTP
//! server in the OpenAI shape) asks for their tools, the run reads the results. The server's
//! own log shows each call once, and no server process outlives the run.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, ResponseTemplate, matchers};

use flatmachines_agents::{FlatAgentAdapter, KeySource};
use flatmachines_core::JsonMap;
use flatmachines_engine::{Machine, RunOptions, RunOutcome, Runtime};
use flatmachines_mcp::McpLauncher;

use support::*;

/// What the model asks for on its first turn: `(tool, arguments)`.
type Plan = Vec<(&'static str, Value)>;

/// A model that asks for `plan` while the conversation holds no tool result, then answers
/// `Results: ` and the results it read. Every request body is kept.
async fn model(plan: Plan) -> (MockServer, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let bodies = Arc::clone(&seen);
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/chat/completions"))
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            bodies.lock().unwrap().push(body.clone());
            let results: Vec<String> = body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["role"] == "tool")
                .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
                .collect();
            let message = if results.is_empty() {
                let calls: Vec<Value> = plan
                    .iter()
                    .enumerate()
                    .map(|(i, (tool, args))| {
                        json!({"id": format!("call_{i}"), "type": "function",
                               "function": {"name": tool, "arguments": args.to_string()}})
                    })
                    .collect();
                json!({"role": "assistant", "content": null, "tool_calls": calls})
            } else {
                json!({"role": "assistant", "content": format!("Results: {}", results.join(" | "))})
            };
            ResponseTemplate::new(200).set_body_json(json!({
                "id": "c", "object": "chat.completion", "model": "test-model",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            }))
        })
        .mount(&server)
        .await;
    (server, seen)
}

fn runtime() -> Runtime {
    let keys = KeySource::from_fn(|name| name.ends_with("_KEY").then(|| "sk-test".to_owned()));
    Runtime::builder()
        .agent_adapter(Arc::new(FlatAgentAdapter::with_keys(keys)))
        .tool_servers(Arc::new(McpLauncher::new()))
        .tool(
            "weather",
            "The forecast for a city",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            |args, _id| async move {
                Ok::<_, String>(json!(format!(
                    "sunny in {}",
                    args["city"].as_str().unwrap_or("?")
                )))
            },
        )
        .build()
}

/// The calc server, over stdio, as an agent's `mcp.servers` entry (YAML flow).
fn calc(python: &Path, log: &Path, marker: &str, extra: &str) -> String {
    format!(
        "{{command: '{}', args: ['{}', stdio], env: {{CALC_SERVER_LOG: '{}', FM_TEST_MARKER: '{marker}'}}{extra}}}",
        python.display(),
        calc_server().display(),
        log.display()
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn profiles(dir: &Path, model: &MockServer) {
    write(
        dir,
        "profiles.yml",
        &format!(
            "spec: flatprofiles\nspec_version: \"1.0.0\"\ndata:\n  model_profiles:\n    mock: {{provider: openai, name: test-model, base_url: '{}', api_key_env: LOOP_KEY}}\n  default: mock\n",
            model.uri()
        ),
    );
}

/// An agent using `servers` (YAML flow), whose system prompt is its rendered `tool_prompt`.
fn agent(servers: &str) -> String {
    format!(
        r#"spec: flatagent
spec_version: "1.0.0"
data:
  name: solver
  system: "Tools:\n{{{{ tools_prompt }}}}"
  user: "Solve {{{{ input.task }}}}."
  mcp:
    servers: {servers}
    tool_filter: {{deny: ["calc:quit"]}}
    tool_prompt: "{{% for t in tools %}}- {{{{ t.name }}}} ({{{{ t.server or 'rust' }}}})\n{{% endfor %}}"
"#
    )
}

async fn run(file: &Path) -> RunOutcome {
    let machine = Machine::from_file(file).unwrap_or_else(|e| panic!("{e}"));
    runtime()
        .run(&machine, JsonMap::new(), RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_model_calls_a_python_server_and_a_rust_tool_in_one_turn() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let marker = marker();
    let (mock, bodies) = model(vec![
        ("add", json!({"a": 2, "b": 3})),
        ("weather", json!({"city": "Lisbon"})),
        // Denied by the agent's filter: never called, and the model is told why.
        ("quit", json!({})),
    ])
    .await;
    profiles(dir.path(), &mock);
    write(
        dir.path(),
        "solver.yml",
        &agent(&format!("{{calc: {}}}", calc(&python, &log, &marker, ""))),
    );
    write(
        dir.path(),
        "machine.yml",
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: sums
  agents: {solver: ./solver.yml}
  states:
    solve:
      type: initial
      agent: solver
      input: {task: "2 + 3"}
      tool_loop: {max_turns: 4}
      output_to_context: {answer: "{{ output.content }}", calls: "{{ output._tool_calls_count }}"}
      transitions: [{to: done}]
    done:
      type: final
      output: {answer: "{{ context.answer }}", calls: "{{ context.calls }}"}
"#,
    );
    let outcome = run(&dir.path().join("machine.yml")).await;
    assert_eq!(
        outcome.output,
        json!({
            "answer": "Results: 5 | sunny in Lisbon | Tool 'quit' is not offered: the agent's tool_filter does not permit `calc:quit`.",
            "calls": 3
        })
    );

    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    let offered: Vec<&str> = bodies[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    // The runtime's tools first, then the server's, less the denied one.
    assert_eq!(offered, ["weather", "add", "shout", "big", "broken", "nap"]);
    assert_eq!(
        bodies[0]["messages"][0]["content"],
        "Tools:\n- weather (rust)\n- add (calc)\n- shout (calc)\n- big (calc)\n- broken (calc)\n- nap (calc)\n"
    );
    let calls = logged_calls(&log);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, "add");
    let call_id = calls[0].2.clone().unwrap();
    assert_eq!(call_id, format!("{}/1/1/0", outcome.execution_id));
    assert_no_process_left(&marker);
}

#[tokio::test]
async fn states_and_child_machines_share_one_server_process() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let marker = marker();
    let (mock, _) = model(vec![("shout", json!({"text": "hi"}))]).await;
    profiles(dir.path(), &mock);
    let server = format!("{{calc: {}}}", calc(&python, &log, &marker, ""));
    write(dir.path(), "solver.yml", &agent(&server));
    let state = |name: &str, next: &str| {
        format!(
            "    {name}:\n      agent: solver\n      input: {{task: x}}\n      tool_loop: {{max_turns: 3}}\n      transitions: [{{to: {next}}}]\n"
        )
    };
    write(
        dir.path(),
        "child.yml",
        &format!(
            "spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  name: child\n  agents: {{solver: ./solver.yml}}\n  states:\n    start: {{type: initial, transitions: [{{to: again}}]}}\n{}    end: {{type: final, output: {{ok: true}}}}\n",
            state("again", "end")
        ),
    );
    write(
        dir.path(),
        "machine.yml",
        &format!(
            "spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  name: parent\n  agents: {{solver: ./solver.yml}}\n  machines: {{child: ./child.yml}}\n  states:\n    start: {{type: initial, transitions: [{{to: first}}]}}\n{}{}    nested:\n      machine: child\n      transitions: [{{to: done}}]\n    done: {{type: final, output: {{ok: true}}}}\n",
            state("first", "second"),
            state("second", "nested"),
        ),
    );
    let outcome = run(&dir.path().join("machine.yml")).await;
    assert_eq!(outcome.output, json!({"ok": true}));
    let pids: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["pid"].clone())
        .collect();
    assert_eq!(pids.len(), 3, "three loops, one call each");
    assert!(pids.iter().all(|pid| *pid == pids[0]), "{pids:?}");
    assert_no_process_left(&marker);
}

#[tokio::test]
async fn a_required_server_that_cannot_start_fails_the_state_for_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, bodies) = model(vec![]).await;
    profiles(dir.path(), &mock);
    write(
        dir.path(),
        "solver.yml",
        &agent("{ghost: {command: /nonexistent/mcp-server, required: true}}"),
    );
    write(
        dir.path(),
        "machine.yml",
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: sums
  agents: {solver: ./solver.yml}
  states:
    solve:
      type: initial
      agent: solver
      input: {task: x}
      tool_loop: {max_turns: 2}
      on_error: recovered
      transitions: [{to: done}]
    recovered:
      type: final
      output: {error: "{{ context.last_error }}", type: "{{ context.last_error_type }}"}
    done:
      type: final
      output: {ok: true}
"#,
    );
    let outcome = run(&dir.path().join("machine.yml")).await;
    assert_eq!(outcome.output["type"], "ToolServerError");
    let error = outcome.output["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "MCP server `ghost` of agent `solver`: cannot start `/nonexistent/mcp-server`"
        ),
        "{error}"
    );
    assert!(bodies.lock().unwrap().is_empty(), "the model is not asked");
}

#[tokio::test]
async fn a_ten_megabyte_result_is_cut_to_tool_result_bytes() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let marker = marker();
    let (mock, bodies) = model(vec![("big", json!({"size": 10_000_000}))]).await;
    profiles(dir.path(), &mock);
    write(
        dir.path(),
        "solver.yml",
        &agent(&format!("{{calc: {}}}", calc(&python, &log, &marker, ""))),
    );
    write(
        dir.path(),
        "machine.yml",
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: big
  settings: {limits: {tool_result_bytes: 4096}}
  agents: {solver: ./solver.yml}
  states:
    solve:
      type: initial
      agent: solver
      input: {task: x}
      tool_loop: {max_turns: 3}
      transitions: [{to: done}]
    done: {type: final, output: {ok: true}}
"#,
    );
    run(&dir.path().join("machine.yml")).await;
    let bodies = bodies.lock().unwrap().clone();
    let result = bodies[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .unwrap()
        .to_owned();
    let (kept, note) = result.split_at(4096);
    assert!(kept.bytes().all(|b| b == b'x'));
    assert_eq!(
        note,
        "\n[The tool result was cut here: it had 10000000 bytes (limit `tool_result_bytes` is 4 KiB: raise it with --limit tool_result_bytes=N or settings.limits.tool_result_bytes)]"
    );
    assert_no_process_left(&marker);
}

/// A one-state machine running `solver` in a tool loop, its answer as the output.
const ONE_LOOP: &str = r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: one-loop
  agents: {solver: ./solver.yml}
  states:
    solve:
      type: initial
      agent: solver
      input: {task: x}
      tool_loop: {max_turns: 3}
      output_to_context: {answer: "{{ output.content }}"}
      transitions: [{to: done}]
    done:
      type: final
      output: {answer: "{{ context.answer }}"}
"#;

#[tokio::test]
async fn the_model_calls_a_server_over_streamable_http() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let marker = marker();
    let server = HttpServer::start(&python, &log, &marker);
    let (mock, _) = model(vec![("add", json!({"a": 20, "b": 22}))]).await;
    profiles(dir.path(), &mock);
    write(
        dir.path(),
        "solver.yml",
        &agent(&format!(
            "{{calc: {{server_url: '{}', timeout: 20}}}}",
            server.url
        )),
    );
    write(dir.path(), "machine.yml", ONE_LOOP);
    let outcome = run(&dir.path().join("machine.yml")).await;
    assert_eq!(outcome.output, json!({"answer": "Results: 42"}));
    let calls = logged_calls(&log);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].2.as_deref(),
        Some(format!("{}/1/1/0", outcome.execution_id).as_str())
    );
    drop(server);
    assert_no_process_left(&marker);
}

#[tokio::test]
async fn the_model_calls_the_everything_server_from_npm() {
    let Some(everything) = everything() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let marker = marker();
    let (mock, bodies) = model(vec![("echo", json!({"message": "over stdio"}))]).await;
    profiles(dir.path(), &mock);
    write(
        dir.path(),
        "solver.yml",
        &agent(&format!(
            "{{everything: {{command: '{}', args: [stdio], env: {{FM_TEST_MARKER: '{marker}'}}, timeout: 30}}}}",
            everything.display()
        )),
    );
    write(dir.path(), "machine.yml", ONE_LOOP);
    let outcome = run(&dir.path().join("machine.yml")).await;
    assert_eq!(
        outcome.output,
        json!({"answer": "Results: Echo: over stdio"})
    );
    assert_eq!(bodies.lock().unwrap().len(), 2);
    assert_no_process_left(&marker);
}
