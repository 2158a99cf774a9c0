//! Checkpoints follow the reference's key layout and wire format.

mod common;

use std::sync::Arc;

use serde_json::{Value, json};

use flatmachines_core::{MachineSnapshot, PersistenceBackend};
use flatmachines_engine::{Machine, RunOptions, Runtime, latest_key, load_latest};
use flatmachines_memory::MemoryBackend;

const LOOP: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: two-step
  context: {n: "{{ input.n }}"}
  states:
    start:
      type: initial
      transitions: [{to: done}]
    done:
      type: final
      output: {n: "{{ context.n }}"}
"#;

async fn run_with(yaml: &str, store: Arc<MemoryBackend>, id: &str) -> Value {
    let machine = Machine::from_yaml(yaml, ".").unwrap();
    let runtime = common::with_test_agents(Runtime::builder().persistence(store)).build();
    let options = RunOptions {
        execution_id: Some(id.to_owned()),
        max_steps: None,
        parent_execution_id: None,
        ..Default::default()
    };
    runtime
        .run(&machine, common::object(json!({"n": 7})), options)
        .await
        .unwrap()
        .output
}

#[tokio::test]
async fn keys_follow_the_reference_layout() {
    let store = Arc::new(MemoryBackend::new());
    run_with(LOOP, Arc::clone(&store), "exec-1").await;
    let keys = store.list("exec-1/").await.unwrap();
    assert_eq!(
        keys,
        [
            "exec-1/latest",
            "exec-1/step_000000_machine_start.json",
            "exec-1/step_000001_execute.json",
            "exec-1/step_000001_state_enter.json",
            "exec-1/step_000001_state_exit.json",
            "exec-1/step_000002_execute.json",
            "exec-1/step_000002_machine_end.json",
            "exec-1/step_000002_state_enter.json",
            "exec-1/step_000002_state_exit.json",
        ]
    );
    let pointer = store.load(&latest_key("exec-1")).await.unwrap().unwrap();
    assert_eq!(&pointer[..], b"exec-1/step_000002_machine_end.json");
}

#[tokio::test]
async fn snapshots_have_the_reference_fields_in_order() {
    let store = Arc::new(MemoryBackend::new());
    run_with(LOOP, Arc::clone(&store), "exec-2").await;
    let bytes = store
        .load("exec-2/step_000002_machine_end.json")
        .await
        .unwrap()
        .unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    let value: Value = serde_json::from_str(text).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "execution_id",
            "machine_name",
            "spec_version",
            "current_state",
            "context",
            "step",
            "created_at",
            "event",
            "output",
            "total_api_calls",
            "total_cost",
            "parent_execution_id",
            "pending_launches"
        ]
    );
    assert_eq!(value["current_state"], "end");
    assert_eq!(value["output"], json!({"n": 7}));
    assert_eq!(value["context"], json!({"n": 7}));
    assert_eq!(value["total_cost"], json!(0.0));
    assert_eq!(value["parent_execution_id"], Value::Null);
    // Python's datetime.isoformat() in UTC: microseconds and a +00:00 offset.
    let created = value["created_at"].as_str().unwrap();
    assert!(
        created.ends_with("+00:00") && created.len() == 32,
        "{created}"
    );

    let snapshot = load_latest(&*store, "exec-2").await.unwrap().unwrap();
    assert_eq!(snapshot.event.as_deref(), Some("machine_end"));
    assert_eq!(snapshot.step, 2);
    let start: MachineSnapshot = serde_json::from_slice(
        &store
            .load("exec-2/step_000000_machine_start.json")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(start.current_state, "start");
}

#[tokio::test]
async fn checkpoint_on_and_enabled_are_honoured() {
    let store = Arc::new(MemoryBackend::new());
    let only_ends = LOOP.replace(
        "  name: two-step\n",
        "  name: two-step\n  persistence: {enabled: true, backend: memory, checkpoint_on: [machine_start, machine_end]}\n",
    );
    run_with(&only_ends, Arc::clone(&store), "ends").await;
    assert_eq!(
        store.list("ends/").await.unwrap(),
        [
            "ends/latest",
            "ends/step_000000_machine_start.json",
            "ends/step_000002_machine_end.json"
        ]
    );
    let disabled = LOOP.replace(
        "  name: two-step\n",
        "  name: two-step\n  persistence: {enabled: false}\n",
    );
    run_with(&disabled, Arc::clone(&store), "off").await;
    assert!(store.list("off/").await.unwrap().is_empty());
}

#[tokio::test]
async fn children_checkpoint_under_their_own_ids_with_their_parent() {
    let store = Arc::new(MemoryBackend::new());
    let yaml = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: parent
  machines:
    child:
      spec: flatmachine
      data:
        name: child
        states: {s: {type: final, output: {ok: true}}}
  states:
    start:
      type: initial
      machine: child
      transitions: [{to: done}]
    done: {type: final}
"#;
    run_with(yaml, Arc::clone(&store), "parent-1").await;
    let all = store.list("").await.unwrap();
    let child_latest: Vec<&String> = all
        .iter()
        .filter(|k| k.ends_with("/latest") && !k.starts_with("parent-1/"))
        .collect();
    assert_eq!(child_latest.len(), 1, "{all:?}");
    let child_id = child_latest[0].trim_end_matches("/latest");
    let snapshot = load_latest(&*store, child_id).await.unwrap().unwrap();
    assert_eq!(snapshot.machine_name, "child");
    assert_eq!(snapshot.parent_execution_id.as_deref(), Some("parent-1"));
}

#[tokio::test]
async fn launch_intents_are_checkpointed_before_the_child_starts() {
    let store = Arc::new(MemoryBackend::new());
    let yaml = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: launcher
  machines:
    job:
      spec: flatmachine
      data:
        name: job
        context: {task: "{{ input.task }}"}
        states: {s: {type: final, output: {done: "{{ context.task }}"}}}
  states:
    start:
      type: initial
      launch: job
      launch_input: {task: cleanup}
      transitions: [{to: done}]
    done: {type: final, output: {launched: true}}
"#;
    let machine = Machine::from_yaml(yaml, ".").unwrap();
    let runtime = Runtime::builder().persistence(store.clone()).build();
    let options = RunOptions {
        execution_id: Some("launcher-1".into()),
        max_steps: None,
        parent_execution_id: None,
        ..Default::default()
    };
    let outcome = runtime
        .run(&machine, Default::default(), options)
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"launched": true}));

    let outbox: MachineSnapshot = serde_json::from_slice(
        &store
            .load("launcher-1/step_000001_launch.json")
            .await
            .unwrap()
            .expect("the outbox checkpoint"),
    )
    .unwrap();
    let intents = outbox.pending_launches.expect("intents");
    assert_eq!(intents.len(), 1);
    assert!(!intents[0].launched);
    assert_eq!(intents[0].machine, "job");
    assert_eq!(intents[0].input, common::object(json!({"task": "cleanup"})));

    // The run returned only after the launched child finished and left its result.
    let uri = flatmachines_core::result_uri(&intents[0].execution_id, "result");
    let result = runtime
        .results()
        .read(&uri, flatmachines_core::ReadOptions::now())
        .await
        .unwrap();
    assert_eq!(result, Some(json!({"done": "cleanup"})));
    let child = load_latest(&*store, &intents[0].execution_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.event.as_deref(), Some("machine_end"));
}

mod pruning {
    use super::*;
    use flatmachines_engine::checkpoint::{PruneOptions, list_executions, prune};

    async fn two_executions(store: &Arc<MemoryBackend>) {
        run_with(LOOP, Arc::clone(store), "old").await;
        let unfinished = Machine::from_yaml(
            "spec: flatmachine\ndata:\n  name: spin\n  states:\n    a: {transitions: [{to: b}]}\n    b: {transitions: [{to: a}]}\n",
            ".",
        )
        .unwrap();
        let runtime = Runtime::builder().persistence(store.clone()).build();
        let options = RunOptions {
            execution_id: Some("busy".to_owned()),
            max_steps: Some(4),
            parent_execution_id: None,
            ..Default::default()
        };
        runtime
            .run(&unfinished, Default::default(), options)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn keep_last_keeps_the_newest_snapshots_and_the_latest() {
        let store = Arc::new(MemoryBackend::new());
        two_executions(&store).await;
        let dry = prune(
            &*store,
            &PruneOptions {
                keep_last: Some(2),
                dry_run: true,
                ..PruneOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(!dry.deleted_keys.is_empty());
        assert_eq!(
            store.list("old/").await.unwrap().len(),
            9,
            "a dry run removes nothing"
        );

        prune(
            &*store,
            &PruneOptions {
                keep_last: Some(2),
                ..PruneOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            store.list("old/").await.unwrap(),
            [
                "old/latest",
                "old/step_000002_state_exit.json",
                "old/step_000002_machine_end.json"
            ]
            .iter()
            .map(|k| k.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        // Both executions still resume from what is left.
        assert!(load_latest(&*store, "old").await.unwrap().is_some());
        assert!(load_latest(&*store, "busy").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn finished_before_removes_whole_finished_executions_only() {
        let store = Arc::new(MemoryBackend::new());
        two_executions(&store).await;
        let report = prune(
            &*store,
            &PruneOptions {
                finished_before: Some(chrono::Utc::now() + chrono::Duration::minutes(1)),
                ..PruneOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(report.removed_executions, ["old"]);
        assert!(store.list("old/").await.unwrap().is_empty());
        assert!(
            !store.list("busy/").await.unwrap().is_empty(),
            "unfinished executions stay"
        );
        let listed = list_executions(&*store).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].execution_id, "busy");
    }
}

/// `pause` (the parent's action) waits long enough for the child launched by the previous
/// step, whose `nap` is shorter, to finish meanwhile; it also counts the steps in `context.n`.
#[derive(Debug)]
struct PauseAndCount;

#[async_trait::async_trait]
impl flatmachines_core::MachineHooks for PauseAndCount {
    async fn on_action(
        &self,
        action: &str,
        context: &mut flatmachines_core::Context,
    ) -> Result<bool, flatmachines_core::hooks::HookError> {
        let pause = match action {
            "pause" => 40,
            "nap" => 5,
            other => panic!("unexpected action {other}"),
        };
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        if action == "pause" {
            let n = context.get("n").and_then(Value::as_u64).unwrap_or(0);
            context.insert("n".into(), json!(n + 1));
        }
        Ok(true)
    }
}

/// A child that finished while the next launch was being checkpointed once made that launch
/// disappear: its intent was looked up by a position the checkpoint had shifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_launch_starts_when_earlier_launched_children_finish_in_between() {
    let store = Arc::new(MemoryBackend::new());
    let yaml = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: relauncher
  context: {n: 0}
  machines:
    job:
      spec: flatmachine
      data:
        name: job
        context: {n: "{{ input.n }}"}
        states:
          s: {type: initial, action: nap, transitions: [{to: e}]}
          e: {type: final, output: {n: "{{ context.n }}"}}
  states:
    start:
      type: initial
      transitions: [{to: step}]
    step:
      action: pause
      launch: job
      launch_input: {n: "{{ context.n }}"}
      transitions:
        - condition: "context.n >= 6"
          to: done
        - to: step
    done: {type: final, output: {n: "{{ context.n }}"}}
"#;
    let machine = Machine::from_yaml(yaml, ".").unwrap();
    let runtime = Runtime::builder()
        .persistence(store.clone())
        .hooks(Arc::new(PauseAndCount))
        .build();
    let options = RunOptions {
        execution_id: Some("relauncher-1".into()),
        max_steps: None,
        parent_execution_id: None,
        ..Default::default()
    };
    let outcome = runtime
        .run(&machine, Default::default(), options)
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"n": 6}));

    let mut launched = Vec::new();
    for key in store.list("").await.unwrap() {
        if key.ends_with("/latest") && !key.starts_with("relauncher-1/") {
            let id = key.trim_end_matches("/latest");
            let child = load_latest(&*store, id).await.unwrap().unwrap();
            assert_eq!(child.event.as_deref(), Some("machine_end"), "child {id}");
            launched.push(child.output.unwrap()["n"].as_u64().unwrap());
        }
    }
    launched.sort_unstable();
    assert_eq!(launched, vec![1, 2, 3, 4, 5, 6]);
}

const COUNTER: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: counter
  context: {n: 0}
  settings: {max_steps: 100000}
  agents: {echo: {type: test}}
  PERSISTENCE
  states:
    start:
      type: initial
      transitions: [{to: tick}]
    tick:
      agent: echo
      input: {n: "{{ context.n + 1 }}"}
      output_to_context: {n: "{{ output.n }}"}
      transitions:
        - condition: "context.n >= 2000"
          to: done
        - to: tick
    done:
      type: final
      output: {n: "{{ context.n }}"}
"#;

fn counter(persistence: &str) -> Machine {
    Machine::from_yaml(&COUNTER.replace("PERSISTENCE", persistence), ".").unwrap()
}

fn with_id(id: &str) -> RunOptions {
    RunOptions {
        execution_id: Some(id.to_owned()),
        ..Default::default()
    }
}

/// The built-in memory store keeps an execution's newest snapshot only: a long loop there
/// holds two keys, not one per step, and the run still resumes and reports its output.
#[tokio::test]
async fn the_built_in_memory_store_keeps_only_the_newest_snapshot() {
    let runtime = common::with_test_agents(Runtime::builder()).build();
    let outcome = runtime
        .run(&counter(""), common::object(json!({})), with_id("long"))
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"n": 2000}));
    let keys = runtime.memory_store().list("long/").await.unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let latest = load_latest(&**runtime.memory_store(), "long")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.output, Some(json!({"n": 2000})));
    assert!(keys.contains(&latest_key("long")), "{keys:?}");
}

/// `persistence.keep_snapshots` bounds the history in any store; a store given to the
/// runtime keeps everything by default.
#[tokio::test]
async fn keep_snapshots_bounds_the_history_of_a_given_store() {
    let store = Arc::new(MemoryBackend::new());
    let runtime = common::with_test_agents(Runtime::builder().persistence(store.clone())).build();
    let kept = counter("persistence: {backend: memory, keep_snapshots: 3}");
    runtime
        .run(&kept, common::object(json!({})), with_id("three"))
        .await
        .unwrap();
    let keys = store.list("three/").await.unwrap();
    assert_eq!(keys.len(), 4, "three snapshots and the pointer: {keys:?}");
    let latest = load_latest(&*store, "three").await.unwrap().unwrap();
    assert_eq!(latest.output, Some(json!({"n": 2000})));

    runtime
        .run(&counter(""), common::object(json!({})), with_id("all"))
        .await
        .unwrap();
    // Every step writes state_enter, execute and state_exit; start and end add two more.
    assert!(store.list("all/").await.unwrap().len() > 6000);
}
