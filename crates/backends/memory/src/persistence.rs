//! Checkpoint storage in a hash map.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use flatmachines_core::{PersistenceBackend, Result, validate_key, validate_prefix};

/// A [`PersistenceBackend`] holding every key in process memory.
///
/// Values are kept as [`Bytes`], so `load` is a reference-count bump rather than a copy, and
/// every method is one short critical section on a single mutex — the engine saves several
/// keys per state step and this backend must stay far below its per-step budget.
///
/// `Clone` is cheap and **shares the store**: a clone sees every write of the original.
/// Nothing survives the process.
///
/// Keys are checked with [`validate_key`] in every method, and `list` prefixes with
/// [`validate_prefix`](flatmachines_core::validate_prefix).
#[derive(Clone, Default)]
pub struct MemoryBackend {
    store: Arc<Mutex<Store>>,
}

/// Keys are checkpoint paths chosen by the runtime; foldhash hashes them several times faster
/// than SipHash while keeping a per-process random seed.
type Store = HashMap<String, Bytes, foldhash::fast::RandomState>;

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // No operation can leave the map half-updated, so a panic elsewhere while the lock was
        // held does not make the data untrustworthy.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values can be megabytes; the key count is what a reader of a debug dump needs.
        f.debug_struct("MemoryBackend")
            .field("keys", &self.len())
            .finish()
    }
}

#[async_trait]
impl PersistenceBackend for MemoryBackend {
    async fn save(&self, key: &str, value: Bytes) -> Result<()> {
        validate_key(key)?;
        let old = {
            let mut store = self.lock();
            // Overwrites (the `latest` pointer, every checkpoint) reuse the stored key.
            match store.get_mut(key) {
                Some(slot) => Some(std::mem::replace(slot, value)),
                None => store.insert(key.to_owned(), value),
            }
        };
        // Freeing a large replaced value happens after the guard is gone.
        drop(old);
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<Bytes>> {
        validate_key(key)?;
        Ok(self.lock().get(key).cloned())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let old = self.lock().remove(key);
        drop(old);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        let mut keys: Vec<String> = self
            .lock()
            .keys()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect();
        // `str` ordering is UTF-8 byte order, which is what the contract asks for.
        keys.sort_unstable();
        Ok(keys)
    }
}
