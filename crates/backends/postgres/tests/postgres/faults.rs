//! Connections terminated with `pg_terminate_backend` in the middle of a claim storm and of a
//! machine run; servers that refuse connections or never answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flatmachines_core::{
    Error, ExecutionLock, PushOptions, ReadOptions, ResultBackend, WorkPool, WorkStatus,
};
use flatmachines_engine::{Machine, ResumeFailure, RunError, RunOptions, RunStatus, Runtime};
use flatmachines_postgres::{PostgresConfig, PostgresStore};
use serde_json::json;

use crate::support::TestEnv;

/// Terminates the test's connections every `every`, at most `rounds` times or until `stop`;
/// returns how many it terminated.
fn killer(
    env: &Arc<TestEnv>,
    stop: &Arc<AtomicBool>,
    every: Duration,
    rounds: u32,
) -> tokio::task::JoinHandle<u64> {
    let (env, stop) = (Arc::clone(env), Arc::clone(stop));
    tokio::spawn(async move {
        let mut killed = 0;
        for _ in 0..rounds {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            killed += env.kill_connections().await;
            tokio::time::sleep(every).await;
        }
        killed
    })
}

/// Retries `call` a bounded number of times: a termination can land on every retry of one
/// call, and each failure must say that retrying may help.
async fn persist<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut last = None;
    for _ in 0..50 {
        match call().await {
            Ok(value) => return value,
            Err(e) => {
                assert!(e.is_retryable(), "{what} failed for good: {e}");
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    panic!("{what} kept failing: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_storm_loses_nothing_and_hands_nothing_out_twice() {
    const ITEMS: u64 = 2000;
    const WORKERS: usize = 4;
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let env = Arc::new(env);
    let pool = env.store().work().postgres_pool("storm");
    let mut pushed = HashSet::new();
    for n in 0..ITEMS {
        pushed.insert(
            pool.push(json!({"n": n}), PushOptions::default())
                .await
                .unwrap(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    // A few seconds of terminations at least; the workers drain the rest at full speed, so
    // the test's length does not depend on how slowly claims go under constant terminations.
    let kills = killer(&env, &stop, Duration::from_millis(25), 150);
    let errors = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let pool = env.store().work().postgres_pool("storm");
            let errors = Arc::clone(&errors);
            tokio::spawn(async move {
                let me = format!("worker-{w}");
                let mut delivered = Vec::new();
                loop {
                    let item = match pool.claim(&me).await {
                        Ok(Some(item)) => item,
                        Ok(None) => break,
                        Err(e) => {
                            // Every retry failed, and the claim may have committed with its
                            // answer lost: a worker holding nothing gives back whatever is
                            // recorded as its own.
                            assert!(e.is_retryable(), "claim failed for good: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                            persist("release", || pool.release_by_worker(&me)).await;
                            continue;
                        }
                    };
                    assert_eq!(item.claimed_by.as_deref(), Some(me.as_str()));
                    delivered.push(item.id.clone());
                    persist("complete", || async {
                        match pool.complete(&item.id, Some(json!(w))).await {
                            // A retried complete whose first try committed finds it done.
                            Err(Error::Conflict { message, .. }) if message.contains("done") => {
                                Ok(())
                            }
                            other => other,
                        }
                    })
                    .await;
                }
                delivered
            })
        })
        .collect();
    let mut by_item: HashMap<String, usize> = HashMap::new();
    for worker in workers {
        for id in worker.await.unwrap() {
            *by_item.entry(id).or_default() += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let killed = kills.await.unwrap();
    assert!(killed > 0, "no connection was terminated");
    let twice: Vec<_> = by_item.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handed out twice: {twice:?}");
    let delivered: HashSet<String> = by_item.into_keys().collect();
    assert_eq!(delivered, pushed, "items lost");
    let check = env.store().work().postgres_pool("storm");
    assert_eq!(check.size().await.unwrap(), 0);
    for id in &pushed {
        let item = check.get(id).await.unwrap().unwrap();
        assert_eq!(item.status, WorkStatus::Done, "{id}");
    }
    eprintln!(
        "claim storm: {killed} connections terminated, {} errors surfaced to workers",
        errors.load(Ordering::Relaxed)
    );
}

/// Counts to `input.limit` through an agent, one state step per increment.
const COUNTER: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: counter
  context: {n: 0, limit: "{{ input.limit }}"}
  agents: {inc: {type: test}}
  states:
    count:
      type: initial
      transitions:
        - condition: "context.n >= context.limit"
          to: done
        - to: bump
    bump:
      agent: inc
      input: {n: "{{ context.n }}"}
      output_to_context: {n: "{{ output.n }}"}
      transitions: [{to: count}]
    done:
      type: final
      output: {n: "{{ context.n }}"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_with_postgres_checkpoints_resumes_and_finishes_through_terminated_connections() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let env = Arc::new(env);
    let machine = Machine::from_yaml(COUNTER, ".").unwrap();
    let store = env.store();
    let runtime = Runtime::builder()
        .persistence(Arc::new(store.persistence()))
        .lock(Arc::new(store.lock()))
        .agent(
            "inc",
            flatmachines_engine::FnAgent::new(|input, _| async move {
                let n = input
                    .get("n")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                Ok(flatmachines_core::AgentResult::with_output(
                    json!({"n": n + 1}).as_object().cloned().unwrap_or_default(),
                ))
            })
            .shared(),
        )
        .build();
    let runner = runtime.prepare(&machine).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let kills = killer(&env, &stop, Duration::from_millis(150), 2000);
    let input = json!({"limit": 150})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let options = RunOptions {
        execution_id: Some("counter-1".to_owned()),
        max_steps: Some(10_000),
        parent_execution_id: None,
        ..Default::default()
    };
    let mut outcome = runner.run(input.clone(), options.clone()).await;
    let mut resumes = 0;
    while let Err(error) = &outcome {
        resumes += 1;
        assert!(resumes <= 200, "still failing after 200 resumes: {error}");
        eprintln!("run failed ({error}); resuming");
        tokio::time::sleep(Duration::from_millis(20)).await;
        outcome = match error {
            // Terminated before its first checkpoint: there is nothing to resume from.
            RunError::Resume {
                reason: ResumeFailure::Unknown,
                ..
            } => runner.run(input.clone(), options.clone()).await,
            _ => runner.resume("counter-1", Some(10_000)).await,
        };
    }
    stop.store(true, Ordering::SeqCst);
    let killed = kills.await.unwrap();
    let outcome = outcome.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed);
    assert_eq!(outcome.output, json!({"n": 150}));
    assert!(killed > 0, "no connection was terminated");
    eprintln!("machine: {killed} connections terminated, {resumes} resumes");
    let snapshot = flatmachines_engine::load_latest(&env.store().persistence(), "counter-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.event.as_deref(), Some("machine_end"));
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

/// Every way in fails with a message naming the server, well within a bound that only a
/// hang would reach.
async fn fails_clearly(store: &PostgresStore, expected: &str) {
    let bound = Duration::from_secs(20);
    let persistence = store.persistence();
    let results = store.results();
    let lock = store.lock();
    let pool = store.work().postgres_pool("jobs");
    let errors = vec![
        tokio::time::timeout(bound, store.ping())
            .await
            .map(|r| r.err()),
        tokio::time::timeout(
            bound,
            flatmachines_core::PersistenceBackend::load(&persistence, "e/k"),
        )
        .await
        .map(|r| r.err()),
        tokio::time::timeout(bound, lock.acquire("exec-1"))
            .await
            .map(|r| r.err()),
        tokio::time::timeout(
            bound,
            results.read("flatagents://e/result", ReadOptions::blocking(None)),
        )
        .await
        .map(|r| r.err()),
        tokio::time::timeout(bound, pool.claim("w"))
            .await
            .map(|r| r.err()),
    ];
    for (index, error) in errors.into_iter().enumerate() {
        let error = error
            .unwrap_or_else(|_| panic!("call {index} hung"))
            .unwrap_or_else(|| panic!("call {index} succeeded"));
        let text = error.to_string();
        assert!(
            text.contains("cannot connect to PostgreSQL at postgres://"),
            "{text}"
        );
        assert!(text.contains(expected), "{text}");
        assert!(error.is_retryable(), "{text}");
    }
}

#[tokio::test]
async fn a_closed_port_fails_at_once_with_the_address() {
    let port = closed_port();
    let config = PostgresConfig::from_url(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .unwrap()
        .with_connect_timeout(Duration::from_secs(2));
    let store = PostgresStore::new(config).unwrap();
    fails_clearly(&store, &format!("127.0.0.1:{port}")).await;
    // `connect` checks at once.
    let error = PostgresStore::connect(store.config().clone())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("refused"), "{error}");
}

#[tokio::test]
async fn a_server_that_never_answers_fails_within_the_connect_timeout() {
    // Accepts connections and never says a word, as a stopped (SIGSTOP) server would.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        // Bounded: the test opens a handful of connections.
        for _ in 0..64 {
            match listener.accept().await {
                Ok((socket, _)) => sockets.push(socket),
                Err(_) => break,
            }
        }
    });
    let config = PostgresConfig::from_url(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .unwrap()
        .with_connect_timeout(Duration::from_millis(500));
    let store = PostgresStore::new(config).unwrap();
    fails_clearly(&store, "connect timeout of 500ms").await;
    held.abort();
}
