//! A scripted model for running the example offline: an OpenAI-shaped chat-completions
//! server on 127.0.0.1 that reads the conversation it is sent and answers the next step of a
//! fixed plan — search the notes, count the words of what it found, then answer.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Starts the server on a free port and returns its base URL.
pub(crate) async fn start() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                // One request after another on the connection (the client keeps it alive).
                while let Some(body) = request_body(&mut read).await {
                    let answer = answer(&body).to_string();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    );
                    if write.write_all(head.as_bytes()).await.is_err()
                        || write.write_all(answer.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(format!("http://{address}"))
}

/// Reads one request's headers and JSON body; `None` when the connection ends.
async fn request_body(read: &mut (impl AsyncBufReadExt + Unpin)) -> Option<Value> {
    let mut length = 0;
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    read.read_exact(&mut body).await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// The next step of the plan, from the tool results the conversation holds so far.
fn answer(request: &Value) -> Value {
    let results: Vec<&str> = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .filter_map(|m| m["content"].as_str())
        .collect();
    let call = |name: &str, arguments: Value| {
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": format!("call_{}", results.len() + 1),
            "type": "function",
            "function": {"name": name, "arguments": arguments.to_string()},
        }]})
    };
    let message = match results.as_slice() {
        [] => call("search_notes", json!({"query": "checkpoint"})),
        [found] => call("word_count", json!({"text": found})),
        [found, words, ..] => json!({
            "role": "assistant",
            "content": format!("Your notes say: \"{found}\" That note is {words} words long."),
        }),
    };
    json!({
        "id": "mock", "object": "chat.completion", "model": "mock",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    })
}
