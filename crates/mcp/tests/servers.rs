//! The MCP provider against real servers: our own, written with the PyPI package `mcp`, over
//! stdio and streamable HTTP, and `@modelcontextprotocol/server-everything` from npm. Then
//! what goes wrong: servers that do not exist, exit, hang or fail, and calls the schema or the
//! filter refuses. After each test, no server process is left.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use flatmachines_core::config::McpConfig;
use flatmachines_core::{
    DeclaredServers, Limits, ServedTools, ToolCallId, ToolError, ToolOutcome, ToolRequest,
    ToolServerLauncher, ToolServerPool,
};
use flatmachines_mcp::McpLauncher;

use support::*;

fn declared(config: Value) -> DeclaredServers {
    DeclaredServers {
        config: serde_json::from_value::<McpConfig>(config).expect("an mcp config"),
        base_dir: std::env::temp_dir(),
    }
}

fn pool() -> Arc<dyn ToolServerPool> {
    McpLauncher::new().pool(&Limits::new())
}

fn id(index: u32) -> ToolCallId {
    ToolCallId {
        execution_id: "exec".into(),
        step: 2,
        turn: 1,
        index,
    }
}

async fn call(
    served: &ServedTools,
    name: &str,
    arguments: Value,
) -> Result<ToolOutcome, ToolError> {
    let id = id(0);
    served
        .provider
        .call(ToolRequest {
            name,
            arguments: &arguments,
            call_id: "call_1",
            id: &id,
            deadline: None,
        })
        .await
}

fn names(served: &ServedTools) -> Vec<String> {
    served
        .provider
        .definitions()
        .iter()
        .filter_map(|d| d.name().map(str::to_owned))
        .collect()
}

/// The calc server over stdio, logging to `log`.
fn calc_stdio(python: &Path, log: &Path, marker: &str, extra: Value) -> Value {
    let mut server = json!({
        "command": python,
        "args": [calc_server(), "stdio"],
        "env": {"CALC_SERVER_LOG": log, "FM_TEST_MARKER": marker},
    });
    if let (Value::Object(server), Value::Object(extra)) = (&mut server, extra) {
        server.extend(extra);
    }
    server
}

#[tokio::test]
async fn a_stdio_server_lists_its_tools_and_each_call_reaches_it_once() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let marker = marker();
    let pool = pool();
    let servers =
        declared(json!({"servers": {"calc": calc_stdio(&python, &log, &marker, json!({}))}}));
    let served = pool.connect("solver", &servers).await.unwrap();
    assert_eq!(
        names(&served),
        ["add", "shout", "big", "broken", "nap", "quit"]
    );
    assert_eq!(served.catalog[0].server.as_deref(), Some("calc"));
    assert_eq!(served.catalog[0].description, "Adds two whole numbers.");
    assert_eq!(
        served.catalog[0].input_schema["required"],
        json!(["a", "b"])
    );

    let outcome = call(&served, "add", json!({"a": 2, "b": 3})).await.unwrap();
    assert_eq!(outcome, ToolOutcome::ok("5"));
    // A second agent declaring the same server shares the process.
    let again = pool.connect("checker", &servers).await.unwrap();
    let outcome = call(&again, "shout", json!({"text": "hi"})).await.unwrap();
    assert_eq!(outcome, ToolOutcome::ok("HI"));
    assert_eq!(processes_with(&marker).len(), 1);

    pool.shutdown().await;
    assert_no_process_left(&marker);
    let calls = logged_calls(&log);
    assert_eq!(
        calls,
        [
            (
                "add".into(),
                json!({"a": 2, "b": 3}),
                Some("exec/2/1/0".into())
            ),
            (
                "shout".into(),
                json!({"text": "hi"}),
                Some("exec/2/1/0".into())
            ),
        ]
    );
}

#[tokio::test]
async fn a_streamable_http_server_is_called_at_its_url() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let marker = marker();
    let server = HttpServer::start(&python, &log, &marker);
    let pool = pool();
    let servers = declared(json!({
        "servers": {"calc": {"server_url": server.url, "headers": {"X-Test": "yes"}, "timeout": 20}},
        "tool_filter": {"allow": ["calc:add", "calc:shout"]},
    }));
    let served = pool.connect("solver", &servers).await.unwrap();
    assert_eq!(names(&served), ["add", "shout"]);
    let outcome = call(&served, "add", json!({"a": 40, "b": 2}))
        .await
        .unwrap();
    assert_eq!(outcome, ToolOutcome::ok("42"));
    pool.shutdown().await;
    assert_eq!(
        logged_calls(&log),
        [(
            "add".into(),
            json!({"a": 40, "b": 2}),
            Some("exec/2/1/0".into())
        )]
    );
    drop(server);
    assert_no_process_left(&marker);
}

#[tokio::test]
async fn the_reference_everything_server_from_npm_answers_over_stdio() {
    let Some(everything) = everything() else {
        return;
    };
    let marker = marker();
    let pool = pool();
    let servers = declared(json!({
        "servers": {"everything": {
            "command": everything,
            "args": ["stdio"],
            "env": {"FM_TEST_MARKER": marker},
            "timeout": 30,
        }},
        "tool_filter": {"deny": ["everything:trigger-long-running-operation"]},
    }));
    let served = pool.connect("agent", &servers).await.unwrap();
    let offered = names(&served);
    assert!(offered.iter().any(|n| n == "echo"), "{offered:?}");
    assert!(
        !offered
            .iter()
            .any(|n| n == "trigger-long-running-operation")
    );
    let outcome = call(&served, "echo", json!({"message": "hello"}))
        .await
        .unwrap();
    assert!(!outcome.is_error, "{outcome:?}");
    assert!(outcome.content.contains("hello"), "{outcome:?}");
    pool.shutdown().await;
    assert_no_process_left(&marker);
}

#[tokio::test]
async fn a_server_that_cannot_start_is_a_tool_error_or_with_required_a_failure() {
    let pool = pool();
    let missing = json!({"servers": {"ghost": {"command": "/nonexistent/mcp-server"}}});
    let served = pool.connect("agent", &declared(missing)).await.unwrap();
    assert!(names(&served).is_empty());
    let Err(ToolError::Failed(message)) = call(&served, "lookup", json!({})).await else {
        panic!("expected a failure");
    };
    assert!(
        message.contains(
            "MCP server `ghost` could not be used: cannot start `/nonexistent/mcp-server`"
        ),
        "{message}"
    );

    let required =
        json!({"servers": {"ghost": {"command": "/nonexistent/mcp-server", "required": true}}});
    let error = pool
        .connect("agent", &declared(required))
        .await
        .unwrap_err();
    assert_eq!(error.server, "ghost");
    assert!(
        error
            .to_string()
            .starts_with("MCP server `ghost` of agent `agent`: cannot start"),
        "{error}"
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn a_server_that_exits_at_once_is_reported_with_its_stderr_and_leaves_no_process() {
    let marker = marker();
    let pool = pool();
    // It leaves a process of its own behind in its group, as a wrapper script that starts
    // the real server and then fails might.
    let servers = declared(json!({"servers": {"quitter": {
        "command": "sh",
        "args": ["-c", "sleep 600 & echo 'quitter: no config found' >&2; exit 3"],
        "env": {"FM_TEST_MARKER": marker},
        "required": true,
    }}}));
    let error = pool.connect("agent", &servers).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("quitter: no config found"), "{message}");
    assert!(message.contains("exit status: 3"), "{message}");
    assert_no_process_left(&marker);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_is_killed() {
    let marker = marker();
    let pool = pool();
    let servers = declared(json!({"servers": {"mute": {
        "command": "sleep",
        "args": ["600"],
        "env": {"FM_TEST_MARKER": marker},
        "timeout": 1,
        "required": true,
    }}}));
    let started = Instant::now();
    let error = pool.connect("agent", &servers).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        error
            .message
            .contains("did not answer `initialize` within 1s"),
        "{error}"
    );
    pool.shutdown().await;
    drop(pool);
    assert_no_process_left(&marker);
}

#[tokio::test]
async fn calls_the_server_cannot_make_are_tool_errors() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let marker = marker();
    let pool = pool();
    let servers = declared(json!({
        "servers": {"calc": calc_stdio(&python, &log, &marker, json!({"timeout": 2}))},
        "tool_filter": {"deny": ["calc:big"]},
    }));
    let served = pool.connect("agent", &servers).await.unwrap();

    // Unknown, and denied: neither is offered, so neither can be called.
    assert!(matches!(
        call(&served, "nope", json!({})).await,
        Err(ToolError::Unknown(_))
    ));
    assert!(!names(&served).contains(&"big".to_owned()));
    assert!(matches!(
        call(&served, "big", json!({"size": 1})).await,
        Err(ToolError::Unknown(_))
    ));
    // The loop tells the model why it is not offered.
    assert_eq!(
        served.withheld,
        [(
            "big".to_owned(),
            "the agent's tool_filter does not permit `calc:big`".to_owned()
        )]
    );

    // Arguments the schema refuses never reach the server.
    let outcome = call(&served, "add", json!({"a": "two", "b": 3}))
        .await
        .unwrap();
    assert!(outcome.is_error);
    assert!(
        outcome.content.starts_with("Tool 'add' of MCP server `calc` was not called: argument `a` does not match its input schema"),
        "{}",
        outcome.content
    );
    let outcome = call(&served, "add", json!({"_raw": "{a: 1"}))
        .await
        .unwrap();
    assert!(
        outcome.content.contains("not valid JSON"),
        "{}",
        outcome.content
    );

    // The tool raises: the server's `isError` result.
    let outcome = call(&served, "broken", json!({})).await.unwrap();
    assert!(outcome.is_error);
    assert!(
        outcome.content.contains("the broken tool is broken"),
        "{}",
        outcome.content
    );

    // The tool hangs past the server's `timeout`.
    let Err(ToolError::Failed(message)) = call(&served, "nap", json!({"seconds": 30})).await else {
        panic!("expected a timeout");
    };
    assert!(
        message.contains("MCP server `calc`, tool `nap`: the server did not answer within 2s"),
        "{message}"
    );
    // With what the server wrote to its stderr while it hung.
    assert!(message.contains("napping for 30"), "{message}");

    // The server dies in the middle of a call.
    let Err(ToolError::Failed(message)) = call(&served, "quit", json!({})).await else {
        panic!("expected a failure");
    };
    assert!(
        message.contains("MCP server `calc`, tool `quit`"),
        "{message}"
    );
    assert!(message.contains("quitting as asked"), "{message}");
    pool.shutdown().await;
    assert_no_process_left(&marker);
    let tools: Vec<String> = logged_calls(&log)
        .into_iter()
        .map(|(tool, ..)| tool)
        .collect();
    assert_eq!(tools, ["broken", "nap", "quit"]);
}

#[tokio::test]
async fn a_ten_megabyte_result_comes_back_whole_to_the_loop() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let marker = marker();
    let pool = pool();
    let servers =
        declared(json!({"servers": {"calc": calc_stdio(&python, &log, &marker, json!({}))}}));
    let served = pool.connect("agent", &servers).await.unwrap();
    let outcome = call(&served, "big", json!({"size": 10_000_000}))
        .await
        .unwrap();
    // The tool loop cuts it to `tool_result_bytes`; the provider gives what the server sent.
    assert_eq!(outcome.content.len(), 10_000_000);
    pool.shutdown().await;
    assert_no_process_left(&marker);
}

#[tokio::test]
async fn a_message_past_mcp_message_bytes_disconnects_the_server() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let marker = marker();
    let mut limits = Limits::new();
    limits
        .set(flatmachines_core::Limit::McpMessageBytes, 1 << 20)
        .unwrap();
    let pool = McpLauncher::new().pool(&limits);
    let servers = declared(
        json!({"servers": {"calc": calc_stdio(&python, &log, &marker, json!({"timeout": 10}))}}),
    );
    let served = pool.connect("agent", &servers).await.unwrap();
    let Err(ToolError::Failed(message)) = call(&served, "big", json!({"size": 2_000_000})).await
    else {
        panic!("expected a failure");
    };
    assert!(
        message.contains("MCP server `calc`, tool `big`"),
        "{message}"
    );
    pool.shutdown().await;
    assert_no_process_left(&marker);
}
