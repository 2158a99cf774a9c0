//! An example custom backend: [`ShardedStore`], a [`PersistenceBackend`] that keeps its keys
//! in a fixed number of sorted in-memory shards.
//!
//! It is short on purpose: it shows the contract clauses a backend must meet and how its own
//! tests run the conformance suite (`tests/conformance.rs`). See `docs/custom-backends.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use bytes::Bytes;
use flatmachines_core::{PersistenceBackend, Result, validate_key, validate_prefix};

type Shard = BTreeMap<String, Bytes>;

/// A [`PersistenceBackend`] spread over shards chosen by a key's first segment — its
/// execution id — so one execution's checkpoints share a shard and writers of different
/// executions rarely wait for each other. Each shard is a sorted map, which makes `list` a
/// range scan. Nothing survives the process.
pub struct ShardedStore {
    shards: Vec<RwLock<Shard>>,
}

impl ShardedStore {
    /// A store of `shards` shards (at least one).
    pub fn new(shards: usize) -> Self {
        ShardedStore {
            shards: (0..shards.max(1)).map(|_| RwLock::default()).collect(),
        }
    }

    /// The index of the shard holding keys whose first segment is `segment`.
    fn index(&self, segment: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        segment.hash(&mut hasher);
        // The modulo keeps the value below the shard count, so it fits a usize.
        (hasher.finish() % self.shards.len() as u64) as usize
    }

    fn shard_of(&self, key: &str) -> usize {
        self.index(key.split('/').next().unwrap_or(key))
    }

    fn read(&self, index: usize) -> RwLockReadGuard<'_, Shard> {
        // Every write is one insert or remove, so a panic elsewhere cannot leave a shard
        // half-updated: a poisoned lock still guards consistent data.
        self.shards[index]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, index: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[index]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ShardedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values can be megabytes; the shard count is what a debug dump needs.
        f.debug_struct("ShardedStore")
            .field("shards", &self.shards.len())
            .finish()
    }
}

#[async_trait]
impl PersistenceBackend for ShardedStore {
    async fn save(&self, key: &str, value: Bytes) -> Result<()> {
        // Clause 7: a rejected key fails before anything changes.
        validate_key(key)?;
        // Clause 1: the value is swapped in whole under the shard's lock.
        self.write(self.shard_of(key)).insert(key.to_owned(), value);
        Ok(())
    }

    async fn save_many(&self, entries: &[(&str, Bytes)]) -> Result<()> {
        // Every key is checked first, so a bad key anywhere saves nothing.
        for (key, _) in entries {
            validate_key(key)?;
        }
        // Clause 8: inserted one after another, so an entry is never visible before the
        // ones ahead of it.
        for (key, value) in entries {
            self.write(self.shard_of(key))
                .insert((*key).to_owned(), value.clone());
        }
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<Bytes>> {
        validate_key(key)?;
        Ok(self.read(self.shard_of(key)).get(key).cloned())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        // Clause 4: removing a missing key is not an error.
        self.write(self.shard_of(key)).remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        // A prefix with a `/` names its first segment whole, so only that segment's shard can
        // hold matches; a shorter prefix (`exec-1`) can match many segments, in any shard.
        let shards: Vec<usize> = match prefix.split_once('/') {
            Some((segment, _)) => vec![self.index(segment)],
            None => (0..self.shards.len()).collect(),
        };
        let mut keys = Vec::new();
        for index in shards {
            let shard = self.read(index);
            let matching = shard
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(key, _)| key.starts_with(prefix))
                .map(|(key, _)| key.clone());
            keys.extend(matching);
        }
        // Clause 5: byte order across shards (each shard's part is sorted already).
        keys.sort_unstable();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_executions_keys_share_a_shard() {
        let store = ShardedStore::new(16);
        let shard = store.shard_of("exec-1/latest");
        assert_eq!(store.shard_of("exec-1/step_000001_execute.json"), shard);
        assert_eq!(store.shard_of("exec-1"), shard);
        assert_eq!(ShardedStore::new(0).shards.len(), 1);
        assert_eq!(format!("{store:?}"), "ShardedStore { shards: 16 }");
    }
}
