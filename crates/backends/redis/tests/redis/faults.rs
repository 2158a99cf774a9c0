//! Connections killed with `CLIENT KILL` in the middle of a claim storm and of a machine run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flatmachines_core::{Error, PushOptions, WorkPool, WorkStatus};
use flatmachines_engine::{Machine, RunOptions, RunStatus, Runtime};
use serde_json::json;

use crate::support::TestEnv;

/// Sets its flag when dropped, so a failing test stops its killer too.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Kills the test's connections every `every` until `stop`; returns how many it killed.
fn killer(
    env: &Arc<TestEnv>,
    stop: &Arc<AtomicBool>,
    every: Duration,
) -> std::thread::JoinHandle<u64> {
    let (env, stop) = (Arc::clone(env), Arc::clone(stop));
    std::thread::spawn(move || {
        let mut killed = 0;
        // Bounded in count as well as by `stop`.
        for _ in 0..2000 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            killed += env.kill_connections();
            std::thread::sleep(every);
        }
        killed
    })
}

/// Retries `call` a bounded number of times: a kill can land on every retry of one call.
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
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    panic!("{what} kept failing: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_storm_loses_nothing_and_hands_nothing_out_twice() {
    const ITEMS: u64 = 2000;
    const WORKERS: usize = 4;
    let Some(env) = TestEnv::new() else { return };
    let env = Arc::new(env);
    let pool = env.client().work().redis_pool("storm");
    let mut pushed = HashSet::new();
    for n in 0..ITEMS {
        pushed.insert(
            pool.push(json!({"n": n}), PushOptions::default())
                .await
                .unwrap(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_failure = Stop(Arc::clone(&stop));
    let kills = killer(&env, &stop, Duration::from_millis(15));
    let errors = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let pool = env.client().work().redis_pool("storm");
            let errors = Arc::clone(&errors);
            tokio::spawn(async move {
                let me = format!("worker-{w}");
                let mut delivered = Vec::new();
                loop {
                    let item = match pool.claim(&me).await {
                        Ok(Some(item)) => item,
                        Ok(None) => break,
                        Err(e) => {
                            // The claim may have happened with its answer lost: a worker that
                            // holds nothing gives back whatever is recorded as its own.
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
                            // A retried complete whose first try landed finds it done.
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
    let killed = kills.join().unwrap();
    assert!(killed > 0, "no connection was killed");
    let twice: Vec<_> = by_item.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handed out twice: {twice:?}");
    let delivered: HashSet<String> = by_item.into_keys().collect();
    assert_eq!(delivered, pushed, "items lost");
    let check = env.client().work().redis_pool("storm");
    assert_eq!(check.size().await.unwrap(), 0);
    // Retried completes whose first try had landed must not count twice.
    let counts = check.counts().await.unwrap();
    assert_eq!((counts.done, counts.total()), (ITEMS, ITEMS), "{counts:?}");
    for id in &pushed {
        let item = check.get(id).await.unwrap().unwrap();
        assert_eq!(item.status, WorkStatus::Done, "{id}");
    }
    eprintln!(
        "claim storm: {killed} connections killed, {} errors surfaced to workers",
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
async fn a_machine_with_redis_checkpoints_resumes_and_finishes_through_killed_connections() {
    let Some(env) = TestEnv::new() else { return };
    let env = Arc::new(env);
    let machine = Machine::from_yaml(COUNTER, ".").unwrap();
    // A short lease, so a release lost to a kill does not keep the resume waiting long.
    let client =
        flatmachines_redis::RedisClient::new(env.config().with_lease(Duration::from_secs(1)))
            .unwrap();
    let runtime = Runtime::builder()
        .persistence(Arc::new(client.persistence()))
        .lock(Arc::new(client.lock()))
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
    let _stop_on_failure = Stop(Arc::clone(&stop));
    let kills = killer(&env, &stop, Duration::from_millis(20));
    let input = json!({"limit": 300})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let options = RunOptions {
        execution_id: Some("counter-1".to_owned()),
        max_steps: Some(10_000),
        parent_execution_id: None,
        ..Default::default()
    };
    // Halfway through, an outage longer than any retry: the run fails, and is resumed.
    let outage = {
        let env = Arc::clone(&env);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            env.set_user(false);
            env.kill_connections();
            tokio::time::sleep(Duration::from_secs(3)).await;
            env.set_user(true);
        })
    };
    let mut outcome = runner.run(input, options).await;
    outage.await.unwrap();
    let mut resumes = 0;
    while let Err(error) = &outcome {
        resumes += 1;
        assert!(resumes <= 40, "still failing after 40 resumes: {error}");
        eprintln!("run failed ({error}); resuming");
        tokio::time::sleep(Duration::from_millis(250)).await;
        outcome = runner.resume("counter-1", Some(10_000)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let killed = kills.join().unwrap();
    let outcome = outcome.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed);
    assert_eq!(outcome.output, json!({"n": 300}));
    assert!(killed > 0, "no connection was killed");
    assert!(resumes > 0, "the outage did not stop the run");
    eprintln!("machine: {killed} connections killed, {resumes} resumes");
    // The last checkpoint is the machine's end, and it can be read back.
    let snapshot = flatmachines_engine::load_latest(&client.persistence(), "counter-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.event.as_deref(), Some("machine_end"));
}
