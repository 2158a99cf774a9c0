//! Budgets over a whole run tree: `--max-agent-calls` and `--max-cost` stop a tree of three
//! machines (root → child → grandchild, seven model calls in all) with one clear line and
//! exit 1, counted at a scripted OpenAI-shaped model on 127.0.0.1; a resume keeps counting.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, ResponseTemplate, matchers};

/// Every call costs this, as OpenRouter reports it.
const COST_PER_CALL: f64 = 0.01;

/// A model that answers every request with "ok" and counts them.
fn model(rt: &tokio::runtime::Runtime) -> (MockServer, Arc<Mutex<usize>>) {
    let asked = Arc::new(Mutex::new(0));
    let seen = Arc::clone(&asked);
    let server = rt.block_on(async {
        let server = MockServer::start().await;
        Mock::given(matchers::method("POST"))
            .and(matchers::path("/chat/completions"))
            .respond_with(move |_: &Request| {
                *seen.lock().unwrap() += 1;
                ResponseTemplate::new(200).set_body_json(json!({
                    "id": "c", "object": "chat.completion", "model": "test-model",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                              "cost": COST_PER_CALL}
                }))
            })
            .mount(&server)
            .await;
        server
    });
    (server, asked)
}

/// The root asks once, runs the child, then asks once more; the child asks once and runs the
/// grandchild, which asks four times: seven calls.
fn configs(dir: &Path, model: &MockServer) {
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write(
        "profiles.yml",
        &format!(
            "spec: flatprofiles\nspec_version: \"1.0.0\"\ndata:\n  model_profiles:\n    mock: {{provider: openai, name: test-model, base_url: '{}', api_key_env: BUDGET_KEY}}\n  default: mock\n",
            model.uri()
        ),
    );
    write(
        "counter.yml",
        "spec: flatagent\nspec_version: \"1.0.0\"\ndata:\n  name: counter\n  system: You count.\n  user: \"Count {{ input.n }}.\"\n",
    );
    write(
        "grandchild.yml",
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: grandchild
  persistence: {enabled: true, backend: local}
  agents: {counter: ./counter.yml}
  context: {n: 0}
  states:
    ask:
      type: initial
      agent: counter
      input: {n: "{{ context.n }}"}
      output_to_context: {n: "{{ context.n + 1 }}"}
      transitions:
        - condition: "context.n >= 4"
          to: done
        - to: ask
    done: {type: final, output: {n: "{{ context.n }}"}}
"#,
    );
    write(
        "child.yml",
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: child
  persistence: {enabled: true, backend: local}
  agents: {counter: ./counter.yml}
  machines: {grandchild: ./grandchild.yml}
  states:
    ask:
      type: initial
      agent: counter
      input: {n: child}
      transitions: [{to: deeper}]
    deeper:
      machine: grandchild
      output_to_context: {n: "{{ output.n }}"}
      transitions: [{to: done}]
    done: {type: final, output: {n: "{{ context.n }}"}}
"#,
    );
    write(
        "machine.yml",
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: root
  persistence: {enabled: true, backend: local}
  agents: {counter: ./counter.yml}
  machines: {child: ./child.yml}
  states:
    ask:
      type: initial
      agent: counter
      input: {n: root}
      transitions: [{to: deeper}]
    deeper:
      machine: child
      output_to_context: {n: "{{ output.n }}"}
      transitions: [{to: again}]
    again:
      agent: counter
      input: {n: again}
      output_to_context: {said: "{{ output.content }}"}
      transitions: [{to: done}]
    done: {type: final, output: {n: "{{ context.n }}", said: "{{ context.said }}"}}
"#,
    );
}

fn flatmachines(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flatmachines"))
        .arg("run")
        .arg(dir.join("machine.yml"))
        .args([
            "--store",
            &format!("file://{}", dir.join("store").display()),
        ])
        .args(args)
        .current_dir(dir)
        .env_remove("FLATMACHINES_STORE")
        .env("BUDGET_KEY", "sk-test")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the CLI runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// The one line a stopped run prints, checked for the bound it names.
fn stopped_with(output: &Output, needle: &str) -> String {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(output.stdout.is_empty(), "no output is printed");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {text}");
    assert!(text.contains(needle), "{text}");
    eprintln!("stopped: {text}");
    text
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn max_agent_calls_stops_the_tree_after_exactly_that_many_and_a_resume_keeps_counting() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (server, asked) = model(&rt);
    configs(dir.path(), &server);

    let unbounded_dir = tempfile::tempdir().unwrap();
    configs(unbounded_dir.path(), &server);
    let unbounded = flatmachines(unbounded_dir.path(), &["--execution-id", "free"]);
    assert!(unbounded.status.success(), "{}", stderr(&unbounded));
    assert_eq!(*asked.lock().unwrap(), 7, "the tree makes seven calls");
    let expected: Value = serde_json::from_slice(&unbounded.stdout).unwrap();
    assert_eq!(expected, json!({"n": 4, "said": "ok"}));
    *asked.lock().unwrap() = 0;

    let first = flatmachines(
        dir.path(),
        &["--execution-id", "tree", "--max-agent-calls", "5"],
    );
    let line = stopped_with(&first, "max_agent_calls budget of 5");
    assert!(line.contains("agent `counter` of state `ask`"), "{line}");
    assert_eq!(*asked.lock().unwrap(), 5, "exactly five calls: {line}");

    // The five calls made count against a resume: one more, then the bound again.
    let second = flatmachines(dir.path(), &["--resume", "tree", "--max-agent-calls", "6"]);
    stopped_with(&second, "max_agent_calls budget of 6");
    assert_eq!(*asked.lock().unwrap(), 6);

    let third = flatmachines(dir.path(), &["--resume", "tree", "--max-agent-calls", "7"]);
    assert!(third.status.success(), "{}", stderr(&third));
    assert_eq!(*asked.lock().unwrap(), 7, "no call was made twice");
    let output: Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(output, expected);
}

#[test]
fn max_cost_stops_the_tree_once_the_reported_cost_reaches_it() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (server, asked) = model(&rt);
    configs(dir.path(), &server);
    // 0.01 a call: after four calls the cost is 0.04, past 0.035, and the fifth is refused.
    let run = flatmachines(
        dir.path(),
        &["--execution-id", "costly", "--max-cost", "0.035"],
    );
    let line = stopped_with(&run, "max_cost budget of 0.035");
    assert!(line.contains("cost of 0.04"), "{line}");
    assert_eq!(*asked.lock().unwrap(), 4, "{line}");

    let refused = flatmachines(dir.path(), &["--execution-id", "bad", "--max-cost=-1"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("expected a number at least 0"));
}
