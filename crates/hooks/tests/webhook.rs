//! Webhook hooks against a real HTTP receiver on 127.0.0.1: every event and override, the
//! timeout, error statuses, bad replies, signatures and tokens.

mod common;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use common::{Logs, builder, repo, run_yaml};
use flatmachines_hooks::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use flatmachines_hooks::{
    DeliveryPolicy, EventKind, EventSet, Secret, WebhookConfig, WebhookHooks,
};

type Reply = dyn Fn(&Request, &Value) -> ResponseTemplate + Send + Sync;

/// A receiver that records every event body and answers with `reply`.
struct Receiver {
    seen: Arc<Mutex<Vec<Value>>>,
    reply: Box<Reply>,
}

impl Respond for Receiver {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(body.clone());
        (self.reply)(request, &body)
    }
}

/// Starts a receiver at `/hooks`; the returned list fills with the events it gets.
async fn receiver(
    reply: impl Fn(&Request, &Value) -> ResponseTemplate + Send + Sync + 'static,
) -> (MockServer, Arc<Mutex<Vec<Value>>>) {
    let server = MockServer::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .respond_with(Receiver {
            seen: Arc::clone(&seen),
            reply: Box::new(reply),
        })
        .mount(&server)
        .await;
    (server, seen)
}

fn seen(events: &Arc<Mutex<Vec<Value>>>) -> Vec<Value> {
    events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| event["event"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn json_reply(value: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(value)
}

/// The context of `event` with `key` set to `value`.
fn with(event: &Value, key: &str, value: Value) -> Value {
    let mut context = event["context"].clone();
    context[key] = value;
    context
}

const EVERY_EVENT: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: webhook-events
  hooks:
    class: webhook
    args: {endpoint: "ENDPOINT", timeout: 5, fatal: true}
  context:
    n: "{{ input.n }}"
  states:
    start:
      type: initial
      action: greet
      transitions: [{to: risky}]
    risky:
      action: explode
      transitions: [{to: nowhere}]
    recovered:
      transitions:
        - condition: "output.route == 'b'"
          to: route_b
        - to: route_a
    route_a:
      transitions: [{to: done}]
    route_b:
      transitions: [{to: done}]
    done:
      type: final
      output: {n: "{{ context.n }}"}
    finale:
      type: final
      output: {n: "{{ context.n }}", greeted: "{{ context.greeted }}", started: "{{ context.started }}"}
    nowhere:
      type: final
"#;

/// Answers each event with the override it tests.
fn every_override(_: &Request, event: &Value) -> ResponseTemplate {
    match (event["event"].as_str(), event["state"].as_str()) {
        (Some("machine_start"), _) => {
            json_reply(json!({"context": with(event, "started", json!(true))}))
        }
        (Some("state_enter"), _) => ResponseTemplate::new(204),
        (Some("action"), _) if event["action"] == "greet" => {
            json_reply(json!({"context": with(event, "greeted", json!(true))}))
        }
        (Some("action"), _) => json_reply(json!({"hook_error": "boom"})),
        (Some("error"), Some("risky")) => json_reply(json!({"recovery_state": "recovered"})),
        (Some("state_exit"), Some("recovered")) => json_reply(json!({"output": {"route": "b"}})),
        (Some("transition"), _) if event["from"] == "route_b" => {
            json_reply(json!({"to_state": "finale"}))
        }
        // An empty 200 body asks for nothing, like a 204.
        (Some("transition"), _) => ResponseTemplate::new(200),
        (Some("machine_end"), _) => {
            let mut output = event["output"].clone();
            output["stamped"] = json!(true);
            json_reply(json!({"output": output}))
        }
        _ => json_reply(json!({})),
    }
}

#[tokio::test]
async fn every_event_is_posted_and_every_override_applied() {
    let (server, events) = receiver(every_override).await;
    let yaml = EVERY_EVENT.replace("ENDPOINT", &format!("{}/hooks", server.uri()));
    let runtime = builder().build();
    let outcome = run_yaml(&runtime, &yaml, &repo(), json!({"n": 3}))
        .await
        .expect("the run completes");
    // machine_start set `started`, the `greet` action set `greeted`, the error was recovered
    // in `recovered`, whose output override chose `route_b`, whose transition was sent to
    // `finale`, and machine_end stamped the output.
    assert_eq!(
        outcome.output,
        json!({"n": 3, "greeted": true, "started": true, "stamped": true})
    );
    let events = seen(&events);
    assert_eq!(
        names(&events),
        [
            "machine_start",
            "state_enter",
            "action",
            "state_exit",
            "transition",
            "state_enter",
            "action",
            "error",
            "state_enter",
            "state_exit",
            "transition",
            "state_enter",
            "state_exit",
            "transition",
            "state_enter",
            "state_exit",
            "machine_end",
        ]
    );
    insta::with_settings!({filters => vec![(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]")]}, {
        insta::assert_json_snapshot!("every_event_payload", events);
    });
}

/// A machine of two states, sending only `machine_start` and `machine_end`.
fn short_machine(endpoint: &str, extra: &str) -> String {
    format!(
        r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: short
  hooks:
    class: webhook
    args: {{endpoint: "{endpoint}", events: [machine_start, machine_end]{extra}}}
  context:
    n: "{{{{ input.n }}}}"
  states:
    start:
      type: initial
      transitions: [{{to: done}}]
    done:
      type: final
      output: {{n: "{{{{ context.n }}}}"}}
"#
    )
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_the_run_goes_on_unless_fatal() {
    let (server, events) = receiver(|_, _| {
        // Far past the timeout, which itself leaves a loaded machine ample time to connect.
        json_reply(json!({"output": {"late": true}})).set_delay(Duration::from_secs(30))
    })
    .await;
    let endpoint = format!("{}/hooks", server.uri());
    let runtime = builder().build();

    let (logs, guard) = Logs::capture();
    let outcome = run_yaml(
        &runtime,
        &short_machine(&endpoint, ", timeout: 1.5"),
        &repo(),
        json!({"n": 1}),
    )
    .await
    .expect("a lenient webhook does not stop the run");
    drop(guard);
    assert_eq!(
        outcome.output,
        json!({"n": 1}),
        "the late reply changed nothing"
    );
    let logs = logs.text();
    assert!(
        logs.contains("did not answer `machine_start` within 1.5s; the run goes on without this hook's changes"),
        "{logs}"
    );
    assert!(
        logs.contains("did not answer `machine_end` within 1.5s"),
        "{logs}"
    );

    let error = run_yaml(
        &runtime,
        &short_machine(&endpoint, ", timeout: 1.5, fatal: true"),
        &repo(),
        json!({"n": 1}),
    )
    .await
    .expect_err("a fatal webhook fails the run");
    let message = error.to_string();
    assert!(message.contains("HookError"), "{message}");
    assert!(
        message.contains(&format!(
            "webhook {endpoint} did not answer `machine_start` within 1.5s"
        )),
        "{message}"
    );
    assert_eq!(
        names(&seen(&events)),
        ["machine_start", "machine_end", "machine_start"]
    );
}

#[tokio::test]
async fn a_500_is_logged_and_the_run_goes_on_unless_fatal() {
    let (server, _) =
        receiver(|_, _| ResponseTemplate::new(500).set_body_string("database down")).await;
    let endpoint = format!("{}/hooks", server.uri());
    let runtime = builder().build();

    let (logs, guard) = Logs::capture();
    let outcome = run_yaml(
        &runtime,
        &short_machine(&endpoint, ""),
        &repo(),
        json!({"n": 2}),
    )
    .await
    .expect("a lenient webhook does not stop the run");
    drop(guard);
    assert_eq!(outcome.output, json!({"n": 2}));
    let logs = logs.text();
    assert!(logs.contains(" ERROR "), "{logs}");
    assert!(
        logs.contains(&format!(
            "flatmachines::hooks: webhook {endpoint} answered `machine_start` with HTTP 500: database down; the run goes on"
        )),
        "{logs}"
    );

    let error = run_yaml(
        &runtime,
        &short_machine(&endpoint, ", fatal: true"),
        &repo(),
        json!({"n": 2}),
    )
    .await
    .expect_err("a fatal webhook fails the run");
    assert!(
        error
            .to_string()
            .contains("hook `on_machine_start` failed: webhook http://127.0.0.1"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .ends_with("answered `machine_start` with HTTP 500: database down"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_and_bad_replies_are_named() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let runtime = builder().build();
    let endpoint = format!("http://127.0.0.1:{port}/hooks");
    let error = run_yaml(
        &runtime,
        &short_machine(&endpoint, ", fatal: true"),
        &repo(),
        json!({"n": 1}),
    )
    .await
    .expect_err("nothing answers");
    assert!(
        error.to_string().contains(&format!(
            "webhook {endpoint} could not be reached for `machine_start`"
        )),
        "{error}"
    );

    for (body, problem) in [
        ("not json", "a body that is not JSON"),
        ("[1, 2]", "a list, where a JSON object was expected"),
        (
            r#"{"context": 7}"#,
            "a reply whose `context` is a number 7, where a mapping was expected",
        ),
        (
            r#"{"output": 1, "hook_error": 42}"#,
            "reported for `machine_start`: 42",
        ),
    ] {
        let (server, _) = receiver(move |_, _| {
            ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
        })
        .await;
        let endpoint = format!("{}/hooks", server.uri());
        let error = run_yaml(
            &runtime,
            &short_machine(&endpoint, ", fatal: true"),
            &repo(),
            json!({"n": 1}),
        )
        .await
        .expect_err("the reply is refused");
        assert!(error.to_string().contains(problem), "{body}: {error}");
    }
}

#[tokio::test]
async fn the_events_filter_limits_what_is_sent() {
    let (server, events) = receiver(|_, _| ResponseTemplate::new(204)).await;
    let endpoint = format!("{}/hooks", server.uri());
    let runtime = builder().build();
    let yaml = short_machine(&endpoint, "").replace(
        "events: [machine_start, machine_end]",
        "events: [state_enter, transition]",
    );
    run_yaml(&runtime, &yaml, &repo(), json!({"n": 1}))
        .await
        .expect("the run completes");
    assert_eq!(
        names(&seen(&events)),
        ["state_enter", "transition", "state_enter"]
    );
}

/// A receiver that checks the bearer token and the signature with `key`, answering 401 when
/// either is wrong and changing the output when both are right.
fn checking_receiver(key: &'static [u8]) -> impl Fn(&Request, &Value) -> ResponseTemplate {
    move |request, event| {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let signed = verify(
            key,
            &header(TIMESTAMP_HEADER),
            &request.body,
            &header(SIGNATURE_HEADER),
            now,
            300,
        );
        if header("authorization") != "Bearer tok-SECRET-123" || signed.is_err() {
            return ResponseTemplate::new(401).set_body_string("bad signature");
        }
        match event["event"].as_str() {
            Some("machine_end") => json_reply(json!({"output": {"verified": true}})),
            _ => ResponseTemplate::new(204),
        }
    }
}

fn signed_hooks(endpoint: &str, secret: &str, fatal: bool) -> Arc<WebhookHooks> {
    let mut config = WebhookConfig::new(endpoint);
    config.bearer_token = Some(Secret::new("tok-SECRET-123"));
    config.signing_secret = Some(Secret::new(secret));
    config.policy = DeliveryPolicy {
        fatal,
        events: EventSet::of([EventKind::MachineStart, EventKind::MachineEnd]),
    };
    Arc::new(WebhookHooks::new(config).expect("a valid webhook"))
}

#[tokio::test]
async fn signatures_are_verified_by_the_receiver_and_a_bad_one_is_rejected() {
    let (server, _) = receiver(checking_receiver(b"sig-SECRET-456")).await;
    let endpoint = format!("{}/hooks", server.uri());
    let yaml = short_machine(&endpoint, "");

    let good = builder()
        .hooks(signed_hooks(&endpoint, "sig-SECRET-456", true))
        .build();
    let outcome = run_yaml(&good, &yaml, &repo(), json!({"n": 1}))
        .await
        .expect("accepted");
    assert_eq!(outcome.output, json!({"verified": true}));

    let forged = builder()
        .hooks(signed_hooks(&endpoint, "not-the-key", true))
        .build();
    let error = run_yaml(&forged, &yaml, &repo(), json!({"n": 1}))
        .await
        .expect_err("rejected");
    assert!(
        error
            .to_string()
            .ends_with("answered `machine_start` with HTTP 401: bad signature"),
        "{error}"
    );
}

#[tokio::test]
async fn tokens_and_signing_secrets_are_never_logged() {
    let (server, _) = receiver(checking_receiver(b"other-key")).await;
    let endpoint = format!("{}/hooks", server.uri());
    let yaml = short_machine(&endpoint, "");
    let hooks = signed_hooks(&endpoint, "sig-SECRET-456", false);
    let debug = format!("{hooks:?}");
    let runtime = builder().hooks(hooks).build();

    let (logs, guard) = Logs::capture();
    run_yaml(&runtime, &yaml, &repo(), json!({"n": 1}))
        .await
        .expect("lenient");
    let unreachable = builder()
        .hooks(signed_hooks(
            "http://127.0.0.1:9/hooks",
            "sig-SECRET-456",
            false,
        ))
        .build();
    run_yaml(&unreachable, &yaml, &repo(), json!({"n": 1}))
        .await
        .expect("lenient");
    drop(guard);

    let logs = logs.text();
    assert!(
        logs.contains("HTTP 401"),
        "the failures were logged: {logs}"
    );
    for text in [&logs, &debug] {
        assert!(!text.contains("tok-SECRET-123"), "{text}");
        assert!(!text.contains("sig-SECRET-456"), "{text}");
    }
}
