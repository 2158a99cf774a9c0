//! Agents inside machines, through the engine's execution types, against mock providers.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use common::{Dir, SECRET, Sequence, agent_yaml, ok_chat, profiles, server};
use flatmachines_core::{JsonMap, PersistenceBackend};
use flatmachines_engine::{Machine, RunOptions, Runtime};

const VOTER: &str = r#"  name: voter
  user: "Pick: {{ input.question }}"
  output:
    answer: {type: str}
"#;

/// A machine calling `agent.yml` once under `execution`, putting its output into the result.
fn machine(execution: &str) -> String {
    format!(
        r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: calls
  agents: {{voter: ./agent.yml}}
  states:
    start:
      type: initial
      agent: voter
      input: {{question: "a or b?"}}
      execution: {execution}
      output_to_context: {{result: "{{{{ output }}}}"}}
      transitions: [{{to: done}}]
    done:
      type: final
      output: {{result: "{{{{ context.result }}}}"}}
"#
    )
}

/// The configs (keep the directory alive until the machine is prepared) and the machine.
fn setup(uri: &str, key_env: &str, execution: &str, agent: &str) -> (Dir, Machine) {
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: gpt-test, base_url: '{uri}', api_key_env: {key_env}, input_cost_per_million: 1, output_cost_per_million: 1"
        )),
    );
    dir.write("agent.yml", &agent_yaml(agent));
    let file = dir.write("machine.yml", &machine(execution));
    let machine = Machine::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    (dir, machine)
}

fn runtime() -> Runtime {
    Runtime::builder()
        .agent_adapter(Arc::new(common::adapter()))
        .build()
}

/// 17 tokens at 1 per million.
const CALL_COST: f64 = 17.0 / 1_000_000.0;

#[tokio::test]
async fn retry_waits_for_retry_after_then_succeeds() {
    let limited = ResponseTemplate::new(429)
        .insert_header("Retry-After", "0.3")
        .set_body_json(json!({"error": {"message": "Rate limit reached", "type": "requests"}}));
    let (answers, calls) = Sequence::new(vec![limited, ok_chat(r#"{"answer": "a"}"#)]);
    let mock = server("/chat/completions", answers).await;
    let (_dir, machine) = setup(
        &mock.uri(),
        "MACHINE_TEST_RETRY_KEY",
        "{type: retry, backoffs: [0.01, 0.01], jitter: 0}",
        VOTER,
    );
    let started = Instant::now();
    let outcome = runtime()
        .run(&machine, JsonMap::new(), RunOptions::default())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited only {:?} despite Retry-After: 0.3",
        started.elapsed()
    );
    assert_eq!(outcome.output, json!({"result": {"answer": "a"}}));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The failed call made no completion, so only the successful one counts.
    assert_eq!(outcome.total_api_calls, 1);
    assert!((outcome.total_cost - CALL_COST).abs() < 1e-12);
}

#[tokio::test]
async fn server_errors_exhaust_the_retries_into_the_error_payload() {
    let failing = ResponseTemplate::new(500)
        .insert_header("x-request-id", "abc")
        .set_body_string("upstream exploded");
    let (answers, calls) = Sequence::new(vec![failing]);
    let mock = server("/chat/completions", answers).await;
    let (_dir, machine) = setup(
        &mock.uri(),
        "MACHINE_TEST_500_KEY",
        "{type: retry, backoffs: [0.01, 0.01], jitter: 0}",
        VOTER,
    );
    let outcome = runtime()
        .run(&machine, JsonMap::new(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let result = &outcome.output["result"];
    assert_eq!(result["_error_type"], json!("ServerError"));
    assert_eq!(result["_error_status_code"], json!(500));
    assert_eq!(result["_error_headers"]["x-request-id"], json!("abc"));
    let message = result["_error"].as_str().unwrap();
    assert!(message.contains("HTTP 500: upstream exploded"), "{message}");
}

#[tokio::test]
async fn parallel_samples_collect_every_answer() {
    let (answers, calls) = Sequence::new(vec![
        ok_chat(r#"{"answer": "a"}"#),
        ok_chat(r#"{"answer": "b"}"#),
        ok_chat(r#"{"answer": "c"}"#),
    ]);
    let mock = server("/chat/completions", answers).await;
    let (_dir, machine) = setup(
        &mock.uri(),
        "MACHINE_TEST_PARALLEL_KEY",
        "{type: parallel, n_samples: 3}",
        VOTER,
    );
    let outcome = runtime()
        .run(&machine, JsonMap::new(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let result = &outcome.output["result"];
    assert_eq!(result["count"], json!(3));
    let mut answers: Vec<&str> = result["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["answer"].as_str().unwrap())
        .collect();
    answers.sort_unstable();
    assert_eq!(answers, ["a", "b", "c"]);
    assert_eq!(outcome.total_api_calls, 3);
    assert!((outcome.total_cost - 3.0 * CALL_COST).abs() < 1e-12);
}

#[tokio::test]
async fn mdap_voting_picks_the_answer_that_gets_ahead() {
    let (answers, calls) = Sequence::new(vec![
        ok_chat(r#"{"answer": "b"}"#),
        ok_chat("no JSON here"),
        ok_chat(r#"{"answer": "a"}"#),
        ok_chat("```json\n{\"answer\": \"a\"}\n```"),
        ok_chat(r#"{"answer": "a"}"#),
    ]);
    let mock = server("/chat/completions", answers).await;
    // The agent's metadata sets the margin and a validation schema, which red-flags the
    // unparseable `{"_raw": …}` answer.
    let agent = format!(
        "{VOTER}metadata:\n  mdap: {{k_margin: 2, max_candidates: 8}}\n  validation: {{type: object, required: [answer]}}\n"
    );
    let (_dir, machine) = setup(
        &mock.uri(),
        "MACHINE_TEST_MDAP_KEY",
        "{type: mdap_voting}",
        &agent,
    );
    let outcome = runtime()
        .run(&machine, JsonMap::new(), RunOptions::default())
        .await
        .unwrap();
    // b, (red flag), a, a: "a" reaches k_margin = 2 votes on the fourth sample.
    assert_eq!(outcome.output, json!({"result": {"answer": "a"}}));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(outcome.total_api_calls, 4);
}

#[tokio::test]
async fn mdap_voting_reads_regex_parsing_from_the_agent_metadata() {
    let (answers, calls) = Sequence::new(vec![
        ok_chat("I pick ANSWER: 7 because"),
        ok_chat("hmm"),
        ok_chat("ANSWER: 7"),
    ]);
    let mock = server("/chat/completions", answers).await;
    let agent = "  user: \"{{ input.question }}\"\nmetadata:\n  mdap: {k_margin: 2}\n  parsing:\n    value: {pattern: 'ANSWER: (\\d+)', type: int}\n";
    let (_dir, machine) = setup(
        &mock.uri(),
        "MACHINE_TEST_PARSE_KEY",
        "{type: mdap_voting, max_candidates: 5}",
        agent,
    );
    let outcome = runtime()
        .run(&machine, JsonMap::new(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"result": {"value": 7}}));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn keys_never_reach_checkpoints_or_outputs() {
    let echo =
        ResponseTemplate::new(403).set_body_string(format!("key {SECRET} may not use this model"));
    let mock = server("/chat/completions", echo).await;
    let (_dir, machine) = setup(
        &mock.uri(),
        "MACHINE_TEST_SECRET_KEY",
        "{type: retry, backoffs: [0], jitter: 0}",
        VOTER,
    );
    let runtime = runtime();
    let runner = runtime.prepare(&machine).unwrap();
    assert!(!format!("{runner:?} {runtime:?}").contains(SECRET));
    let outcome = runner
        .run(JsonMap::new(), RunOptions::default())
        .await
        .unwrap();
    let result = &outcome.output["result"];
    assert_eq!(result["_error_type"], json!("AuthenticationError"));
    assert!(
        result["_error"]
            .as_str()
            .unwrap()
            .contains("key [redacted] may not")
    );
    assert!(!outcome.output.to_string().contains(SECRET));
    let store = runtime.memory_store();
    let keys = store.list("").await.unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        let bytes = store.load(&key).await.unwrap().unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(SECRET), "checkpoint {key} holds the key");
    }
}

#[tokio::test]
async fn the_output_feeds_transitions_and_context() {
    let mock = server("/chat/completions", ok_chat(r#"{"answer": "b"}"#)).await;
    let dir = Dir::new();
    dir.write(
        "profiles.yml",
        &profiles(&format!(
            "provider: openai, name: gpt-test, base_url: '{}', api_key_env: MACHINE_TEST_FLOW_KEY",
            mock.uri()
        )),
    );
    dir.write("agents/voter.yml", &agent_yaml(VOTER));
    let file = dir.write(
        "machine.yml",
        r#"spec: flatmachine
data:
  name: flow
  agents: {voter: agents/voter.yml}
  context: {q: "{{ input.q }}"}
  states:
    ask:
      type: initial
      agent: voter
      input: {question: "{{ context.q }}"}
      output_to_context: {answer: "{{ output.answer }}"}
      transitions:
        - {condition: "context.answer == 'a'", to: was_a}
        - {to: was_other}
    was_a: {type: final, output: {picked: a}}
    was_other: {type: final, output: {picked: "{{ context.answer }}"}}
"#,
    );
    let machine = Machine::from_file(&file).unwrap();
    let outcome = runtime()
        .run(
            &machine,
            common::object(json!({"q": "?"})),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"picked": "b"}));
    let sent = common::bodies(&mock).await;
    assert_eq!(sent[0]["messages"][1]["content"], Value::from("Pick: ?"));
}
