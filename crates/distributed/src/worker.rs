//! [`Worker`]: the worker loop — register, claim, run, complete or fail, heartbeat in the
//! background, deregister on shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value};

use flatmachines_core::{
    Error, RegistrationBackend, WorkBackend, WorkItem, WorkPool, WorkStatus, WorkerRegistration,
    distributed::status,
};

use crate::host::{host_name, new_worker_id, now_iso8601};

/// Runs one job. `Ok` completes it with that result; `Err` fails the attempt with that
/// message, and the pool retries or poisons the job.
#[async_trait]
pub trait JobRunner: Send + Sync {
    /// Processes `job`.
    async fn run(&self, job: &WorkItem) -> Result<Value, String>;
}

/// How a worker behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// The worker's id (default: `worker-` and eight hex digits).
    pub worker_id: String,
    /// The pool it claims from.
    pub pool: String,
    /// Capability tags it registers with.
    pub capabilities: Vec<String>,
    /// How often the background heartbeat runs (default 5 s). Reapers should call a
    /// worker stale only after several missed beats.
    pub heartbeat_interval: Duration,
    /// The longest wait between claims while the pool is empty (default 1 s); waits start
    /// at 25 ms and double.
    pub poll_interval: Duration,
    /// Exit after the pool has been empty this long (default: never).
    pub exit_when_idle: Option<Duration>,
    /// Exit after this many jobs (default: no limit).
    pub max_jobs: Option<u64>,
    /// After a shutdown request, how long the job in hand may take to finish before it is
    /// returned to the pool unfinished (default 30 s).
    pub shutdown_grace: Duration,
}

impl WorkerOptions {
    /// The defaults, for pool `pool`.
    pub fn new(pool: impl Into<String>) -> Self {
        WorkerOptions {
            worker_id: new_worker_id(),
            pool: pool.into(),
            capabilities: Vec::new(),
            heartbeat_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            exit_when_idle: None,
            max_jobs: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// Uses `worker_id`.
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = worker_id.into();
        self
    }

    /// Registers with these capability tags.
    pub fn capabilities(mut self, capabilities: Vec<String>) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Beats every `interval`.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Waits at most `interval` between claims of an empty pool.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Exits after the pool has been empty for `idle`.
    pub fn exit_when_idle(mut self, idle: Option<Duration>) -> Self {
        self.exit_when_idle = idle;
        self
    }

    /// Exits after `max` jobs.
    pub fn max_jobs(mut self, max: Option<u64>) -> Self {
        self.max_jobs = max;
        self
    }

    /// Gives the job in hand `grace` to finish after a shutdown request.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
}

/// What became of one claimed job.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JobOutcome {
    /// Completed with this result.
    Completed(Value),
    /// The attempt failed with this message (the pool retries or poisons the job).
    Failed(String),
    /// Shutdown came and the job did not finish within the grace period: it went back to
    /// the pool unfinished.
    Released,
    /// While it ran, a reaper declared this worker lost and gave the job to the pool again:
    /// its result is dropped so that another worker's run is the only one that counts.
    Dropped,
    /// The job finished but recording that failed; it is returned to the pool when the worker
    /// stops.
    Unrecorded(String),
}

/// One claimed job, reported as it ends.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobReport {
    /// The job's id.
    pub job_id: String,
    /// Its attempt number (1 for the first claim).
    pub attempt: u32,
    /// What became of it.
    pub outcome: JobOutcome,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Why a worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// Asked to (a signal).
    Shutdown,
    /// The pool stayed empty for the idle limit.
    Idle,
    /// It ran its maximum number of jobs.
    MaxJobs,
    /// A reaper marked it lost (its heartbeats were late): it stopped claiming.
    Lost,
}

/// A worker's life in numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerSummary {
    /// The worker's id.
    pub worker_id: String,
    /// Jobs completed.
    pub completed: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Jobs returned to the pool or dropped.
    pub abandoned: u64,
    /// Why it stopped.
    pub stop: StopReason,
}

/// A worker could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// A backend call failed in a way the worker cannot work around.
    #[error("worker `{worker_id}` cannot {what} (pool `{pool}`): {source}")]
    Backend {
        /// The worker.
        worker_id: String,
        /// The pool.
        pool: String,
        /// What it was doing.
        what: &'static str,
        /// Why.
        #[source]
        source: Error,
    },
}

/// Claims that may fail in a row (the service restarting) before the worker gives up.
const CLAIM_FAILURES_ALLOWED: u32 = 20;
/// The first wait of an idle or failing worker.
const FIRST_WAIT: Duration = Duration::from_millis(25);
/// Attempts at recording a finished job.
const RECORD_ATTEMPTS: u32 = 3;

/// A worker of one pool. See the crate docs for the loop.
#[derive(Debug, Clone)]
pub struct Worker {
    registration: Arc<dyn RegistrationBackend>,
    work: Arc<dyn WorkBackend>,
    options: WorkerOptions,
}

struct Shared {
    lost: AtomicBool,
    completed: AtomicU64,
    current: Mutex<Option<String>>,
}

impl Worker {
    /// A worker over these backends.
    pub fn new(
        registration: Arc<dyn RegistrationBackend>,
        work: Arc<dyn WorkBackend>,
        options: WorkerOptions,
    ) -> Self {
        Worker {
            registration,
            work,
            options,
        }
    }

    /// Its id.
    pub fn worker_id(&self) -> &str {
        &self.options.worker_id
    }

    fn error(&self, what: &'static str, source: Error) -> WorkerError {
        WorkerError::Backend {
            worker_id: self.options.worker_id.clone(),
            pool: self.options.pool.clone(),
            what,
            source,
        }
    }

    /// Registers, runs jobs through `runner` until `shutdown` completes (or the idle or job
    /// limit is reached, or a reaper declares the worker lost), then deregisters. `on_job`
    /// hears about every claimed job as it ends.
    pub async fn run<S, F>(
        &self,
        runner: &dyn JobRunner,
        shutdown: S,
        mut on_job: F,
    ) -> Result<WorkerSummary, WorkerError>
    where
        S: Future<Output = ()>,
        F: FnMut(&JobReport),
    {
        let id = self.options.worker_id.clone();
        let registration = WorkerRegistration {
            worker_id: id.clone(),
            host: Some(host_name()),
            pid: Some(std::process::id()),
            capabilities: Some(self.options.capabilities.clone()),
            pool_id: Some(self.options.pool.clone()),
            started_at: now_iso8601(),
        };
        self.registration
            .register(registration)
            .await
            .map_err(|e| self.error("register", e))?;
        tracing::info!(worker_id = %id, pool = %self.options.pool, "worker registered");
        let shared = Arc::new(Shared {
            lost: AtomicBool::new(false),
            completed: AtomicU64::new(0),
            current: Mutex::new(None),
        });
        let beat = tokio::spawn(heartbeat(
            Arc::clone(&self.registration),
            id.clone(),
            self.options.heartbeat_interval,
            Arc::clone(&shared),
        ));
        let pool = self.work.pool(&self.options.pool);
        let result = self
            .claim_loop(&*pool, runner, shutdown, &shared, &mut on_job)
            .await;
        beat.abort();
        let summary = match result {
            Ok(summary) => summary,
            Err(e) => {
                self.stop(&*pool, false).await;
                return Err(e);
            }
        };
        self.stop(&*pool, summary.stop == StopReason::Lost).await;
        Ok(summary)
    }

    /// Returns whatever this worker still holds to the pool and records how it ended.
    async fn stop(&self, pool: &dyn WorkPool, lost: bool) {
        let id = &self.options.worker_id;
        match pool.release_by_worker(id).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(worker_id = %id, released = n, "returned unfinished jobs to the pool")
            }
            Err(e) => {
                tracing::warn!(worker_id = %id, error = %e, "cannot return this worker's jobs to the pool; a reaper will")
            }
        }
        // A lost worker keeps its `lost` status: the reaper's record of what happened.
        if !lost {
            match self
                .registration
                .update_status(id, status::TERMINATED)
                .await
            {
                Ok(()) => tracing::info!(worker_id = %id, "worker deregistered"),
                Err(e) => {
                    tracing::warn!(worker_id = %id, error = %e, "cannot deregister; a reaper will mark this worker lost")
                }
            }
        }
    }

    async fn claim_loop<S, F>(
        &self,
        pool: &dyn WorkPool,
        runner: &dyn JobRunner,
        shutdown: S,
        shared: &Shared,
        on_job: &mut F,
    ) -> Result<WorkerSummary, WorkerError>
    where
        S: Future<Output = ()>,
        F: FnMut(&JobReport),
    {
        let id = self.options.worker_id.as_str();
        tokio::pin!(shutdown);
        let mut stopping = false;
        let mut summary = WorkerSummary {
            worker_id: id.to_owned(),
            completed: 0,
            failed: 0,
            abandoned: 0,
            stop: StopReason::Shutdown,
        };
        let mut wait = FIRST_WAIT;
        let mut idle_since: Option<Instant> = None;
        let mut claim_failures = 0;
        let mut jobs = 0u64;
        loop {
            if stopping {
                summary.stop = StopReason::Shutdown;
                return Ok(summary);
            }
            if shared.lost.load(Ordering::Acquire) {
                summary.stop = StopReason::Lost;
                tracing::error!(worker_id = %id, "a reaper marked this worker lost; it stops claiming");
                return Ok(summary);
            }
            if self.options.max_jobs.is_some_and(|max| jobs >= max) {
                summary.stop = StopReason::MaxJobs;
                return Ok(summary);
            }
            let claimed = tokio::select! {
                biased;
                () = &mut shutdown, if !stopping => { stopping = true; continue; }
                claimed = pool.claim(id) => claimed,
            };
            let item = match claimed {
                Ok(Some(item)) => Some(item),
                Ok(None) => {
                    claim_failures = 0;
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if self
                        .options
                        .exit_when_idle
                        .is_some_and(|idle| since.elapsed() >= idle)
                    {
                        summary.stop = StopReason::Idle;
                        return Ok(summary);
                    }
                    None
                }
                Err(e) => {
                    claim_failures += 1;
                    if claim_failures > CLAIM_FAILURES_ALLOWED {
                        return Err(self.error("claim a job", e));
                    }
                    tracing::warn!(worker_id = %id, error = %e, attempt = claim_failures, "claim failed; retrying");
                    None
                }
            };
            // Nothing claimed: wait, longer each time, for work or for the service.
            let Some(item) = item else {
                tokio::select! {
                    biased;
                    () = &mut shutdown, if !stopping => stopping = true,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(self.options.poll_interval.max(FIRST_WAIT));
                continue;
            };
            claim_failures = 0;
            idle_since = None;
            wait = FIRST_WAIT;
            jobs += 1;
            set_current(shared, Some(item.id.clone()));
            let started = Instant::now();
            let finished = {
                let job = runner.run(&item);
                tokio::pin!(job);
                let first = tokio::select! {
                    biased;
                    result = &mut job => Some(result),
                    () = &mut shutdown, if !stopping => { stopping = true; None }
                };
                match first {
                    Some(result) => Some(result),
                    None => {
                        tracing::info!(worker_id = %id, job_id = %item.id, grace = ?self.options.shutdown_grace, "shutting down after the job in hand");
                        tokio::time::timeout(self.options.shutdown_grace, &mut job)
                            .await
                            .ok()
                    }
                }
            };
            let outcome = self.record(pool, &item, finished).await;
            set_current(shared, None);
            match &outcome {
                JobOutcome::Completed(_) => {
                    summary.completed += 1;
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                }
                JobOutcome::Failed(_) => summary.failed += 1,
                _ => summary.abandoned += 1,
            }
            on_job(&JobReport {
                job_id: item.id.clone(),
                attempt: item.attempts,
                outcome,
                elapsed: started.elapsed(),
            });
        }
    }

    /// Records a job's end in the pool, unless the job is no longer this worker's.
    async fn record(
        &self,
        pool: &dyn WorkPool,
        item: &WorkItem,
        finished: Option<Result<Value, String>>,
    ) -> JobOutcome {
        let id = self.options.worker_id.as_str();
        let Some(result) = finished else {
            return match pool.release_by_worker(id).await {
                Ok(_) => JobOutcome::Released,
                Err(e) => JobOutcome::Unrecorded(format!("cannot return the job to the pool: {e}")),
            };
        };
        match pool.get(&item.id).await {
            Ok(Some(current))
                if current.status == WorkStatus::Claimed
                    && current.claimed_by.as_deref() == Some(id)
                    && current.attempts == item.attempts => {}
            Ok(_) => {
                tracing::warn!(worker_id = %id, job_id = %item.id, "the job was given to the pool again while this worker ran it; its result is dropped");
                return JobOutcome::Dropped;
            }
            Err(e) => {
                return JobOutcome::Unrecorded(format!(
                    "cannot check the job before recording it: {e}"
                ));
            }
        }
        let mut last_error = None;
        for attempt in 0..RECORD_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(FIRST_WAIT * 4u32.pow(attempt)).await;
            }
            let recorded = match &result {
                Ok(output) => pool.complete(&item.id, Some(output.clone())).await,
                Err(message) => pool.fail(&item.id, Some(message)).await,
            };
            match recorded {
                Ok(()) => {
                    return match result {
                        Ok(output) => JobOutcome::Completed(output),
                        Err(message) => JobOutcome::Failed(message),
                    };
                }
                Err(e) => last_error = Some(e),
            }
        }
        let why = last_error.map(|e| e.to_string()).unwrap_or_default();
        JobOutcome::Unrecorded(format!("cannot record the job's end: {why}"))
    }
}

fn set_current(shared: &Shared, job: Option<String>) {
    if let Ok(mut current) = shared.current.lock() {
        *current = job;
    }
}

/// Beats every `interval` with the job in hand and the jobs completed as metadata, and
/// notices when a reaper has marked the worker lost.
async fn heartbeat(
    registration: Arc<dyn RegistrationBackend>,
    worker_id: String,
    interval: Duration,
    shared: Arc<Shared>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let current = shared
            .current
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .map_or(Value::Null, Value::String);
        let mut metadata = Map::new();
        metadata.insert("current_job".into(), current);
        metadata.insert(
            "jobs_completed".into(),
            Value::from(shared.completed.load(Ordering::Relaxed)),
        );
        match registration.heartbeat(&worker_id, Some(metadata)).await {
            Ok(()) => {}
            Err(Error::NotFound { .. }) => {
                shared.lost.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                tracing::warn!(worker_id = %worker_id, error = %e, "heartbeat failed");
                continue;
            }
        }
        if let Ok(Some(record)) = registration.get(&worker_id).await
            && record.status == status::LOST
        {
            shared.lost.store(true, Ordering::Release);
            return;
        }
    }
}
