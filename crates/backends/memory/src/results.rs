//! Execution results with blocking reads.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use flatmachines_core::{Error, ReadOptions, Result, ResultBackend, ResultUri};
use serde_json::Value;
use tokio::sync::watch;

/// One watch channel per key: its value is the stored result (`None` when nothing is stored)
/// and its receivers are the blocked readers. A key has an entry only while it holds a value or
/// has a reader, so waiting leaves nothing behind.
type Slots = HashMap<String, watch::Sender<Option<Value>>>;

/// A [`ResultBackend`] in process memory.
///
/// A blocking `read` subscribes to the key before it looks at the stored value, so a `write`
/// landing between the two cannot be missed, and it sleeps until a write wakes it — no
/// polling. A reader returns the value present when it wakes: if a value is written and then
/// deleted before the reader runs, the reader keeps waiting.
///
/// Blocking reads with a timeout use Tokio's timer, so they must run inside a Tokio runtime with
/// the time driver enabled.
///
/// `Clone` shares the store: a clone's readers wake on the original's writes. Nothing survives
/// the process.
#[derive(Clone, Default)]
pub struct MemoryResultBackend {
    slots: Arc<Mutex<Slots>>,
}

impl MemoryResultBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        lock(&self.slots)
    }

    /// How many keys have per-key state but no value: readers still waiting on them. Zero once
    /// every read has returned, timed out or been dropped.
    #[cfg(test)]
    pub(crate) fn waiting_keys(&self) -> usize {
        self.lock()
            .values()
            .filter(|tx| tx.borrow().is_none())
            .count()
    }

    /// How many keys have any per-key state (a value or a waiting reader).
    #[cfg(test)]
    pub(crate) fn tracked_keys(&self) -> usize {
        self.lock().len()
    }
}

fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    // Every update of the map is a single insert or remove, so a panic elsewhere while the lock
    // was held cannot have left it inconsistent.
    slots.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for MemoryResultBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryResultBackend")
            .field("keys", &self.lock().len())
            .finish()
    }
}

/// A blocked reader's subscription. Dropping it — on success, timeout or cancellation — removes
/// the key's entry when it was the last reader and no value is stored.
struct Waiter {
    slots: Arc<Mutex<Slots>>,
    key: String,
    rx: Option<watch::Receiver<Option<Value>>>,
}

impl Waiter {
    async fn wait(&mut self) -> Result<Option<Value>> {
        let Some(rx) = self.rx.as_mut() else {
            return Ok(None);
        };
        match rx.wait_for(Option::is_some).await {
            Ok(value) => Ok(value.clone()),
            // The sender lives in the map while this receiver exists, so this is unreachable in
            // practice; reporting it beats hanging or panicking.
            Err(err) => Err(Error::backend("memory", err)),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // The receiver must be gone before counting the ones that remain.
        drop(self.rx.take());
        let mut slots = lock(&self.slots);
        if slots
            .get(&self.key)
            .is_some_and(|tx| tx.receiver_count() == 0 && tx.borrow().is_none())
        {
            slots.remove(&self.key);
        }
    }
}

#[async_trait]
impl ResultBackend for MemoryResultBackend {
    async fn write(&self, uri: &str, data: Value) -> Result<()> {
        let key = ResultUri::parse(uri)?.key();
        let old = {
            let mut slots = self.lock();
            let tx = slots.entry(key).or_insert_with(|| watch::Sender::new(None));
            // Wakes every receiver, i.e. every blocked reader of this key.
            tx.send_replace(Some(data))
        };
        drop(old);
        Ok(())
    }

    async fn read(&self, uri: &str, options: ReadOptions) -> Result<Option<Value>> {
        let key = ResultUri::parse(uri)?.key();
        let mut waiter = {
            let mut slots = self.lock();
            if let Some(value) = slots.get(&key).and_then(|tx| tx.borrow().clone()) {
                return Ok(Some(value));
            }
            if !options.block {
                return Ok(None);
            }
            // Subscribing under the same lock as the check above: a write cannot slip between.
            let rx = slots
                .entry(key.clone())
                .or_insert_with(|| watch::Sender::new(None))
                .subscribe();
            Waiter {
                slots: Arc::clone(&self.slots),
                key,
                rx: Some(rx),
            }
        };
        match options.timeout {
            None => waiter.wait().await,
            Some(after) => match tokio::time::timeout(after, waiter.wait()).await {
                Ok(read) => read,
                Err(_elapsed) => Err(Error::Timeout {
                    what: uri.to_owned(),
                    after,
                }),
            },
        }
    }

    async fn exists(&self, uri: &str) -> Result<bool> {
        let key = ResultUri::parse(uri)?.key();
        Ok(self
            .lock()
            .get(&key)
            .is_some_and(|tx| tx.borrow().is_some()))
    }

    async fn delete(&self, uri: &str) -> Result<()> {
        let key = ResultUri::parse(uri)?.key();
        let mut slots = self.lock();
        let Some(tx) = slots.get(&key) else {
            return Ok(());
        };
        if tx.receiver_count() == 0 {
            slots.remove(&key);
        } else {
            // Readers stay subscribed and wait for the next write; the entry must stay for them.
            tx.send_if_modified(|value| value.take().is_some());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
