//! Logs and hooks from the command line: the hook examples, JSON logs carrying the span
//! fields, the reference's `FLATAGENTS_LOG_*` variables, and secrets kept out of every log.

mod support;

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use support::{API_KEY, command, json_lines, llm, machines, output, repo, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_examples_run_from_the_command_line() {
    let mut python = command(&repo());
    python.args([
        "run",
        "examples/hooks/machine.yml",
        "--input-file",
        "examples/hooks/input.json",
    ]);
    let result = output(python).await;
    assert!(result.status.success(), "{}", text(&result.stderr));
    let printed: Value = serde_json::from_slice(&result.stdout).expect("JSON output");
    assert_eq!(
        printed["trail"],
        json!(["start", "charge", "manual_review", "gift_wrap", "done"])
    );
    assert_eq!(printed["audited_by"], "hooks.py");

    let mut shell = command(&repo());
    shell.args([
        "run",
        "-v",
        "examples/hooks/shell.yml",
        "--input",
        r#"{"who": "ops"}"#,
    ]);
    let result = output(shell).await;
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert_eq!(text(&result.stdout), "{\"notified\": \"ops\"}\n");
    assert!(
        text(&result.stderr).contains("audit: notifying"),
        "{}",
        text(&result.stderr)
    );
}

/// `examples/hooks/receiver.py`, listening on a free port of 127.0.0.1; stopped on drop.
struct Receiver {
    child: std::process::Child,
    port: u16,
}

impl Receiver {
    fn start(secret: &str) -> Receiver {
        use std::io::{BufRead, BufReader, Read};
        let mut child = std::process::Command::new("python3")
            .arg(repo().join("examples/hooks/receiver.py"))
            .arg("0")
            .env("HOOKS_SIGNING_SECRET", secret)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 starts the receiver");
        let mut stderr = BufReader::new(child.stderr.take().expect("a piped stderr"));
        let mut first = String::new();
        // The receiver prints this line once it listens; a receiver that dies ends the read.
        let read = stderr.read_line(&mut first);
        let port = first
            .trim()
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok());
        let Some(port) = port.filter(|_| read.is_ok()) else {
            let _ = child.kill();
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            panic!("receiver.py did not start: {first}{rest}");
        };
        // Its request log goes on to stderr; keep reading so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Receiver { child, port }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_example_and_its_receiver_run_the_order_workflow() {
    let receiver = tokio::task::spawn_blocking(|| Receiver::start("s3cret"))
        .await
        .expect("the receiver started");
    let example =
        std::fs::read_to_string(repo().join("examples/hooks/webhook.yml")).expect("the example");
    assert!(example.contains("http://127.0.0.1:8080/hooks"), "{example}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(
        dir.path().join("webhook.yml"),
        example.replace(
            "http://127.0.0.1:8080/hooks",
            &format!("http://127.0.0.1:{}/hooks", receiver.port),
        ),
    )
    .expect("the config is written");
    let input = repo().join("examples/hooks/input.json");
    let run = |secret: &str| {
        let mut run = command(dir.path());
        run.args(["run", "webhook.yml", "--input-file"])
            .arg(&input)
            .env("HOOKS_SIGNING_SECRET", secret);
        run
    };

    let result = output(run("s3cret")).await;
    assert!(result.status.success(), "{}", text(&result.stderr));
    let printed: Value = serde_json::from_slice(&result.stdout).expect("JSON output");
    assert_eq!(
        printed["trail"],
        json!(["start", "charge", "manual_review", "gift_wrap", "done"])
    );
    assert_eq!(printed["audited_by"], "hooks.py");

    // Signed with another secret: the receiver refuses, and this webhook is fatal.
    let result = output(run("not-the-secret")).await;
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "webhook http://127.0.0.1:{}/hooks answered `machine_start` with HTTP 401",
            receiver.port
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
}

/// The `span` (innermost) and `spans` (outermost first) of log lines whose message is
/// `message`.
fn spans_of<'a>(lines: &'a [Value], message: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|line| line["fields"]["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_execution_the_state_and_the_step() {
    let server = llm().await;
    let dir = machines(&server.uri(), "");
    let mut run = command(dir.path());
    run.args([
        "run",
        "-vv",
        "--log-format",
        "json",
        "--execution-id",
        "run-42",
        "parent.yml",
        "--input",
        r#"{"items": ["a"]}"#,
    ]);
    let result = output(run).await;
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let lines = json_lines(&stderr);

    // A state's own line: the state span carries the three fields.
    let entering = spans_of(&lines, "entering state");
    let fan_out = entering
        .iter()
        .find(|line| line["span"]["state"] == "fan_out")
        .unwrap_or_else(|| panic!("no `entering state` line for fan_out in {stderr}"));
    assert_eq!(
        fan_out["span"],
        json!({"name": "state", "execution_id": "run-42", "state": "fan_out", "step": 2})
    );
    assert_eq!(
        fan_out["spans"][0],
        json!({"name": "machine", "machine": "batch", "execution_id": "run-42"})
    );

    // An agent call inside a child machine started by that state: machine › state ›
    // child_machine › state › agent.
    let calls = spans_of(&lines, "agent call finished");
    let in_child = calls
        .iter()
        .find(|line| {
            line["spans"]
                .as_array()
                .is_some_and(|spans| spans.len() == 5)
        })
        .unwrap_or_else(|| panic!("no agent call inside a child in {stderr}"));
    let names: Vec<&str> = in_child["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|span| span["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["machine", "state", "child_machine", "state", "agent"]
    );
    let child = &in_child["spans"][2];
    assert_eq!(child["parent_execution_id"], "run-42");
    assert_eq!(child["machine"], "item");
    let child_id = child["execution_id"].as_str().expect("the child's id");
    assert_eq!(
        in_child["span"],
        json!({"name": "agent", "agent": "writer", "execution_id": child_id, "state": "work", "step": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_log_variables_set_level_and_format_and_flags_win() {
    let loop_machine = ["run", "examples/loop/machine.yml", "--input", r#"{"n": 6}"#];

    let mut env_json = command(&repo());
    env_json
        .args(loop_machine)
        .env("FLATAGENTS_LOG_LEVEL", "INFO")
        .env("FLATAGENTS_LOG_FORMAT", "json");
    let result = output(env_json).await;
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let lines = json_lines(&stderr);
    assert!(
        lines
            .iter()
            .any(|line| line["level"] == "INFO" && line["fields"]["message"] == "machine started"),
        "{stderr}"
    );
    assert!(
        lines.iter().all(|line| line["level"] != "DEBUG"),
        "{stderr}"
    );

    // Flags win over the variables: text lines, errors only.
    let mut flags = command(&repo());
    flags
        .args(["run", "-q", "--log-format", "text"])
        .args(&loop_machine[1..])
        .env("FLATAGENTS_LOG_LEVEL", "DEBUG")
        .env("FLATAGENTS_LOG_FORMAT", "json");
    let result = output(flags).await;
    assert!(result.status.success());
    assert_eq!(text(&result.stderr), "");

    // A value the CLI does not know is a warning, not a failure.
    let mut unknown = command(&repo());
    unknown
        .args(loop_machine)
        .env("FLATAGENTS_LOG_LEVEL", "LOUD")
        .env("FLATAGENTS_LOG_FORMAT", "%(message)s");
    let result = output(unknown).await;
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "FLATAGENTS_LOG_LEVEL=LOUD is not a level (debug, info, warning, error); using warn"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("FLATAGENTS_LOG_FORMAT=%(message)s is not a format (text, json); using text"),
        "{stderr}"
    );

    // `RUST_LOG` is a full filter, over the level variable.
    let mut rust_log = command(&repo());
    rust_log
        .args(["run", "--log-format", "json"])
        .args(&loop_machine[1..])
        .env("FLATAGENTS_LOG_LEVEL", "ERROR")
        .env("RUST_LOG", "flatmachines_engine=debug,warn");
    let result = output(rust_log).await;
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let lines = json_lines(&stderr);
    assert!(
        lines.iter().any(|line| line["level"] == "DEBUG"),
        "{stderr}"
    );

    // A filter that does not parse is a warning too; the level settings apply instead.
    let mut bad_filter = command(&repo());
    bad_filter
        .args(loop_machine)
        .env("RUST_LOG", "flatmachines_engine=loud");
    let result = output(bad_filter).await;
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains("RUST_LOG=flatmachines_engine=loud is not a log filter ("),
        "{stderr}"
    );
    assert!(stderr.contains("); using warn"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_webhook_secrets_never_reach_the_logs() {
    const TOKEN: &str = "whk-token-NEVER-LOG-9c2e";
    const SIGNING: &str = "whk-signing-NEVER-LOG-51aa";
    let llm = llm().await;
    // A webhook receiver that refuses everything, so failures (with their details) are logged.
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_string("who are you?"))
        .mount(&receiver)
        .await;
    let hooks = format!(
        "  hooks:\n    class: webhook\n    args: {{endpoint: '{}/hooks?source=flatmachines', api_key_env: HOOK_TOKEN, signing_secret_env: HOOK_SIGNING}}",
        receiver.uri()
    );
    let dir = machines(&llm.uri(), &hooks);
    for format in ["text", "json"] {
        let mut run = command(dir.path());
        run.args([
            "run",
            "--log-format",
            format,
            "parent.yml",
            "--input",
            r#"{"items": ["a", "bad"]}"#,
        ])
        .env("RUST_LOG", "trace")
        .env("HOOK_TOKEN", TOKEN)
        .env("HOOK_SIGNING", SIGNING);
        let result = output(run).await;
        let stderr = text(&result.stderr);
        let stdout = text(&result.stdout);
        assert!(result.status.success(), "{stderr}");
        assert!(
            stderr.contains("HTTP 401: who are you?"),
            "the webhook failures were logged"
        );
        assert!(
            stderr.contains("agent call finished"),
            "the agent calls were logged"
        );
        for secret in [API_KEY, TOKEN, SIGNING] {
            assert!(!stderr.contains(secret), "{secret} in the {format} logs");
            assert!(!stdout.contains(secret), "{secret} in the output");
        }
    }
    // The requests did carry them.
    let sent = receiver.received_requests().await.unwrap_or_default();
    assert!(sent.iter().all(|request| {
        request
            .headers
            .get("authorization")
            .is_some_and(|value| value.as_bytes() == format!("Bearer {TOKEN}").as_bytes())
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_webhook_token_variable_is_a_config_error() {
    let dir = machines(
        "http://127.0.0.1:9",
        "  hooks: {class: webhook, args: {endpoint: 'http://127.0.0.1:9/hooks', api_key_env: FLATMACHINES_TEST_UNSET_TOKEN}}",
    );
    let mut run = command(dir.path());
    run.args(["run", "parent.yml", "--input", r#"{"items": []}"#])
        .env_remove("FLATMACHINES_TEST_UNSET_TOKEN");
    let result = output(run).await;
    assert_eq!(result.status.code(), Some(2));
    let stderr = text(&result.stderr);
    assert!(
        stderr.contains("`webhook` hooks: `api_key_env` names the environment variable `FLATMACHINES_TEST_UNSET_TOKEN`, which is not set (or is empty)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported_over_otlp_when_an_endpoint_is_set() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path("/v1/metrics"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let mut run = command(&repo());
    run.args(["run", "examples/loop/machine.yml", "--input", r#"{"n": 6}"#])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri())
        .env("OTEL_SERVICE_NAME", "flatmachines-test");
    let result = output(run).await;
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert_eq!(text(&result.stdout), "{\"steps\": 8, \"peak\": 16}\n");
    // The exporter sends what is left when the CLI exits.
    let exports = collector.received_requests().await.unwrap_or_default();
    let export = exports.first().expect("one export");
    assert_eq!(
        export.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/x-protobuf"[..])
    );
    // Protobuf keeps strings as they are: the service and the instruments are readable.
    let body = String::from_utf8_lossy(&export.body);
    for name in [
        "flatmachines-test",
        "flatagents.machine.steps",
        "flatagents.state.duration",
        "collatz",
    ] {
        assert!(body.contains(name), "{name} is not in the export");
    }

    // Switched off, nothing is sent.
    let before = collector
        .received_requests()
        .await
        .unwrap_or_default()
        .len();
    let mut off = command(&repo());
    off.args(["run", "examples/loop/machine.yml", "--input", r#"{"n": 6}"#])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri())
        .env("FLATAGENTS_METRICS_ENABLED", "false");
    assert!(output(off).await.status.success());
    assert_eq!(
        collector
            .received_requests()
            .await
            .unwrap_or_default()
            .len(),
        before
    );
}
