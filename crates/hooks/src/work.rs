//! [`ObservedWorkPool`]: a work pool that reports its claims to run observers.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use flatmachines_core::observe::{ClaimOutcome, RunEvent};
use flatmachines_core::{PushOptions, Result, RunObserver, WorkCounts, WorkItem, WorkPool};

/// Wraps a work pool so that every `claim` is reported to an observer as
/// [`RunEvent::WorkClaimed`] (claimed, empty or failed, with its latency); everything else
/// passes straight through. Workers wrap the pools they claim from with it to get work-pool
/// metrics.
#[derive(Debug)]
pub struct ObservedWorkPool {
    inner: Arc<dyn WorkPool>,
    name: String,
    observer: Arc<dyn RunObserver>,
}

impl ObservedWorkPool {
    /// `inner`, called `name` in events, reporting to `observer`.
    pub fn new(
        inner: Arc<dyn WorkPool>,
        name: impl Into<String>,
        observer: Arc<dyn RunObserver>,
    ) -> Self {
        ObservedWorkPool {
            inner,
            name: name.into(),
            observer,
        }
    }
}

#[async_trait]
impl WorkPool for ObservedWorkPool {
    async fn push(&self, data: Value, options: PushOptions) -> Result<String> {
        self.inner.push(data, options).await
    }

    async fn claim(&self, worker_id: &str) -> Result<Option<WorkItem>> {
        let started = Instant::now();
        let claimed = self.inner.claim(worker_id).await;
        let outcome = match &claimed {
            Ok(Some(_)) => ClaimOutcome::Claimed,
            Ok(None) => ClaimOutcome::Empty,
            Err(_) => ClaimOutcome::Failed,
        };
        self.observer.on_event(&RunEvent::WorkClaimed {
            pool: &self.name,
            worker_id,
            outcome,
            elapsed: started.elapsed(),
        });
        claimed
    }

    async fn complete(&self, item_id: &str, result: Option<Value>) -> Result<()> {
        self.inner.complete(item_id, result).await
    }

    async fn fail(&self, item_id: &str, error: Option<&str>) -> Result<()> {
        self.inner.fail(item_id, error).await
    }

    async fn size(&self) -> Result<u64> {
        self.inner.size().await
    }

    async fn counts(&self) -> Result<WorkCounts> {
        self.inner.counts().await
    }

    async fn release_by_worker(&self, worker_id: &str) -> Result<u64> {
        self.inner.release_by_worker(worker_id).await
    }

    async fn get(&self, item_id: &str) -> Result<Option<WorkItem>> {
        self.inner.get(item_id).await
    }
}
