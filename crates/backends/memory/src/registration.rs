//! Worker registration in process memory.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::Utc;
use flatmachines_core::{
    Error, JsonMap, RegistrationBackend, Result, WorkerFilter, WorkerRecord, WorkerRegistration,
};
use indexmap::IndexMap;

use crate::time::now_iso8601;

type Workers = IndexMap<String, WorkerRecord>;

/// A [`RegistrationBackend`] in process memory.
///
/// Timestamps come from [`now_iso8601`]. `register` of a known id replaces its record (fresh
/// status, heartbeat and metadata) but keeps its place, and `list` returns records in the
/// order their ids were first registered, so listings are deterministic.
///
/// `list` with a `stale_threshold_seconds` returns workers whose `last_heartbeat` is more than
/// that many seconds old; a heartbeat that does not parse as ISO 8601 counts as stale, since
/// nothing shows the worker alive. A `status` filter of an empty list matches no worker.
///
/// `Clone` shares the records. Nothing survives the process.
#[derive(Clone, Default)]
pub struct MemoryRegistrationBackend {
    workers: Arc<Mutex<Workers>>,
}

impl MemoryRegistrationBackend {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Workers> {
        // Each update is a single insert or field assignment, so the map stays consistent even
        // if a panic elsewhere poisoned the lock.
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, worker_id: &str, change: impl FnOnce(&mut WorkerRecord)) -> Result<()> {
        let mut workers = self.lock();
        let record = workers.get_mut(worker_id).ok_or_else(|| Error::NotFound {
            what: "worker",
            key: worker_id.to_owned(),
        })?;
        change(record);
        Ok(())
    }
}

impl fmt::Debug for MemoryRegistrationBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRegistrationBackend")
            .field("workers", &self.lock().len())
            .finish()
    }
}

#[async_trait]
impl RegistrationBackend for MemoryRegistrationBackend {
    async fn register(&self, worker: WorkerRegistration) -> Result<WorkerRecord> {
        let record = WorkerRecord::from_registration(worker, now_iso8601());
        self.lock().insert(record.worker_id.clone(), record.clone());
        Ok(record)
    }

    async fn heartbeat(&self, worker_id: &str, metadata: Option<JsonMap>) -> Result<()> {
        let now = now_iso8601();
        self.update(worker_id, |record| {
            record.last_heartbeat = now;
            if let Some(metadata) = metadata {
                record.metadata.get_or_insert_default().extend(metadata);
            }
        })
    }

    async fn update_status(&self, worker_id: &str, status: &str) -> Result<()> {
        let status = status.to_owned();
        self.update(worker_id, |record| record.status = status)
    }

    async fn get(&self, worker_id: &str) -> Result<Option<WorkerRecord>> {
        Ok(self.lock().get(worker_id).cloned())
    }

    async fn list(&self, filter: &WorkerFilter) -> Result<Vec<WorkerRecord>> {
        let now = Utc::now();
        Ok(self
            .lock()
            .values()
            .filter(|record| filter.matches(record, now))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_with_an_unparseable_heartbeat_is_listed_as_stale() {
        let registration = WorkerRegistration {
            worker_id: "w".to_owned(),
            host: None,
            pid: None,
            capabilities: None,
            pool_id: None,
            started_at: String::new(),
        };
        let record = WorkerRecord::from_registration(registration, "not a time".to_owned());
        let stale = WorkerFilter {
            stale_threshold_seconds: Some(3600.0),
            ..WorkerFilter::default()
        };
        assert!(stale.matches(&record, Utc::now()));
        assert!(WorkerFilter::default().matches(&record, Utc::now()));
    }
}
