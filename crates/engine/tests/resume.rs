//! Resuming executions from their checkpoints.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use flatmachines_core::{AgentResult, PersistenceBackend};
use flatmachines_engine::{
    FnAgent, Machine, RunError, RunOptions, RunStatus, Runtime, load_latest,
};
use flatmachines_memory::MemoryBackend;

fn options(id: &str, max_steps: Option<u64>) -> RunOptions {
    RunOptions {
        execution_id: Some(id.to_owned()),
        max_steps,
        parent_execution_id: None,
        ..Default::default()
    }
}

const COUNTER: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: counter
  machines:
    inc:
      spec: flatmachine
      data:
        name: inc
        context: {n: "{{ input.n }}"}
        states: {s: {type: final, output: {n: "{{ context.n + 1 }}"}}}
  context: {n: 0, limit: "{{ input.limit }}"}
  states:
    start:
      type: initial
      machine: inc
      input: {n: "{{ context.n }}"}
      output_to_context: {n: "{{ output.n }}"}
      transitions:
        - condition: "context.n >= context.limit"
          to: done
        - to: start
    done:
      type: final
      output: {n: "{{ context.n }}"}
"#;

#[tokio::test]
async fn a_run_stopped_at_its_step_limit_resumes_to_the_same_output() {
    let store = Arc::new(MemoryBackend::new());
    let machine = Machine::from_yaml(COUNTER, ".").unwrap();
    let runner = Runtime::builder()
        .persistence(store.clone())
        .build()
        .prepare(&machine)
        .unwrap();
    let input = common::object(json!({"limit": 6}));
    let stopped = runner
        .run(input.clone(), options("limited", Some(3)))
        .await
        .unwrap();
    assert!(matches!(
        stopped.status,
        RunStatus::StepLimit { limit: 3, .. }
    ));
    let resumed = runner.resume("limited", None).await.unwrap();
    assert_eq!(resumed.status, RunStatus::Completed);
    let straight = runner.run(input, options("straight", None)).await.unwrap();
    assert_eq!(resumed.output, straight.output);
    assert_eq!(resumed.output, json!({"n": 6}));
    assert_eq!(resumed.steps, straight.steps);
}

fn counting_agent(
    calls: Arc<AtomicU64>,
    slow_item: Option<i64>,
) -> Arc<dyn flatmachines_core::AgentExecutor> {
    FnAgent::new(move |input, _| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let item = input.get("item").and_then(Value::as_i64).unwrap_or(0);
            if Some(item) == slow_item {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok(AgentResult::with_output(common::object(
                json!({"done": item}),
            )))
        }
    })
    .shared()
}

const FAN: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: fan
  machines:
    job:
      spec: flatmachine
      data:
        name: job
        agents: {work: {type: test}}
        context: {item: "{{ input.item }}"}
        states:
          s:
            type: initial
            agent: work
            input: {item: "{{ context.item }}"}
            output_to_context: {done: "{{ output.done }}"}
            transitions: [{to: end}]
          end: {type: final, output: {done: "{{ context.done }}"}}
  context: {items: "{{ input.items }}"}
  states:
    fan:
      type: initial
      foreach: "{{ context.items }}"
      machine: job
      input: {item: "{{ item }}"}
      timeout: 0.3
      output_to_context: {done: "{{ output | map(attribute='done') | list }}"}
      transitions: [{to: end}]
    end: {type: final, output: {done: "{{ context.done }}"}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_failed_fan_out_reuses_the_children_that_finished() {
    let store = Arc::new(MemoryBackend::new());
    let machine = Machine::from_yaml(FAN, ".").unwrap();
    let input = common::object(json!({"items": [1, 2, 3, 4]}));

    // First attempt: item 3 hangs, the state times out and the run fails.
    let first_calls = Arc::new(AtomicU64::new(0));
    let first = Runtime::builder()
        .persistence(store.clone())
        .agent("work", counting_agent(first_calls.clone(), Some(3)))
        .build();
    let error = first
        .run(&machine, input, options("fan-1", None))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("(Timeout)"), "{error}");
    assert_eq!(first_calls.load(Ordering::SeqCst), 4);

    // Resume: only the interrupted child calls its agent again.
    let second_calls = Arc::new(AtomicU64::new(0));
    let second = Runtime::builder()
        .persistence(store.clone())
        .agent("work", counting_agent(second_calls.clone(), None))
        .build();
    let outcome = second
        .prepare(&machine)
        .unwrap()
        .resume("fan-1", None)
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"done": [1, 2, 3, 4]}));
    assert_eq!(second_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_finished_execution_returns_its_stored_output_without_running() {
    let store = Arc::new(MemoryBackend::new());
    let machine = Machine::from_yaml(FAN, ".").unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let runtime = Runtime::builder()
        .persistence(store.clone())
        .agent("work", counting_agent(calls.clone(), None))
        .build();
    let runner = runtime.prepare(&machine).unwrap();
    let first = runner
        .run(
            common::object(json!({"items": [7, 8]})),
            options("done-1", None),
        )
        .await
        .unwrap();
    let keys_before = store.list("").await.unwrap();
    let again = runner.resume("done-1", None).await.unwrap();
    assert_eq!(again.output, first.output);
    assert_eq!(again.steps, first.steps);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(store.list("").await.unwrap(), keys_before);
}

const LAUNCHER: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: launcher
  machines:
    job:
      spec: flatmachine
      data:
        name: job
        agents: {work: {type: test}}
        context: {item: "{{ input.item }}"}
        states:
          s:
            type: initial
            agent: work
            input: {item: "{{ context.item }}"}
            transitions: [{to: end}]
          end: {type: final, output: {item: "{{ context.item }}"}}
  states:
    start:
      type: initial
      launch: job
      launch_input: {item: 3}
      transitions: [{to: end}]
    end: {type: final, output: {launched: true}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_launch_is_finished_exactly_once_on_resume() {
    let store = Arc::new(MemoryBackend::new());
    let machine = Machine::from_yaml(LAUNCHER, ".").unwrap();

    // The launched child hangs; the caller gives up and drops the run (like a crash).
    let first_calls = Arc::new(AtomicU64::new(0));
    let first = Runtime::builder()
        .persistence(store.clone())
        .agent("work", counting_agent(first_calls.clone(), Some(3)))
        .build();
    let attempt = tokio::time::timeout(
        Duration::from_millis(300),
        first.run(&machine, Default::default(), options("launcher-1", None)),
    )
    .await;
    assert!(
        attempt.is_err(),
        "the run should still be waiting for its launched child"
    );
    assert_eq!(first_calls.load(Ordering::SeqCst), 1);

    let second_calls = Arc::new(AtomicU64::new(0));
    let second = Runtime::builder()
        .persistence(store.clone())
        .agent("work", counting_agent(second_calls.clone(), None))
        .build();
    let runner = second.prepare(&machine).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), runner.resume("launcher-1", None))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(outcome.output, json!({"launched": true}));
    assert_eq!(second_calls.load(Ordering::SeqCst), 1);

    // The child ended once, and the parent's last snapshot holds no pending launch.
    let keys = store.list("").await.unwrap();
    let child_ends: Vec<&String> = keys
        .iter()
        .filter(|k| k.ends_with("_machine_end.json") && !k.starts_with("launcher-1/"))
        .collect();
    assert_eq!(child_ends.len(), 1, "{keys:?}");
    let parent = load_latest(&*store, "launcher-1").await.unwrap().unwrap();
    assert_eq!(parent.pending_launches, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_cut_short_at_random_moments_resume_to_the_uninterrupted_output() {
    for seed in 1..=8 {
        cut_short_and_resume(seed).await;
    }
}

async fn cut_short_and_resume(seed: u64) {
    let machine = Machine::from_yaml(COUNTER, ".").unwrap();
    let input = common::object(json!({"limit": 40}));
    let expected = Runtime::default()
        .run(&machine, input.clone(), RunOptions::default())
        .await
        .unwrap()
        .output;
    let store = Arc::new(MemoryBackend::new());
    let runner = Runtime::builder()
        .persistence(store.clone())
        .build()
        .prepare(&machine)
        .unwrap();
    let mut rng = fastrand_like(seed);
    let mut cut_short = 0;
    let mut first = true;
    // Bounded: at most 200 attempts.
    for _ in 0..200 {
        let budget = Duration::from_micros(rng() % 1500);
        let attempt = if first {
            tokio::time::timeout(budget, runner.run(input.clone(), options("cut", None))).await
        } else {
            tokio::time::timeout(budget, runner.resume("cut", None)).await
        };
        match attempt {
            Ok(Ok(outcome)) => {
                assert_eq!(outcome.output, expected);
                assert!(cut_short > 0, "the budget never cut a run short");
                return;
            }
            Ok(Err(RunError::Resume { .. })) if first => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => cut_short += 1,
        }
        // The pointer commits a checkpoint: until one exists the execution starts again.
        first = store.load("cut/latest").await.unwrap().is_none();
        tokio::task::yield_now().await;
    }
    // Out of attempts: the last resume without a budget must finish it.
    let outcome = runner.resume("cut", None).await.unwrap();
    assert_eq!(outcome.output, expected);
}

/// A small deterministic generator, so a failing sequence repeats.
fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[tokio::test]
async fn stores_that_cannot_resume_say_why() {
    let store = Arc::new(MemoryBackend::new());
    let machine = Machine::from_yaml(COUNTER, ".").unwrap();
    let runner = Runtime::builder()
        .persistence(store.clone())
        .build()
        .prepare(&machine)
        .unwrap();
    runner
        .run(
            common::object(json!({"limit": 2})),
            options("good", Some(1)),
        )
        .await
        .unwrap();
    let mut messages = Vec::new();
    let mut attempt = |label: &str, error: RunError| messages.push(format!("{label}: {error}"));

    attempt(
        "unknown id",
        runner.resume("nobody", None).await.unwrap_err(),
    );
    attempt(
        "path traversal",
        runner.resume("../good", None).await.unwrap_err(),
    );

    // A corrupt snapshot under the pointer.
    let pointer = store.load("good/latest").await.unwrap().unwrap();
    let key = String::from_utf8(pointer.to_vec()).unwrap();
    let original = store.load(&key).await.unwrap().unwrap();
    store
        .save(&key, Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    attempt(
        "corrupt snapshot",
        runner.resume("good", None).await.unwrap_err(),
    );
    assert_eq!(
        store.load(&key).await.unwrap().unwrap(),
        Bytes::from_static(b"{not json")
    );
    store.save(&key, original.clone()).await.unwrap();

    // A pointer that leads elsewhere, and a missing pointer.
    store
        .save(
            "good/latest",
            Bytes::from_static(b"other/step_000001_execute.json"),
        )
        .await
        .unwrap();
    attempt(
        "pointer elsewhere",
        runner.resume("good", None).await.unwrap_err(),
    );
    store.delete("good/latest").await.unwrap();
    attempt(
        "missing pointer",
        runner.resume("good", None).await.unwrap_err(),
    );
    store.save("good/latest", pointer.clone()).await.unwrap();

    // Another machine's checkpoints.
    let other = Machine::from_yaml(&COUNTER.replace("name: counter", "name: other"), ".").unwrap();
    let other_runner = Runtime::builder()
        .persistence(store.clone())
        .build()
        .prepare(&other)
        .unwrap();
    attempt(
        "wrong machine",
        other_runner.resume("good", None).await.unwrap_err(),
    );

    // Nothing was lost: the execution still resumes and finishes.
    let outcome = runner.resume("good", None).await.unwrap();
    assert_eq!(outcome.output, json!({"n": 2}));
    insta::assert_snapshot!(messages.join("\n"));
}

const ASK: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: ask
  agents: {oracle: {type: test}}
  states:
    ask:
      type: initial
      agent: oracle
      input: {item: 7}
      output_to_context: {done: "{{ output.done }}"}
      transitions: [{to: end}]
    end: {type: final, output: {done: "{{ context.done }}"}}
"#;

#[tokio::test]
async fn an_answer_recorded_before_a_crash_is_not_asked_for_again() {
    let calls = Arc::new(AtomicU64::new(0));
    // Every `state_exit` write dies while `dying` is set.
    let dying = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let switch = Arc::clone(&dying);
    let store = common::DyingStore::new(move |key| {
        key.ends_with("_state_exit.json") && switch.load(Ordering::SeqCst)
    });
    let machine = Machine::from_yaml(ASK, ".").unwrap();
    let runner = Runtime::builder()
        .persistence(store.clone())
        .agent("oracle", counting_agent(Arc::clone(&calls), None))
        .build()
        .prepare(&machine)
        .unwrap();
    let error = runner
        .run(common::object(json!({})), options("asked", None))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("the process died here"),
        "{error}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let latest = load_latest(&store.inner, "asked").await.unwrap().unwrap();
    assert_eq!(latest.event.as_deref(), Some("agent_result"));
    assert_eq!(latest.current_state, "ask");
    assert_eq!(latest.output, Some(json!({"done": 7})));

    dying.store(false, Ordering::SeqCst);
    let resumed = runner.resume("asked", None).await.unwrap();
    assert_eq!(resumed.output, json!({"done": 7}));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the agent was called again"
    );
}
