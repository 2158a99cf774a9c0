//! Agent-call overhead: a machine calling a `spec: flatagent` agent whose provider is an
//! OpenAI-shaped mock server on 127.0.0.1, started here. The server counts the time it spends
//! on each request (from the request's headers arriving to its answer written), and the
//! engine's share of a call is the wall time less that. The same number of bare HTTP posts of
//! the same body through `reqwest` (the client the agents use) is timed in the same way: the
//! difference is what the engine and the agent layer add to the HTTP round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use flatmachines::agents::{FlatAgentAdapter, KeySource};
use flatmachines::{Machine, RunOptions, Runtime};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Result;
use crate::workloads::loop_input;

/// Time the server spent answering, in nanoseconds, and the requests it answered.
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    busy_ns: AtomicU64,
    requests: AtomicU64,
}

/// The canned chat-completions answer: the agent's declared output as JSON content.
fn answer() -> Vec<u8> {
    json_response(&json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "model": "bench",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "{\"answer\": \"ok\"}"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    }))
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The `content-length` of a request head, 0 when absent.
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Builds the whole HTTP response to one request body; its time counts as the server's.
pub(crate) type Responder = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync;

/// A `200 OK` JSON response holding `body`.
pub(crate) fn json_response(body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves one keep-alive connection until the client closes it.
async fn connection(mut socket: TcpStream, clock: Arc<ServerClock>, responder: Arc<Responder>) {
    let mut buffer = Vec::with_capacity(16 * 1024);
    loop {
        let head_end = loop {
            if let Some(at) = find(&buffer, b"\r\n\r\n") {
                break at + 4;
            }
            match socket.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let started = Instant::now();
        if buffer.starts_with(b"GET /clock ") {
            // The clock of a server serving another process (`fm-bench serve-tools`): not a
            // model request, and not counted as the server's time.
            let (busy_ns, requests) = snapshot(&clock);
            buffer.drain(..head_end);
            let reply = json_response(&json!({"busy_ns": busy_ns, "requests": requests}));
            if socket.write_all(&reply).await.is_err() {
                return;
            }
            continue;
        }
        let total = head_end + content_length(&buffer[..head_end]);
        while buffer.len() < total {
            match socket.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let reply = responder(&buffer[head_end..total]);
        buffer.drain(..total);
        if socket.write_all(&reply).await.is_err() {
            return;
        }
        let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        clock.busy_ns.fetch_add(spent, Ordering::Relaxed);
        clock.requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts the mock provider on an ephemeral port of 127.0.0.1, answering each request with
/// what `responder` makes of its body; it stops with the runtime.
pub(crate) async fn start_server(
    clock: Arc<ServerClock>,
    responder: Arc<Responder>,
) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(connection(
                socket,
                Arc::clone(&clock),
                Arc::clone(&responder),
            ));
        }
    });
    Ok(format!("http://{address}"))
}

/// A two-state loop whose states each call the agent once.
const MACHINE: &str = r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: agent-bench
  agents: {bot: ./agent.yml}
  context:
    target: "{{ input.target }}"
    payload: "{{ input.payload }}"
  states:
    start:
      type: initial
      transitions: [{to: ask}]
    ask:
      agent: bot
      input: {question: "{{ context.target }}"}
      output_to_context: {answer: "{{ output.answer }}"}
      transitions: [{to: ask_again}]
    ask_again:
      agent: bot
      input: {question: "{{ context.target }}"}
      output_to_context: {answer: "{{ output.answer }}"}
      transitions: [{to: ask}]
"#;

const AGENT: &str = r#"spec: flatagent
spec_version: "1.0.0"
data:
  name: bot
  user: "Answer: {{ input.question }}"
  output:
    answer: {type: str}
"#;

pub(crate) fn profiles(base_url: &str) -> String {
    format!(
        "spec: flatprofiles\nspec_version: \"1.0.0\"\ndata:\n  model_profiles:\n    mock: {{provider: openai, name: bench-model, base_url: '{base_url}', api_key_env: FMBENCH_MOCK_KEY}}\n  default: mock\n"
    )
}

/// Times `calls` agent calls through a machine, then `calls` bare posts, `samples` times each.
pub(crate) async fn agent_calls(calls: u64, samples: u64) -> Result<Value> {
    let clock = Arc::new(ServerClock::default());
    let reply = answer();
    let base_url =
        start_server(Arc::clone(&clock), Arc::new(move |_: &[u8]| reply.clone())).await?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
    };
    write("profiles.yml", &profiles(&base_url))?;
    write("agent.yml", AGENT)?;
    write("machine.yml", MACHINE)?;
    let machine = Machine::from_file(dir.path().join("machine.yml")).map_err(|e| e.to_string())?;
    // The key never leaves this process; the mock server ignores it.
    let keys = KeySource::from_fn(|name| (name == "FMBENCH_MOCK_KEY").then(|| "bench".to_owned()));
    let runner = Runtime::builder()
        .agent_adapter(Arc::new(FlatAgentAdapter::with_keys(keys)))
        .build()
        .prepare(&machine)
        .map_err(|e| e.to_string())?;
    let input = loop_input();
    let options = RunOptions {
        // The initial state is a step of its own.
        max_steps: Some(calls + 1),
        ..RunOptions::default()
    };
    let mut engine = Vec::new();
    let mut engine_wall = Vec::new();
    for _ in 0..samples {
        let (busy, served) = snapshot(&clock);
        let started = Instant::now();
        let outcome = runner
            .run(input.clone(), options.clone())
            .await
            .map_err(|e| format!("the agent loop failed: {e}"))?;
        let wall = started.elapsed().as_secs_f64();
        let (busy_after, served_after) = snapshot(&clock);
        if served_after - served != calls || outcome.total_api_calls != calls {
            return Err(format!(
                "expected {calls} agent calls, the server answered {} and the run counted {}",
                served_after - served,
                outcome.total_api_calls
            ));
        }
        engine_wall.push(wall);
        engine.push(wall - (busy_after - busy) as f64 / 1e9);
    }
    let body = json!({"model": "bench-model", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Answer: x"}]});
    let bare = bare_posts(&base_url, &clock, &body, calls, samples).await?;
    Ok(json!({
        "workload": "agent",
        "calls": calls,
        "samples_s": engine,
        "wall_samples_s": engine_wall,
        "bare_http_samples_s": bare,
    }))
}

/// Times `posts` bare `reqwest` posts of `body` to the mock server, `samples` times: each
/// sample's wall time less the server's, the HTTP floor a workload compares itself with.
pub(crate) async fn bare_posts(
    base_url: &str,
    clock: &ServerClock,
    body: &Value,
    posts: u64,
    samples: u64,
) -> Result<Vec<f64>> {
    let client = reqwest::Client::new();
    let url = format!("{base_url}/chat/completions");
    let mut bare = Vec::new();
    for _ in 0..samples {
        let (busy, _) = snapshot(clock);
        let started = Instant::now();
        for _ in 0..posts {
            client
                .post(&url)
                .bearer_auth("bench")
                .json(body)
                .send()
                .await
                .map_err(|e| format!("bare post failed: {e}"))?
                .bytes()
                .await
                .map_err(|e| format!("bare post failed: {e}"))?;
        }
        let wall = started.elapsed().as_secs_f64();
        let (busy_after, _) = snapshot(clock);
        bare.push(wall - (busy_after - busy) as f64 / 1e9);
    }
    Ok(bare)
}

pub(crate) fn snapshot(clock: &ServerClock) -> (u64, u64) {
    (
        clock.busy_ns.load(Ordering::Relaxed),
        clock.requests.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_read_case_insensitively() {
        assert_eq!(
            content_length(b"POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n"),
            42
        );
        assert_eq!(
            content_length(b"POST / HTTP/1.1\r\ncontent-length:7\r\n\r\n"),
            7
        );
        assert_eq!(content_length(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"), 0);
    }
}
