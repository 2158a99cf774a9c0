//! Tool-call overhead: a `tool_loop` state whose agent asks for one in-process tool call per
//! model turn, `calls` times, then answers, with its journal on (a `tool_call` checkpoint in
//! memory after every turn and every call). The model is the same timed mock server as the
//! agent workload, scripted by the request it receives: while the conversation holds fewer
//! than `calls` tool results it asks for another call, then it answers with text. The
//! engine's share is the wall time less the server's; the HTTP floor (bare posts, one per
//! model turn) is measured in the same process so that the report can take it out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use flatmachines::agents::{FlatAgentAdapter, KeySource};
use flatmachines::{Machine, RunOptions, Runtime};
use serde_json::{Value, json};

use crate::Result;
use crate::agent::{
    ServerClock, bare_posts, find, json_response, profiles, snapshot, start_server,
};
use crate::workloads::loop_input;

/// How many tool results the conversation in a chat-completions request body holds.
///
/// Our agents send compact JSON and Python's clients may put a space after the colon, so a
/// tool message is a `"role"` key, a colon, optional blanks, then `"tool"`.
fn tool_results(body: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"role\"";
    let mut count = 0;
    let mut rest = body;
    while let Some(at) = find(rest, KEY) {
        rest = &rest[at + KEY.len()..];
        let value = rest.trim_ascii_start();
        if let Some(value) = value.strip_prefix(b":")
            && value.trim_ascii_start().starts_with(b"\"tool\"")
        {
            count += 1;
        }
    }
    count
}

/// The model's turn: one more tool call while fewer than `calls` results came back, else text.
fn model_turn(body: &[u8], calls: u64) -> Vec<u8> {
    let done = tool_results(body);
    let message = if done < calls {
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": format!("call_{done}"), "type": "function",
            "function": {"name": "echo", "arguments": format!("{{\"n\": {done}}}")}
        }]})
    } else {
        json!({"role": "assistant", "content": "done"})
    };
    let finish = if done < calls { "tool_calls" } else { "stop" };
    json_response(&json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    }))
}

fn machine(calls: u64) -> String {
    format!(
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: tool-bench
  persistence: {{enabled: true, backend: memory}}
  agents: {{worker: ./agent.yml}}
  context:
    target: "{{{{ input.target }}}}"
    payload: "{{{{ input.payload }}}}"
  states:
    work:
      type: initial
      agent: worker
      input: {{task: "{{{{ context.target }}}}"}}
      tool_loop: {{max_tool_calls: {limit}, max_turns: {limit}}}
      output_to_context:
        calls: "{{{{ output._tool_calls_count }}}}"
        stop: "{{{{ output._tool_loop_stop }}}}"
      transitions: [{{to: done}}]
    done:
      type: final
      output:
        calls: "{{{{ context.calls }}}}"
        stop: "{{{{ context.stop }}}}"
"#,
        limit = calls + 1
    )
}

const AGENT: &str = r#"spec: flatagent
spec_version: "1.0.0"
data:
  name: worker
  user: "Work on {{ input.task }}"
"#;

/// Starts the scripted model of a loop of `calls` tool calls, with its clock.
async fn start_model(calls: u64) -> Result<(Arc<ServerClock>, String)> {
    let clock = Arc::new(ServerClock::default());
    let base_url = start_server(
        Arc::clone(&clock),
        Arc::new(move |body: &[u8]| model_turn(body, calls)),
    )
    .await?;
    Ok((clock, base_url))
}

/// Times `runs` machine runs of `calls` tool calls each, then as many bare posts as the runs
/// made model turns, `samples` times each.
pub(crate) async fn tool_calls(calls: u64, runs: u64, samples: u64) -> Result<Value> {
    let calls = calls.max(1);
    let (clock, base_url) = start_model(calls).await?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
    };
    write("profiles.yml", &profiles(&base_url))?;
    write("agent.yml", AGENT)?;
    write("machine.yml", &machine(calls))?;
    let machine = Machine::from_file(dir.path().join("machine.yml")).map_err(|e| e.to_string())?;
    let keys = KeySource::from_fn(|name| (name == "FMBENCH_MOCK_KEY").then(|| "bench".to_owned()));
    let executed = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&executed);
    let runner = Runtime::builder()
        .agent_adapter(Arc::new(FlatAgentAdapter::with_keys(keys)))
        .tool(
            "echo",
            "Returns its argument",
            json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
            move |args, _id| {
                counter.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, String>(json!({"echo": args["n"]})) }
            },
        )
        .build()
        .prepare(&machine)
        .map_err(|e| e.to_string())?;
    let input = loop_input();
    // One model turn per tool call, and the final answer.
    let turns = runs * (calls + 1);
    let mut engine = Vec::new();
    let mut engine_wall = Vec::new();
    for _ in 0..samples {
        let (busy, served) = snapshot(&clock);
        let before = executed.load(Ordering::Relaxed);
        let started = Instant::now();
        for _ in 0..runs {
            let outcome = runner
                .run(input.clone(), RunOptions::default())
                .await
                .map_err(|e| format!("the tool loop failed: {e}"))?;
            let output = outcome.output;
            if output.get("stop") != Some(&json!("complete"))
                || output.get("calls") != Some(&json!(calls))
            {
                return Err(format!(
                    "expected a complete loop of {calls} tool calls, the machine returned {output:?}"
                ));
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let (busy_after, served_after) = snapshot(&clock);
        let ran = executed.load(Ordering::Relaxed) - before;
        if served_after - served != turns || ran != runs * calls {
            return Err(format!(
                "expected {turns} model turns and {} tool calls, the server answered {} and the tool ran {ran} times",
                runs * calls,
                served_after - served
            ));
        }
        engine_wall.push(wall);
        engine.push(wall - (busy_after - busy) as f64 / 1e9);
    }
    // A final-answer turn's request: the server answers it with text at once.
    let mut messages = vec![
        json!({"role": "system", "content": "You are a helpful assistant."}),
        json!({"role": "user", "content": "Work on x"}),
    ];
    messages
        .extend((0..calls).map(
            |n| json!({"role": "tool", "tool_call_id": format!("call_{n}"), "content": "{}"}),
        ));
    let body = json!({"model": "bench-model", "messages": messages});
    let bare = bare_posts(&base_url, &clock, &body, turns, samples).await?;
    Ok(json!({
        "workload": "tools",
        "calls": calls,
        "runs": runs,
        "turns": turns,
        "samples_s": engine,
        "wall_samples_s": engine_wall,
        "bare_http_samples_s": bare,
    }))
}

/// Serves the tool workload's scripted model to another process (the 4.2.1 reference's side
/// of the comparison), so that both sides talk to the same server: prints `{"base_url": …}`
/// on one line, answers `GET /clock` with the server's busy time and request count, and stops
/// when its standard input closes (so it never outlives the process that started it).
pub(crate) async fn serve_tools(calls: u64) -> Result<Value> {
    use std::io::Write as _;

    let calls = calls.max(1);
    let (clock, base_url) = start_model(calls).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", json!({"base_url": base_url}))
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write the server's address: {e}"))?;
    }
    // A blocking read on a thread of its own: the server's tasks keep the runtime's workers.
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    })
    .await
    .map_err(|e| format!("the standard input reader failed: {e}"))?
    .map_err(|e| format!("cannot read standard input: {e}"))?;
    let (busy_ns, requests) = snapshot(&clock);
    Ok(json!({"workload": "serve-tools", "busy_ns": busy_ns, "requests": requests}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_are_counted_in_compact_json() {
        let body = json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "a", "content": "{}"},
            {"role": "tool", "tool_call_id": "b", "content": "{}"}]})
        .to_string();
        assert_eq!(tool_results(body.as_bytes()), 2);
        let spaced = br#"{"messages": [{"role": "tool", "content": "{}"}, {"role" : "user"}]}"#;
        assert_eq!(tool_results(spaced), 1);
        assert_eq!(tool_results(b"{}"), 0);
    }

    #[test]
    fn the_model_calls_until_enough_results_came_back() {
        let asking = String::from_utf8(model_turn(b"{}", 1)).expect("utf-8");
        assert!(asking.contains("\"tool_calls\""), "{asking}");
        let body = json!({"messages": [{"role": "tool", "tool_call_id": "a", "content": "{}"}]})
            .to_string();
        let answering = String::from_utf8(model_turn(body.as_bytes(), 1)).expect("utf-8");
        assert!(answering.contains("\"content\":\"done\""), "{answering}");
    }
}
