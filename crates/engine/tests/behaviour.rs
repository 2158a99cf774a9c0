//! Concurrency, hooks, invokers and execution types, beyond what the corpus pins.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use flatmachines_core::hooks::HookError;
use flatmachines_core::{
    Context, InvokeRequest, MachineHooks, MachineInvoker, ReadOptions, ResultBackend, result_uri,
};
use flatmachines_engine::hooks::{CompositeHooks, MetricsHooks};
use flatmachines_engine::{FnAgent, Machine, RunOptions, RunStatus, Runtime};
use flatmachines_memory::MemoryResultBackend;

const FANOUT: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: fanout
  context: {xs: "{{ input.xs }}"}
  machines:
    child:
      spec: flatmachine
      data:
        name: child
        context: {x: "{{ input.x }}"}
        states: {s: {type: final, output: {x: "{{ context.x }}"}}}
  states:
    start:
      type: initial
      foreach: "{{ context.xs }}"
      machine: child
      input: {x: "{{ item }}"}
      output_to_context: {results: "{{ output }}"}
      transitions: [{to: done}]
    done:
      type: final
      output: {xs: "{{ context.results | map(attribute='x') | list }}"}
"#;

fn with_id(id: &str) -> RunOptions {
    RunOptions {
        execution_id: Some(id.to_owned()),
        max_steps: None,
        parent_execution_id: None,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_foreach_runs_every_child_once_in_item_order() {
    let machine = Machine::from_yaml(FANOUT, ".").unwrap();
    let results = Arc::new(MemoryResultBackend::new());
    let runtime = Runtime::builder().results(results.clone()).build();
    let xs: Vec<u64> = (0..2000).collect();
    let outcome = runtime
        .run(&machine, common::object(json!({"xs": xs})), with_id("big"))
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"xs": xs}));
    // Every child left exactly one result, under its own id.
    let store = runtime.memory_store();
    let children: Vec<String> = flatmachines_core::PersistenceBackend::list(&**store, "")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.ends_with("/latest") && !k.starts_with("big/"))
        .collect();
    assert_eq!(children.len(), 2000);
    for key in &children {
        let id = key.trim_end_matches("/latest");
        let uri = result_uri(id, "result");
        assert!(results.exists(&uri).await.unwrap(), "{id} has no result");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_of_one_runner_stay_apart() {
    let machine = Machine::from_yaml(FANOUT, ".").unwrap();
    let runner = Runtime::default().prepare(&machine).unwrap();
    let runs = (0..20u64).map(|i| {
        let runner = runner.clone();
        tokio::spawn(async move {
            let xs: Vec<u64> = (i..i + 5).collect();
            let outcome = runner
                .run(common::object(json!({"xs": xs})), RunOptions::default())
                .await
                .unwrap();
            (xs, outcome.output)
        })
    });
    for run in futures::future::join_all(runs).await {
        let (xs, output) = run.unwrap();
        assert_eq!(output, json!({"xs": xs}));
    }
}

const SLEEPERS: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: sleepers
  context: {jobs: "{{ input.jobs }}"}
  agents: {sleep: {type: test}}
  machines:
    sleeper:
      spec: flatmachine
      data:
        name: sleeper
        agents: {sleep: {type: test}}
        context: {ms: "{{ input.ms }}", name: "{{ input.name }}"}
        states:
          s:
            type: initial
            agent: sleep
            input: {ms: "{{ context.ms }}", name: "{{ context.name }}"}
            transitions: [{to: done}]
          done: {type: final, output: {name: "{{ context.name }}"}}
  states:
    start:
      type: initial
      foreach: "{{ context.jobs }}"
      as: job
      key: "{{ job.name }}"
      machine: sleeper
      input: {ms: "{{ job.ms }}", name: "{{ job.name }}"}
      mode: MODE
      TIMEOUT
      on_error: {Timeout: timed_out}
      output_to_context: {results: "{{ output }}"}
      transitions: [{to: done}]
    timed_out: {type: final, output: {timed_out: true}}
    done: {type: final, output: {results: "{{ context.results }}"}}
"#;

fn sleepers(mode: &str, timeout: Option<&str>) -> Machine {
    let yaml = SLEEPERS.replace("MODE", mode).replace(
        "TIMEOUT",
        &timeout.map(|t| format!("timeout: {t}")).unwrap_or_default(),
    );
    Machine::from_yaml(&yaml, ".").unwrap()
}

fn jobs() -> serde_json::Map<String, Value> {
    common::object(json!({"jobs": [
        {"name": "fast", "ms": 1},
        {"name": "slow", "ms": 150},
        {"name": "slower", "ms": 200},
    ]}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_mode_returns_the_first_and_the_run_waits_for_the_rest() {
    let results = Arc::new(MemoryResultBackend::new());
    let runtime = common::with_test_agents(Runtime::builder().results(results.clone())).build();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        runtime.run(&sleepers("any", None), jobs(), with_id("any-1")),
    )
    .await
    .expect("bounded")
    .unwrap();
    assert_eq!(
        outcome.output,
        json!({"results": {"fast": {"name": "fast"}}})
    );
    // All three children finished before `run` returned.
    let store = runtime.memory_store();
    let ended = finished_children(store, "any-1").await;
    assert_eq!(ended, 3);
}

async fn finished_children(store: &flatmachines_memory::MemoryBackend, parent: &str) -> usize {
    let keys = flatmachines_core::PersistenceBackend::list(store, "")
        .await
        .unwrap();
    let mut ended = 0;
    for key in keys
        .iter()
        .filter(|k| k.ends_with("/latest") && !k.starts_with(parent))
    {
        let id = key.trim_end_matches("/latest");
        let snapshot = flatmachines_engine::load_latest(store, id)
            .await
            .unwrap()
            .unwrap();
        if snapshot.event.as_deref() == Some("machine_end") {
            ended += 1;
        }
    }
    ended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_timeout_fails_the_state_and_stops_the_children() {
    let runtime = common::test_runtime();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        runtime.run(
            &sleepers("settled", Some("0.05")),
            jobs(),
            with_id("settled-1"),
        ),
    )
    .await
    .expect("bounded")
    .unwrap();
    assert_eq!(outcome.output, json!({"timed_out": true}));
    // Give an aborted child time to (wrongly) finish, then check none of the slow ones did.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ended = finished_children(runtime.memory_store(), "settled-1").await;
    assert!(ended <= 1, "{ended} children finished after the timeout");
}

#[tokio::test]
async fn metrics_and_composite_hooks_see_every_step() {
    let machine = Machine::from_yaml(
        r#"
spec: flatmachine
data:
  name: hooked
  states:
    start: {type: initial, transitions: [{to: middle}]}
    middle: {transitions: [{to: done}]}
    done: {type: final}
"#,
        ".",
    )
    .unwrap();
    let metrics = MetricsHooks::new();
    let hooks = CompositeHooks::new(vec![Arc::new(metrics.clone()), Arc::new(metrics.clone())]);
    let runtime = Runtime::builder().hooks(Arc::new(hooks)).build();
    runtime
        .run(&machine, Default::default(), RunOptions::default())
        .await
        .unwrap();
    let counted = metrics.metrics();
    // Both composed hooks share one counter, so every event counts twice.
    assert_eq!(counted.total_states_executed, 6);
    assert_eq!(counted.state_counts["middle"], 2);
    assert_eq!(counted.transition_counts["start->middle"], 2);
    assert_eq!(counted.error_count, 0);
}

/// Sets a context key at start and wraps the final output.
#[derive(Debug)]
struct Wrapping;

#[async_trait]
impl MachineHooks for Wrapping {
    async fn on_machine_start(&self, context: &mut Context) -> Result<(), HookError> {
        context.insert("from_hook".into(), json!("set at start"));
        Ok(())
    }

    async fn on_machine_end(
        &self,
        _context: &mut Context,
        output: &mut Value,
    ) -> Result<(), HookError> {
        *output = json!({"wrapped": output.take()});
        Ok(())
    }
}

#[tokio::test]
async fn hooks_change_the_context_and_the_output() {
    let machine = Machine::from_yaml(
        "spec: flatmachine\ndata:\n  states:\n    s: {type: final, output: {seen: \"{{ context.from_hook }}\"}}\n",
        ".",
    )
    .unwrap();
    let runtime = Runtime::builder().hooks(Arc::new(Wrapping)).build();
    let outcome = runtime
        .run(&machine, Default::default(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"wrapped": {"seen": "set at start"}}));
}

/// Plays a remote worker: records each request and writes a result for it.
#[derive(Debug)]
struct RecordingInvoker {
    results: Arc<MemoryResultBackend>,
    requests: Mutex<Vec<InvokeRequest>>,
}

#[async_trait]
impl MachineInvoker for RecordingInvoker {
    async fn launch(&self, request: InvokeRequest) -> flatmachines_core::Result<()> {
        let uri = result_uri(&request.execution_id, "result");
        let answer = json!({"remote": request.machine, "x": request.input.get("x")});
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(request);
        self.results.write(&uri, answer).await
    }
}

#[tokio::test]
async fn an_invoker_starts_children_elsewhere() {
    let results = Arc::new(MemoryResultBackend::new());
    let invoker = Arc::new(RecordingInvoker {
        results: Arc::clone(&results),
        requests: Mutex::new(Vec::new()),
    });
    let runtime = Runtime::builder()
        .results(results.clone())
        .invoker(invoker.clone())
        .build();
    let machine = Machine::from_yaml(FANOUT, ".").unwrap();
    let outcome = runtime
        .run(
            &machine,
            common::object(json!({"xs": [4, 5]})),
            with_id("remote"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"xs": [4, 5]}));
    let requests = invoker.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.machine == "child"));
    assert!(
        requests
            .iter()
            .all(|r| r.parent_execution_id.as_deref() == Some("remote"))
    );
    let first = results
        .read(
            &result_uri(&requests[0].execution_id, "result"),
            ReadOptions::now(),
        )
        .await
        .unwrap();
    assert!(first.is_some());
}

#[tokio::test(start_paused = true)]
async fn retry_waits_its_backoffs() {
    let machine = Machine::from_yaml(
        r#"
spec: flatmachine
data:
  agents: {flaky: {type: test}}
  states:
    start:
      type: initial
      agent: flaky
      input: {failures: 2}
      execution: {type: retry, backoffs: [2, 8, 16], jitter: 0.1}
      transitions: [{to: done}]
    done: {type: final}
"#,
        ".",
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let outcome = common::test_runtime()
        .run(&machine, Default::default(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Completed);
    // Two failures: waits of 2 s and 8 s, each ±10%.
    let waited = started.elapsed().as_secs_f64();
    assert!((9.0..=11.0).contains(&waited), "waited {waited} s");
}

#[tokio::test]
async fn an_agent_registered_by_name_serves_every_machine() {
    let machine = Machine::from_yaml(
        r#"
spec: flatmachine
data:
  agents: {writer: ./writer.yml}
  states:
    start:
      type: initial
      agent: writer
      input: {topic: "{{ context.topic }}"}
      output_to_context: {draft: "{{ output.content }}"}
      transitions: [{to: done}]
    done: {type: final, output: {draft: "{{ context.draft }}"}}
  context: {topic: "{{ input.topic }}"}
"#,
        ".",
    )
    .unwrap();
    let writer = FnAgent::new(|input, _| async move {
        let topic = input
            .get("topic")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Ok(flatmachines_core::AgentResult::with_content(format!(
            "a poem about {topic}"
        )))
    });
    let runtime = Runtime::builder().agent("writer", writer.shared()).build();
    let outcome = runtime
        .run(
            &machine,
            common::object(json!({"topic": "rust"})),
            RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"draft": "a poem about rust"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_stops_the_whole_subtree() {
    let yaml = r#"
spec: flatmachine
data:
  name: top
  machines:
    middle:
      spec: flatmachine
      data:
        name: middle
        machines:
          sleeper:
            spec: flatmachine
            data:
              name: sleeper
              agents: {sleep: {type: test}}
              states:
                s:
                  type: initial
                  agent: sleep
                  input: {ms: 400, name: deep}
                  transitions: [{to: done}]
                done: {type: final}
        states:
          start: {type: initial, machine: sleeper, transitions: [{to: done}]}
          done: {type: final}
  states:
    start:
      type: initial
      machine: middle
      timeout: 0.05
      on_error: {Timeout: stopped}
      transitions: [{to: done}]
    stopped: {type: final, output: {stopped: true}}
    done: {type: final, output: {stopped: false}}
"#;
    let machine = Machine::from_yaml(yaml, ".").unwrap();
    let runtime = common::test_runtime();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        runtime.run(&machine, Default::default(), with_id("top-1")),
    )
    .await
    .expect("bounded")
    .unwrap();
    assert_eq!(outcome.output, json!({"stopped": true}));
    // Long enough for the grandchild to have finished had it not been stopped with its parent.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(finished_children(runtime.memory_store(), "top-1").await, 0);
}

#[tokio::test(start_paused = true)]
async fn retry_never_waits_less_than_retry_after() {
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let limited = FnAgent::new(move |_, _| {
        let calls = Arc::clone(&counted);
        async move {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return Err(flatmachines_core::AgentError::new("slow down")
                    .with_status(429)
                    .with_header("Retry-After", "20"));
            }
            Ok(flatmachines_core::AgentResult::with_content("ok"))
        }
    });
    let machine = Machine::from_yaml(
        r#"
spec: flatmachine
data:
  agents: {limited: {type: test}}
  states:
    start:
      type: initial
      agent: limited
      execution: {type: retry, backoffs: [1], jitter: 0}
      output_to_context: {said: "{{ output.content }}"}
      transitions: [{to: done}]
    done: {type: final, output: {said: "{{ context.said }}"}}
"#,
        ".",
    )
    .unwrap();
    let runtime = Runtime::builder()
        .agent("limited", limited.shared())
        .build();
    let started = tokio::time::Instant::now();
    let outcome = runtime
        .run(&machine, Default::default(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"said": "ok"}));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(20),
        "waited {waited:?} despite Retry-After: 20"
    );
}
