//! A run started by a parent in another process (`RunOptions::parent_execution_id`): it holds
//! its own lock, records the parent, and leaves its result where the parent reads it.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use flatmachines_core::{ExecutionLock, ReadOptions, ResultBackend, result_uri};
use flatmachines_engine::{Machine, RunError, RunOptions, Runtime};
use flatmachines_memory::{MemoryBackend, MemoryResultBackend};

const MACHINE: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: child
  context:
    x: "{{ input.x }}"
  states:
    start:
      type: initial
      transitions:
        - condition: "context.x < 0"
          to: broken
        - to: done
    broken:
      type: final
      output:
        y: "{{ 'not json' | fromjson }}"
    done:
      type: final
      output:
        y: "{{ context.x * 2 }}"
"#;

/// A lock someone else always holds.
#[derive(Debug)]
struct HeldElsewhere;

#[async_trait]
impl ExecutionLock for HeldElsewhere {
    async fn acquire(&self, _key: &str) -> flatmachines_core::Result<bool> {
        Ok(false)
    }
    async fn release(&self, _key: &str) -> flatmachines_core::Result<()> {
        Ok(())
    }
}

fn options(id: &str) -> RunOptions {
    RunOptions {
        execution_id: Some(id.to_owned()),
        parent_execution_id: Some("the-parent".to_owned()),
        ..RunOptions::default()
    }
}

fn input(x: i64) -> flatmachines_core::JsonMap {
    json!({"x": x}).as_object().cloned().unwrap_or_default()
}

async fn result(results: &MemoryResultBackend, id: &str) -> Option<Value> {
    results
        .read(&result_uri(id, "result"), ReadOptions::now())
        .await
        .expect("read")
}

#[tokio::test]
async fn the_output_or_the_error_is_published_and_the_parent_recorded() {
    let machine = Machine::from_yaml(MACHINE, ".").expect("loads");
    let results = Arc::new(MemoryResultBackend::new());
    let store = Arc::new(MemoryBackend::new());
    let runner = Runtime::builder()
        .persistence(store.clone())
        .results(results.clone())
        .build()
        .prepare(&machine)
        .expect("prepares");

    let outcome = runner.run(input(4), options("ok-1")).await.expect("runs");
    assert_eq!(outcome.output, json!({"y": 8}));
    assert_eq!(result(&results, "ok-1").await, Some(json!({"y": 8})));
    let snapshot = flatmachines_engine::load_latest(&*store, "ok-1")
        .await
        .expect("readable")
        .expect("a checkpoint");
    assert_eq!(snapshot.parent_execution_id.as_deref(), Some("the-parent"));

    let failed = runner.run(input(-1), options("bad-1")).await;
    assert!(matches!(failed, Err(RunError::Failed { .. })), "{failed:?}");
    let error = result(&results, "bad-1")
        .await
        .expect("the error is published");
    assert_eq!(error["_error_type"], "TemplateError", "{error}");

    // Without a parent nothing is published: in-process runs keep results for children.
    let plain = RunOptions {
        execution_id: Some("plain-1".to_owned()),
        ..RunOptions::default()
    };
    runner.run(input(1), plain).await.expect("runs");
    assert_eq!(result(&results, "plain-1").await, None);
}

#[tokio::test]
async fn a_run_that_finds_the_execution_held_elsewhere_leaves_the_result_to_its_holder() {
    let machine = Machine::from_yaml(MACHINE, ".").expect("loads");
    let results = Arc::new(MemoryResultBackend::new());
    let runner = Runtime::builder()
        .lock(Arc::new(HeldElsewhere))
        .results(results.clone())
        .build()
        .prepare(&machine)
        .expect("prepares");
    let outcome = runner.run(input(4), options("held-1")).await;
    assert!(
        matches!(outcome, Err(RunError::LockHeld { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        result(&results, "held-1").await,
        None,
        "no error overwrites the holder's result"
    );
}
