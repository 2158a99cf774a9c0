//! Advisory locks: what ends a holder's session frees its keys, and the holder knows it.

use std::sync::Arc;
use std::time::Duration;

use flatmachines_core::{AgentResult, Error, ExecutionLock, PersistenceBackend as _};
use flatmachines_engine::{FnAgent, Machine, RunError, RunOptions, Runtime};
use tokio::sync::Notify;

use crate::support::TestEnv;

/// How many advisory locks the test's sessions hold.
async fn advisory_locks(env: &TestEnv) -> i64 {
    env.scalar(&format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND a.application_name = '{}'",
        env.application
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_session_frees_its_keys_and_its_holder_knows() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let holder = env.store().lock();
    let other = env.store().lock();
    assert!(holder.acquire("exec-1").await.unwrap());
    assert!(
        holder.acquire("exec-1").await.unwrap(),
        "a holder's own key"
    );
    assert!(holder.ensure_held("exec-1").is_ok());
    assert!(!other.acquire("exec-1").await.unwrap());
    assert_eq!(advisory_locks(&env).await, 1, "one lock, taken once");

    assert!(env.kill_connections().await > 0);
    // The holder learns it as soon as its connection reports the end of the session.
    let mut lost = None;
    for _ in 0..100 {
        match holder.ensure_held("exec-1") {
            Err(Error::LockLost { reason, .. }) => {
                lost = Some(reason);
                break;
            }
            Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    let reason = lost.expect("ensure_held never noticed the terminated session");
    assert!(reason.contains("session"), "{reason}");
    assert!(
        other.acquire("exec-1").await.unwrap(),
        "the key was not freed"
    );
    // The old holder opens a new session, where the key is now someone else's.
    assert!(!holder.acquire("exec-1").await.unwrap());
    holder.release("exec-1").await.unwrap();
    assert!(
        other.ensure_held("exec-1").is_ok(),
        "a stale release freed it"
    );
    other.release("exec-1").await.unwrap();
    assert!(holder.acquire("exec-1").await.unwrap());
    assert!(matches!(
        other.ensure_held("exec-1"),
        Err(Error::LockLost { .. })
    ));
}

#[tokio::test]
async fn a_dropped_holder_frees_its_keys_at_once() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let holder = env.store().lock();
    let other = env.store().lock();
    for key in ["a", "b", "c"] {
        assert!(holder.acquire(key).await.unwrap());
    }
    drop(holder);
    // The session closes in the background; the server frees the keys when it sees that.
    let mut free = false;
    for _ in 0..100 {
        if other.acquire("a").await.unwrap() {
            free = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(free, "the dropped holder's key stayed held");
    assert!(other.acquire("b").await.unwrap());
    assert!(other.acquire("c").await.unwrap());
}

#[tokio::test]
async fn schemas_do_not_contend() {
    let Some(first) = TestEnv::new().await else {
        return;
    };
    let Some(second) = TestEnv::new().await else {
        return;
    };
    let a = first.store().lock();
    let b = second.store().lock();
    assert!(a.acquire("exec-1").await.unwrap());
    assert!(b.acquire("exec-1").await.unwrap());
    assert!(
        matches!(a.acquire("bad\0key").await, Err(Error::InvalidKey { .. })),
        "NUL cannot be sent as text"
    );
}

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
async fn a_lost_lock_stops_the_run_before_its_next_checkpoint() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = env.store();
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
        .persistence(Arc::new(store.persistence()))
        .lock(Arc::new(store.lock()))
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
    let checkpoints = store.persistence();
    let before = checkpoints.list("exec-lost/").await.unwrap();
    // The runner's session is terminated while it is inside its state, and another runner
    // takes the execution over.
    env.kill_connections().await;
    let usurper = env.store().lock();
    let mut taken = false;
    for _ in 0..100 {
        if usurper.acquire("exec-lost").await.unwrap() {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(taken, "the terminated runner's lock was not freed");
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
    assert_eq!(
        checkpoints.list("exec-lost/").await.unwrap(),
        before,
        "checkpoints written after the loss"
    );
    assert!(usurper.ensure_held("exec-lost").is_ok());
}
