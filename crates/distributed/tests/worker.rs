//! The worker loop over the in-memory backends: claims, heartbeats, limits, shutdown, being
//! reaped, and many workers racing for one pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use flatmachines_core::distributed::status;
use flatmachines_core::{PushOptions, RegistrationBackend, WorkBackend, WorkItem, WorkStatus};
use flatmachines_distributed::{
    JobOutcome, JobReport, JobRunner, StopReason, Worker, WorkerOptions,
};
use flatmachines_memory::{MemoryRegistrationBackend, MemoryWorkBackend};

/// Doubles `n`; fails on negative numbers; takes `ms` milliseconds when the job says so.
struct Doubler {
    runs: AtomicUsize,
}

#[async_trait]
impl JobRunner for Doubler {
    async fn run(&self, job: &WorkItem) -> Result<Value, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if let Some(ms) = job.data["ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let n = job.data["n"].as_i64().ok_or("no n")?;
        if n < 0 {
            return Err(format!("negative: {n}"));
        }
        Ok(json!(n * 2))
    }
}

fn doubler() -> Doubler {
    Doubler {
        runs: AtomicUsize::new(0),
    }
}

struct Backends {
    registration: Arc<MemoryRegistrationBackend>,
    work: Arc<MemoryWorkBackend>,
}

impl Backends {
    fn new() -> Self {
        Backends {
            registration: Arc::new(MemoryRegistrationBackend::new()),
            work: Arc::new(MemoryWorkBackend::new()),
        }
    }

    fn worker(&self, options: WorkerOptions) -> Worker {
        Worker::new(
            Arc::clone(&self.registration) as Arc<dyn RegistrationBackend>,
            Arc::clone(&self.work) as Arc<dyn WorkBackend>,
            options,
        )
    }

    async fn push(&self, pool: &str, data: Value, max_retries: u32) -> String {
        self.work
            .pool(pool)
            .push(data, PushOptions { max_retries })
            .await
            .expect("push")
    }
}

/// Completes once `pool` has a claimed job: a signal that arrives mid-job however loaded the
/// machine is.
async fn once_claimed(work: Arc<MemoryWorkBackend>, pool: &str) {
    let pool = work.pool(pool);
    while pool.counts().await.expect("counts").claimed == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn fast(pool: &str, id: &str) -> WorkerOptions {
    WorkerOptions::new(pool)
        .worker_id(id)
        .poll_interval(Duration::from_millis(10))
        .heartbeat_interval(Duration::from_millis(20))
}

#[tokio::test]
async fn a_worker_runs_every_job_then_stops_when_idle() {
    let b = Backends::new();
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(b.push("jobs", json!({"n": n}), 3).await);
    }
    let bad = b.push("jobs", json!({"n": -1}), 2).await;
    let worker = b.worker(fast("jobs", "w1").exit_when_idle(Some(Duration::from_millis(50))));
    let mut reports: Vec<JobReport> = Vec::new();
    let summary = worker
        .run(&doubler(), std::future::pending(), |r| {
            reports.push(r.clone())
        })
        .await
        .expect("the worker runs");
    assert_eq!(summary.stop, StopReason::Idle);
    assert_eq!(summary.completed, 10);
    assert_eq!(
        summary.failed, 2,
        "the bad job was tried twice, then poisoned"
    );
    let pool = b.work.pool("jobs");
    for (n, id) in ids.iter().enumerate() {
        let item = pool.get(id).await.unwrap().expect("item");
        assert_eq!(item.status, WorkStatus::Done);
        assert_eq!(item.result, Some(json!(n as i64 * 2)));
    }
    let poisoned = pool.get(&bad).await.unwrap().expect("item");
    assert_eq!(poisoned.status, WorkStatus::Poisoned);
    assert_eq!(poisoned.error.as_deref(), Some("negative: -1"));
    let failures: Vec<_> = reports
        .iter()
        .filter(|r| matches!(r.outcome, JobOutcome::Failed(_)))
        .map(|r| r.attempt)
        .collect();
    assert_eq!(failures, [1, 2]);
    let record = b.registration.get("w1").await.unwrap().expect("registered");
    assert_eq!(record.status, status::TERMINATED);
    assert_eq!(record.pool_id.as_deref(), Some("jobs"));
}

#[tokio::test]
async fn max_jobs_stops_the_worker_and_leaves_the_rest_pending() {
    let b = Backends::new();
    for n in 0..5 {
        b.push("jobs", json!({"n": n}), 3).await;
    }
    let summary = b
        .worker(fast("jobs", "w1").max_jobs(Some(2)))
        .run(&doubler(), std::future::pending(), |_| {})
        .await
        .unwrap();
    assert_eq!(summary.stop, StopReason::MaxJobs);
    assert_eq!(summary.completed, 2);
    let counts = b.work.pool("jobs").counts().await.unwrap();
    assert_eq!((counts.done, counts.pending, counts.claimed), (2, 3, 0));
}

#[tokio::test]
async fn heartbeats_run_in_the_background_while_a_job_runs() {
    let b = Backends::new();
    b.push("jobs", json!({"n": 1, "ms": 200}), 3).await;
    let registration = Arc::clone(&b.registration);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_probe = Arc::clone(&seen);
    let probe = tokio::spawn(async move {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            if let Ok(Some(record)) = registration.get("w1").await {
                seen_by_probe
                    .lock()
                    .unwrap()
                    .push((record.last_heartbeat, record.metadata));
            }
        }
    });
    let summary = b
        .worker(fast("jobs", "w1").max_jobs(Some(1)))
        .run(&doubler(), std::future::pending(), |_| {})
        .await
        .unwrap();
    probe.await.unwrap();
    assert_eq!(summary.completed, 1);
    let seen = seen.lock().unwrap();
    let beats: std::collections::HashSet<&String> = seen.iter().map(|(beat, _)| beat).collect();
    assert!(
        beats.len() >= 3,
        "the heartbeat moved while the job ran: {seen:?}"
    );
    let busy = seen.iter().any(|(_, metadata)| {
        metadata
            .as_ref()
            .is_some_and(|m| m.get("current_job").is_some_and(Value::is_string))
    });
    assert!(busy, "heartbeats name the job in hand: {seen:?}");
}

#[tokio::test]
async fn shutdown_lets_the_job_in_hand_finish_then_deregisters() {
    let b = Backends::new();
    let slow = b.push("jobs", json!({"n": 21, "ms": 150}), 3).await;
    b.push("jobs", json!({"n": 1}), 3).await;
    let shutdown = once_claimed(Arc::clone(&b.work), "jobs");
    let summary = b
        .worker(fast("jobs", "w1"))
        .run(&doubler(), shutdown, |_| {})
        .await
        .unwrap();
    assert_eq!(summary.stop, StopReason::Shutdown);
    assert_eq!(summary.completed, 1);
    let pool = b.work.pool("jobs");
    assert_eq!(
        pool.get(&slow).await.unwrap().unwrap().result,
        Some(json!(42))
    );
    assert_eq!(pool.size().await.unwrap(), 1, "no new job after the signal");
    assert_eq!(
        b.registration.get("w1").await.unwrap().unwrap().status,
        status::TERMINATED
    );
}

#[tokio::test]
async fn a_job_outlasting_the_grace_period_goes_back_to_the_pool() {
    let b = Backends::new();
    let slow = b.push("jobs", json!({"n": 1, "ms": 5000}), 3).await;
    let shutdown = once_claimed(Arc::clone(&b.work), "jobs");
    let mut outcomes = Vec::new();
    let summary = b
        .worker(fast("jobs", "w1").shutdown_grace(Duration::from_millis(50)))
        .run(&doubler(), shutdown, |r| outcomes.push(r.outcome.clone()))
        .await
        .unwrap();
    assert_eq!(summary.abandoned, 1);
    assert_eq!(outcomes, [JobOutcome::Released]);
    let item = b.work.pool("jobs").get(&slow).await.unwrap().unwrap();
    assert_eq!(item.status, WorkStatus::Pending);
    assert_eq!(item.claimed_by, None);
}

#[tokio::test]
async fn a_worker_reaped_while_busy_drops_its_result_and_stops() {
    let b = Backends::new();
    let job = b.push("jobs", json!({"n": 5, "ms": 150}), 3).await;
    let work = Arc::clone(&b.work);
    let registration = Arc::clone(&b.registration);
    // A reaper that thinks w1 is gone: marks it lost and frees its job, which w2 then takes.
    let reaper = tokio::spawn(async move {
        once_claimed(Arc::clone(&work), "jobs").await;
        registration
            .update_status("w1", status::LOST)
            .await
            .unwrap();
        let pool = work.pool("jobs");
        assert_eq!(pool.release_by_worker("w1").await.unwrap(), 1);
        let taken = pool.claim("w2").await.unwrap().expect("the freed job");
        pool.complete(&taken.id, Some(json!("by w2")))
            .await
            .unwrap();
    });
    let mut outcomes = Vec::new();
    let summary = b
        .worker(fast("jobs", "w1"))
        .run(&doubler(), std::future::pending(), |r| {
            outcomes.push(r.outcome.clone())
        })
        .await
        .unwrap();
    reaper.await.unwrap();
    assert_eq!(summary.stop, StopReason::Lost);
    assert_eq!(outcomes, [JobOutcome::Dropped]);
    let item = b.work.pool("jobs").get(&job).await.unwrap().unwrap();
    assert_eq!(
        item.result,
        Some(json!("by w2")),
        "w1's late result did not overwrite w2's"
    );
    assert_eq!(
        b.registration.get("w1").await.unwrap().unwrap().status,
        status::LOST,
        "a lost worker keeps the reaper's verdict"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_workers_share_a_pool_and_run_each_job_once() {
    let b = Arc::new(Backends::new());
    for n in 0..300 {
        b.push("jobs", json!({"n": n}), 3).await;
    }
    let runner = Arc::new(doubler());
    let completions = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let mut tasks = Vec::new();
    for w in 0..6 {
        let b = Arc::clone(&b);
        let runner = Arc::clone(&runner);
        let completions = Arc::clone(&completions);
        tasks.push(tokio::spawn(async move {
            b.worker(fast("jobs", &format!("w{w}")).exit_when_idle(Some(Duration::from_millis(50))))
                .run(&*runner, std::future::pending(), |r| {
                    if matches!(r.outcome, JobOutcome::Completed(_)) {
                        *completions
                            .lock()
                            .unwrap()
                            .entry(r.job_id.clone())
                            .or_default() += 1;
                    }
                })
                .await
                .unwrap()
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap().completed;
    }
    assert_eq!(total, 300);
    assert_eq!(runner.runs.load(Ordering::SeqCst), 300, "no job ran twice");
    let completions = completions.lock().unwrap();
    assert_eq!(completions.len(), 300);
    assert!(completions.values().all(|&n| n == 1));
}
