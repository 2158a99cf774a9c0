//! A runner whose lease is lost stops writing checkpoints, with an error that says so.

use std::sync::Arc;
use std::time::Duration;

use flatmachines_core::{AgentResult, PersistenceBackend as _};
use flatmachines_engine::{FnAgent, Machine, RunError, RunOptions, Runtime};
use tokio::sync::Notify;

use crate::support::TestEnv;

const MACHINE: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: slow
  agents: {wait: {type: test}}
  states:
    start:
      type: initial
      agent: wait
      transitions: [{to: done}]
    done:
      type: final
      output: {finished: true}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_the_run_before_its_next_checkpoint() {
    let Some(env) = TestEnv::new() else { return };
    let lease = Duration::from_millis(600);
    let client = flatmachines_redis::RedisClient::new(env.config().with_lease(lease)).unwrap();
    let (entered, proceed) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let agent = {
        let (entered, proceed) = (Arc::clone(&entered), Arc::clone(&proceed));
        FnAgent::new(move |_, _| {
            let (entered, proceed) = (Arc::clone(&entered), Arc::clone(&proceed));
            async move {
                entered.notify_one();
                proceed.notified().await;
                Ok(AgentResult::with_output(serde_json::Map::new()))
            }
        })
        .shared()
    };
    let runtime = Runtime::builder()
        .persistence(Arc::new(client.persistence()))
        .lock(Arc::new(client.lock()))
        .agent("wait", agent)
        .build();
    let runner = runtime
        .prepare(&Machine::from_yaml(MACHINE, ".").unwrap())
        .unwrap();
    let run = tokio::spawn(async move {
        let options = RunOptions {
            execution_id: Some("exec-lost".to_owned()),
            max_steps: None,
            parent_execution_id: None,
            ..Default::default()
        };
        runner.run(serde_json::Map::new(), options).await
    });
    entered.notified().await;
    let store = client.persistence();
    let before = store.list("exec-lost/").await.unwrap();
    // Another runner takes the execution over while this one is inside its state.
    let key = format!("{{{}}}:lock:exec-lost", env.namespace);
    env.raw::<()>(
        redis::cmd("SET")
            .arg(&key)
            .arg("other-runner")
            .arg("PX")
            .arg(60_000),
    );
    tokio::time::sleep(lease).await;
    proceed.notify_one();
    let error = match run.await.unwrap() {
        Err(RunError::Failed { error, .. }) => error,
        other => panic!("the run went on without its lock: {other:?}"),
    };
    assert!(
        error.message.contains("`exec-lost` was lost"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("checkpoint was not written"),
        "{}",
        error.message
    );
    assert_eq!(
        store.list("exec-lost/").await.unwrap(),
        before,
        "checkpoints written after the loss"
    );
    let owner: Option<String> = env.raw(redis::cmd("GET").arg(&key));
    assert_eq!(
        owner.as_deref(),
        Some("other-runner"),
        "the loser freed the new owner's lock"
    );
}
