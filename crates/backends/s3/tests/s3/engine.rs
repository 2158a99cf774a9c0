//! A machine checkpointing to S3 is cut off mid-run and resumed to the uninterrupted output.
//! (The same with a real process and SIGKILL: `crates/cli/tests/s3_crash.rs`.)

use std::sync::Arc;
use std::time::Duration;

use flatmachines_core::PersistenceBackend;
use flatmachines_engine::{Machine, RunOptions, RunStatus, Runtime};
use serde_json::json;

use crate::support::TestEnv;

/// Counts to `input.limit` one child run per step, so every step checkpoints several times.
pub(crate) const COUNTER: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: s3-counter
  machines:
    increment:
      spec: flatmachine
      data:
        name: increment
        context: {n: "{{ input.n }}"}
        states:
          done: {type: final, output: {n: "{{ context.n + 1 }}"}}
  context:
    n: 0
    limit: "{{ input.limit }}"
  states:
    step:
      type: initial
      machine: increment
      input: {n: "{{ context.n }}"}
      output_to_context: {n: "{{ output.n }}"}
      transitions:
        - condition: "context.n >= context.limit"
          to: done
        - to: step
    done:
      type: final
      output: {n: "{{ context.n }}"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_off_mid_way_resumes_from_s3_and_finishes() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = Arc::new(env.backend());
    let runtime = Runtime::builder()
        .persistence(Arc::clone(&store) as Arc<dyn PersistenceBackend>)
        .build();
    let runner = Arc::new(
        runtime
            .prepare(&Machine::from_yaml(COUNTER, ".").unwrap())
            .unwrap(),
    );
    let input = json!({"limit": 40}).as_object().cloned().unwrap();
    let run = {
        let (runner, input) = (Arc::clone(&runner), input.clone());
        tokio::spawn(async move {
            let options = RunOptions {
                execution_id: Some("cut".to_owned()),
                max_steps: None,
                parent_execution_id: None,
                ..Default::default()
            };
            runner.run(input, options).await
        })
    };
    // Wait (bounded) for a few steps' checkpoints, then cut the run off where it stands.
    let mut steps = 0;
    for _ in 0..600 {
        steps = store.list("cut/step_").await.unwrap().len();
        if steps >= 6 || run.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.abort();
    let _ = run.await;
    let pointer = store
        .load("cut/latest")
        .await
        .unwrap()
        .expect("a latest pointer");
    let pointer = String::from_utf8(pointer.to_vec()).unwrap();
    assert!(
        !pointer.ends_with("_machine_end.json"),
        "the run finished before it was cut off ({steps} snapshots); raise the limit"
    );
    let resumed = tokio::time::timeout(Duration::from_secs(120), runner.resume("cut", None))
        .await
        .expect("the resume finishes")
        .unwrap();
    assert_eq!(resumed.status, RunStatus::Completed);
    assert_eq!(resumed.output, json!({"n": 40}));
    let last = store.load("cut/latest").await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&last).ends_with("_machine_end.json"));
}
