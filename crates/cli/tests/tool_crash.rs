//! Crash recovery of a tool loop with real processes: `flatmachines run` drives a 20-call
//! loop over a Python MCP server (stdio) and a scripted OpenAI-shaped model on 127.0.0.1, is
//! SIGKILLed at random moments inside the loop (after one to three more requests or calls,
//! and up to 25 ms more) and resumed until it finishes.
//!
//! The model and the server count what they are asked. After each kill the test reads what
//! the store had committed; a turn or call asked for again must not have been recorded then
//! (only the one in flight may repeat), repeats are at most the kills, and the output equals
//! an uninterrupted run's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, ResponseTemplate, matchers};

const MAX_KILLS: usize = 10;
const KILL_WINDOW: Duration = Duration::from_secs(60);
/// Two calls a turn (`add`, then a short `nap`), ten turns, then the answer.
const TURNS_WITH_CALLS: usize = 10;
const CALLS: usize = TURNS_WITH_CALLS * 2;
const EXECUTION: &str = "loop";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A Python with the `mcp` package, where `cargo xtask test` installs it.
fn python() -> Option<PathBuf> {
    let path = std::env::var_os("FLATMACHINES_TEST_MCP_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join("flatmachines-rs/mcp/venv/bin/python"))
        })?;
    if path.exists() {
        return Some(path);
    }
    assert!(
        !in_ci(),
        "no Python with `mcp` at {} (set FLATMACHINES_TEST_MCP_PYTHON); `cargo xtask test` installs it",
        path.display()
    );
    eprintln!("skipped: no Python with `mcp` at {}", path.display());
    None
}

fn calc_server() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mcp/tests/servers/calc_server.py")
}

/// The model: while the conversation holds fewer than 20 tool results it asks for
/// `add(a = results/2, b = 1)` and `nap(0.02)`; then it answers with the sum of the numbers it
/// read. Each request is kept as the number of results it carried, its turn's key.
fn model(rt: &tokio::runtime::Runtime) -> (MockServer, Arc<Mutex<Vec<usize>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    let server = rt.block_on(async {
        let server = MockServer::start().await;
        Mock::given(matchers::method("POST"))
            .and(matchers::path("/chat/completions"))
            .respond_with(move |request: &Request| {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                let results: Vec<String> = body["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|m| m["role"] == "tool")
                    .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
                    .collect();
                seen.lock().unwrap().push(results.len());
                let message = if results.len() < CALLS {
                    let turn = results.len() / 2;
                    json!({"role": "assistant", "content": null, "tool_calls": [
                        {"id": format!("call_{turn}_add"), "type": "function",
                         "function": {"name": "add", "arguments": json!({"a": turn, "b": 1}).to_string()}},
                        {"id": format!("call_{turn}_nap"), "type": "function",
                         "function": {"name": "nap", "arguments": "{\"seconds\": 0.02}"}}
                    ]})
                } else {
                    let sum: i64 = results.iter().filter_map(|r| r.trim().parse::<i64>().ok()).sum();
                    json!({"role": "assistant", "content": format!("total {sum}")})
                };
                ResponseTemplate::new(200)
                    .set_delay(Duration::from_millis(15))
                    .set_body_json(json!({
                        "id": "c", "object": "chat.completion", "model": "test-model",
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                    }))
            })
            .mount(&server)
            .await;
        server
    });
    (server, asked)
}

/// The machine, its agent and profiles, in `dir`; the server logs its calls to `log`.
fn configs(dir: &Path, python: &Path, log: &Path, model: &MockServer) {
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
    write(
        "profiles.yml",
        format!(
            "spec: flatprofiles\nspec_version: \"1.0.0\"\ndata:\n  model_profiles:\n    mock: {{provider: openai, name: test-model, base_url: '{}', api_key_env: LOOP_KEY}}\n  default: mock\n",
            model.uri()
        ),
    );
    write(
        "solver.yml",
        format!(
            r#"spec: flatagent
spec_version: "1.0.0"
data:
  name: solver
  system: "You add."
  user: "Add up to {{{{ input.n }}}}."
  mcp:
    servers:
      calc: {{command: '{}', args: ['{}', stdio], env: {{CALC_SERVER_LOG: '{}'}}}}
    tool_filter: {{allow: ["calc:add", "calc:nap"]}}
"#,
            python.display(),
            calc_server().display(),
            log.display()
        ),
    );
    write(
        "machine.yml",
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: tool-crash
  persistence: {enabled: true, backend: local}
  agents: {solver: ./solver.yml}
  states:
    solve:
      type: initial
      agent: solver
      input: {n: 10}
      tool_loop: {max_turns: 30}
      output_to_context: {answer: "{{ output.content }}", calls: "{{ output._tool_calls_count }}"}
      transitions: [{to: done}]
    done:
      type: final
      output: {answer: "{{ context.answer }}", calls: "{{ context.calls }}"}
"#
        .to_owned(),
    );
}

fn start(dir: &Path, store: &Path) -> Child {
    let resume = store.join(EXECUTION).join("latest").exists();
    let mut command = Command::new(env!("CARGO_BIN_EXE_flatmachines"));
    command
        .arg("run")
        .arg(dir.join("machine.yml"))
        .args(["--store", &format!("file://{}", store.display())])
        .current_dir(dir)
        .env_remove("FLATMACHINES_STORE")
        .env("LOOP_KEY", "sk-test")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if resume {
        command.args(["--resume", EXECUTION]);
    } else {
        command.args(["--execution-id", EXECUTION]);
    }
    command.spawn().expect("the CLI starts")
}

fn finish(child: Child) -> Output {
    let output = child.wait_with_output().expect("the CLI ends");
    assert!(
        output.status.success(),
        "the run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The calls the server logged, as their stable call ids, in order.
fn logged(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|entry| entry["call_id"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// What the store had committed: the turns made and the calls answered. Before the loop's
/// first journal, nothing; once the state has an answer, everything.
fn recorded(store: &Path) -> (usize, usize) {
    let dir = store.join(EXECUTION);
    let Ok(key) = std::fs::read_to_string(dir.join("latest")) else {
        return (0, 0);
    };
    let Ok(text) = std::fs::read(store.join(key.trim())) else {
        return (0, 0);
    };
    let snapshot: Value = serde_json::from_slice(&text).expect("a committed snapshot is JSON");
    match snapshot["event"].as_str() {
        Some("tool_call") => {
            let state = &snapshot["tool_loop_state"];
            let answered = state["chain"].as_array().map_or(0, |chain| {
                chain.iter().filter(|m| m["role"] == "tool").count()
            });
            (state["turns"].as_u64().unwrap_or(0) as usize, answered)
        }
        Some("agent_result" | "state_exit" | "machine_end") => (TURNS_WITH_CALLS + 1, CALLS),
        _ => (0, 0),
    }
}

/// The global position of a call from its stable id `execution/step/turn/index`.
fn position(call_id: &str) -> usize {
    let parts: Vec<usize> = call_id
        .rsplit('/')
        .take(2)
        .map(|p| p.parse().expect("a numeric id part"))
        .collect();
    let (index, turn) = (parts[0], parts[1]);
    (turn - 1) * 2 + index
}

/// `checkpoints show` prints the interrupted loop's journal: the calls answered so far.
fn show_journal(store: &Path, answered: usize) {
    let shown = Command::new(env!("CARGO_BIN_EXE_flatmachines"))
        .args(["checkpoints", "show", EXECUTION])
        .args(["--store", &format!("file://{}", store.display())])
        .env_remove("FLATMACHINES_STORE")
        .output()
        .expect("the CLI runs");
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let snapshot: Value = serde_json::from_slice(&shown.stdout).expect("a snapshot as JSON");
    if snapshot["event"] != "tool_call" {
        return;
    }
    let state = &snapshot["tool_loop_state"];
    let results = state["chain"]
        .as_array()
        .expect("a chain")
        .iter()
        .filter(|m| m["role"] == "tool")
        .count();
    assert_eq!(results, answered, "{state}");
    assert!(state["tool_calls_count"].as_u64().is_some(), "{state}");
    assert_eq!(state["journal"]["agent"], "solver", "{state}");
}

#[test]
fn a_killed_tool_loop_resumes_without_repeating_a_recorded_turn_or_call() {
    let Some(python) = python() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    // The uninterrupted run.
    let straight_dir = tempfile::tempdir().unwrap();
    let (straight_model, straight_asked) = model(&rt);
    let straight_log = straight_dir.path().join("calls.jsonl");
    configs(straight_dir.path(), &python, &straight_log, &straight_model);
    let straight_store = straight_dir.path().join("store");
    let began = Instant::now();
    let straight = finish(start(straight_dir.path(), &straight_store));
    let duration = began.elapsed();
    let expected_calls = logged(&straight_log);
    assert_eq!(expected_calls.len(), CALLS);
    assert_eq!(straight_asked.lock().unwrap().len(), TURNS_WITH_CALLS + 1);
    let output: Value = serde_json::from_slice(&straight.stdout).expect("JSON output");
    assert_eq!(output, json!({"answer": "total 55", "calls": CALLS}));

    // Killed and resumed.
    let dir = tempfile::tempdir().unwrap();
    let (model_server, asked) = model(&rt);
    let log = dir.path().join("calls.jsonl");
    configs(dir.path(), &python, &log, &model_server);
    let store = dir.path().join("store");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut random = seed;
    let mut next = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let deadline = Instant::now() + KILL_WINDOW;
    // After each kill: how many requests and calls had been seen, and what was recorded.
    let mut kills: Vec<(usize, usize, (usize, usize))> = Vec::new();
    let mut shown = false;
    let last = loop {
        let mut child = start(dir.path(), &store);
        if kills.len() < MAX_KILLS && Instant::now() < deadline {
            // Wait for one to three more requests or calls, then a moment more, so that
            // every kill lands inside the loop, at a random point of a turn or a call.
            let progress = || asked.lock().unwrap().len() + logged(&log).len();
            let target = progress() + 1 + (next() % 3) as usize;
            let waited = Instant::now();
            while progress() < target
                && waited.elapsed() < Duration::from_secs(20)
                && child.try_wait().expect("poll").is_none()
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(next() % 25));
            if child.try_wait().expect("poll").is_none() {
                child.kill().expect("SIGKILL");
                let _ = child.wait();
                let at_kill = recorded(&store);
                kills.push((asked.lock().unwrap().len(), logged(&log).len(), at_kill));
                if !shown && at_kill.1 > 0 && at_kill.1 < CALLS {
                    shown = true;
                    show_journal(&store, at_kill.1);
                }
                continue;
            }
        }
        break finish(child);
    };
    let got: Value = serde_json::from_slice(&last.stdout).expect("JSON output");
    assert_eq!(got, output, "seed {seed}: {} kills", kills.len());

    let asked = asked.lock().unwrap().clone();
    let calls = logged(&log);
    // Nothing is asked for that the uninterrupted run did not ask for.
    let distinct_turns: HashSet<usize> = asked.iter().copied().collect();
    let straight_turns: HashSet<usize> = straight_asked.lock().unwrap().iter().copied().collect();
    assert_eq!(distinct_turns, straight_turns, "seed {seed}");
    let distinct_calls: HashSet<&String> = calls.iter().collect();
    assert_eq!(
        distinct_calls,
        expected_calls.iter().collect::<HashSet<_>>(),
        "seed {seed}: the calls, by their stable ids"
    );
    // A turn or call asked for again after a kill was not recorded at that kill.
    for (k, &(asked_before, called_before, (turns_recorded, calls_recorded))) in
        kills.iter().enumerate()
    {
        let (asked_after, called_after) = kills
            .get(k + 1)
            .map_or((asked.len(), calls.len()), |&(a, c, _)| (a, c));
        for &key in &asked[asked_before..asked_after] {
            let turn = key / 2 + 1;
            assert!(
                turn > turns_recorded,
                "seed {seed}: turn {turn} was asked for again after kill {k}, which found {turns_recorded} turns recorded"
            );
        }
        for call in &calls[called_before..called_after] {
            if calls[..called_before].contains(call) {
                assert!(
                    position(call) >= calls_recorded,
                    "seed {seed}: call {call} was made again after kill {k}, which found {calls_recorded} calls recorded"
                );
            }
        }
    }
    let turn_repeats = asked.len() - distinct_turns.len();
    let call_repeats = calls.len() - distinct_calls.len();
    eprintln!(
        "seed {seed}: uninterrupted run {duration:?}; kills at (requests, calls, recorded) {kills:?}"
    );
    eprintln!(
        "seed {seed}: {} kills; model turns {} (in-flight repeats {turn_repeats}), tool calls {} (in-flight repeats {call_repeats})",
        kills.len(),
        asked.len(),
        calls.len()
    );
    assert!(!kills.is_empty(), "seed {seed}: no run was killed");
    assert!(
        turn_repeats + call_repeats <= kills.len(),
        "seed {seed}: {turn_repeats} turns and {call_repeats} calls repeated over {} kills",
        kills.len()
    );
}
