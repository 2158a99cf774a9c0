//! Worker registration and work pools, for distributed execution.

use std::fmt::{self, Debug};
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{JsonMap, Result};

/// Worker status values. The spec keeps status a free string for extensibility; these are the
/// ones it names.
pub mod status {
    /// Running and healthy.
    pub const ACTIVE: &str = "active";
    /// Received a shutdown signal.
    pub const TERMINATING: &str = "terminating";
    /// Exited cleanly.
    pub const TERMINATED: &str = "terminated";
    /// Missed its heartbeats; presumed dead.
    pub const LOST: &str = "lost";
}

/// What a worker says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkerRegistration {
    /// Unique worker id.
    pub worker_id: String,
    /// Host name.
    #[serde(default)]
    pub host: Option<String>,
    /// OS process id.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Capability tags, e.g. `["gpu"]`.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// The pool the worker serves.
    #[serde(default)]
    pub pool_id: Option<String>,
    /// When the worker started, ISO 8601.
    pub started_at: String,
}

/// A registered worker as the backend knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkerRecord {
    /// Unique worker id.
    pub worker_id: String,
    /// One of [`status`], or another string.
    pub status: String,
    /// Last heartbeat, ISO 8601 in UTC.
    pub last_heartbeat: String,
    /// Host name.
    #[serde(default)]
    pub host: Option<String>,
    /// OS process id.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Capability tags.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// The pool the worker serves.
    #[serde(default)]
    pub pool_id: Option<String>,
    /// When the worker started.
    #[serde(default)]
    pub started_at: Option<String>,
    /// The task the worker is on.
    #[serde(default)]
    pub current_task_id: Option<String>,
    /// Free-form metadata, merged by heartbeats.
    #[serde(default)]
    pub metadata: Option<JsonMap>,
}

impl WorkerRecord {
    /// A fresh `active` record for `registration`, heartbeat at `now`.
    pub fn from_registration(registration: WorkerRegistration, now: String) -> Self {
        WorkerRecord {
            worker_id: registration.worker_id,
            status: status::ACTIVE.to_owned(),
            last_heartbeat: now,
            host: registration.host,
            pid: registration.pid,
            capabilities: registration.capabilities,
            pool_id: registration.pool_id,
            started_at: Some(registration.started_at),
            current_task_id: None,
            metadata: None,
        }
    }
}

/// Which workers [`RegistrationBackend::list`] returns. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkerFilter {
    /// Any of these statuses.
    #[serde(default)]
    pub status: Option<Vec<String>>,
    /// Has this capability.
    #[serde(default)]
    pub capability: Option<String>,
    /// Serves this pool.
    #[serde(default)]
    pub pool_id: Option<String>,
    /// Last heartbeat older than this many seconds (stale workers).
    #[serde(default)]
    pub stale_threshold_seconds: Option<f64>,
}

/// Worker lifecycle: register, heartbeat, status.
///
/// # Contract
///
/// 1. `register` creates (or replaces) the worker with status `active` and a heartbeat of now.
/// 2. `heartbeat` moves `last_heartbeat` to now and merges `metadata` key by key into the
///    stored metadata; `update_status` sets the status string.
/// 3. `heartbeat` and `update_status` of an unknown worker fail with
///    [`Error::NotFound`](crate::Error::NotFound).
/// 4. `get` of an unknown worker is `Ok(None)`.
/// 5. `list` returns exactly the workers matching every set field of the filter.
#[async_trait]
pub trait RegistrationBackend: Send + Sync + Debug {
    /// Registers a worker as `active`.
    async fn register(&self, worker: WorkerRegistration) -> Result<WorkerRecord>;
    /// Records a heartbeat, merging `metadata` into the worker's.
    async fn heartbeat(&self, worker_id: &str, metadata: Option<JsonMap>) -> Result<()>;
    /// Sets the worker's status.
    async fn update_status(&self, worker_id: &str, status: &str) -> Result<()>;
    /// The worker's record, if registered.
    async fn get(&self, worker_id: &str) -> Result<Option<WorkerRecord>>;
    /// The workers matching `filter`.
    async fn list(&self, filter: &WorkerFilter) -> Result<Vec<WorkerRecord>>;
}

/// Where a work item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkStatus {
    /// Waiting to be claimed.
    Pending,
    /// Held by a worker.
    Claimed,
    /// Completed.
    Done,
    /// Failed `max_retries` times; kept for inspection, never claimed again.
    Poisoned,
}

impl WorkStatus {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            WorkStatus::Pending => "pending",
            WorkStatus::Claimed => "claimed",
            WorkStatus::Done => "done",
            WorkStatus::Poisoned => "poisoned",
        }
    }
}

impl fmt::Display for WorkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default number of attempts before an item is poisoned.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// A unit of work in a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkItem {
    /// Item id, assigned by `push`.
    pub id: String,
    /// The pushed data.
    pub data: Value,
    /// The worker holding it.
    #[serde(default)]
    pub claimed_by: Option<String>,
    /// When it was claimed.
    #[serde(default)]
    pub claimed_at: Option<String>,
    /// How many times it has been claimed.
    pub attempts: u32,
    /// Attempts allowed before it is poisoned.
    pub max_retries: u32,
    /// Where it is in its life.
    pub status: WorkStatus,
    /// When it was pushed.
    pub created_at: String,
    /// The error of the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result stored by `complete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// Options of [`WorkPool::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOptions {
    /// Attempts allowed before the item is poisoned.
    pub max_retries: u32,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

/// How many items of a pool are in each [`WorkStatus`], as [`WorkPool::counts`] reports them.
///
/// Items are never removed from a pool, so `total()` is every item ever pushed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct WorkCounts {
    /// Waiting to be claimed; always what [`WorkPool::size`] says.
    pub pending: u64,
    /// Held by a worker.
    pub claimed: u64,
    /// Completed.
    pub done: u64,
    /// Failed `max_retries` times.
    pub poisoned: u64,
}

impl WorkCounts {
    /// Every item, in whatever status. Saturates rather than overflowing.
    pub const fn total(&self) -> u64 {
        self.pending
            .saturating_add(self.claimed)
            .saturating_add(self.done)
            .saturating_add(self.poisoned)
    }

    /// The count of `status`.
    pub const fn get(&self, status: WorkStatus) -> u64 {
        match status {
            WorkStatus::Pending => self.pending,
            WorkStatus::Claimed => self.claimed,
            WorkStatus::Done => self.done,
            WorkStatus::Poisoned => self.poisoned,
        }
    }
}

/// Named work pools.
pub trait WorkBackend: Send + Sync + Debug {
    /// The pool called `name`, created on first use.
    fn pool(&self, name: &str) -> Arc<dyn WorkPool>;
}

/// A named pool of work items with atomic claims.
///
/// # Contract
///
/// 1. `claim` is atomic: however many workers (tasks or processes) claim at once, each pending
///    item is handed to exactly one of them. It returns `Ok(None)` when nothing is pending.
/// 2. A claim marks the item `claimed`, records the worker and time, and adds one to `attempts`.
/// 3. `complete` marks the item `done` and stores its result.
/// 4. `fail` of a claimed item returns it to `pending` while `attempts < max_retries`, and marks
///    it `poisoned` (kept, never claimed again) once `attempts >= max_retries`.
/// 5. `size` counts pending items only.
/// 6. `release_by_worker` returns every item that worker holds to `pending` and says how many.
/// 7. `complete`, `fail` and `get` of an unknown item: the first two fail with
///    [`Error::NotFound`](crate::Error::NotFound), `get` returns `Ok(None)`.
/// 8. Pools with different names share nothing.
/// 9. `counts` reports how many items are in each status, and follows every transition:
///    `push` adds one to `pending`; `claim` moves one from `pending` to `claimed`; `complete`
///    moves one from `claimed` to `done`; `fail` moves one from `claimed` to `pending` or to
///    `poisoned` (as clause 4 decides); `release_by_worker` moves every item it releases from
///    `claimed` to `pending`. Calls that change nothing (a refused `complete`, a claim of an
///    empty pool) change no count. `counts().pending` equals `size()`, and a pool's counts
///    include no other pool's items (clause 8). Each implementation documents whether the four
///    numbers are one snapshot or may mix moments of a concurrently changing pool.
#[async_trait]
pub trait WorkPool: Send + Sync + Debug {
    /// Adds an item and returns its id.
    async fn push(&self, data: Value, options: PushOptions) -> Result<String>;
    /// Claims the next pending item for `worker_id`.
    async fn claim(&self, worker_id: &str) -> Result<Option<WorkItem>>;
    /// Marks an item done, storing `result`.
    async fn complete(&self, item_id: &str, result: Option<Value>) -> Result<()>;
    /// Records a failed attempt.
    async fn fail(&self, item_id: &str, error: Option<&str>) -> Result<()>;
    /// How many items are pending.
    async fn size(&self) -> Result<u64>;
    /// How many items are in each status (clause 9).
    async fn counts(&self) -> Result<WorkCounts>;
    /// Returns a lost worker's claims to the pool.
    async fn release_by_worker(&self, worker_id: &str) -> Result<u64>;
    /// An item by id, in whatever status.
    async fn get(&self, item_id: &str) -> Result<Option<WorkItem>>;
}
