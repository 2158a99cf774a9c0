//! Keeps the operations on one key in the order they were started, even when a caller stops
//! waiting for one.
//!
//! The filesystem work of a call runs on Tokio's blocking pool, and dropping the call's future
//! does not stop it: a `delete` whose caller gave up still removes the file, possibly after a
//! later `save` of the same key wrote it. So each call takes its keys' stripes of a lock table
//! before it starts and hands the guards to the blocking work, which drops them when it is
//! done: the next call on those keys waits until then.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// Stripes of the table: keys share a stripe by hash, which only costs an occasional wait.
const STRIPES: usize = 64;

/// The lock table one backend and its clones share.
#[derive(Debug, Clone)]
pub(crate) struct KeyOrder {
    stripes: Arc<[Arc<Mutex<()>>]>,
    hasher: std::hash::RandomState,
}

impl Default for KeyOrder {
    fn default() -> Self {
        KeyOrder {
            stripes: (0..STRIPES).map(|_| Arc::new(Mutex::new(()))).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }
}

/// The stripes a call holds until its filesystem work is done.
#[derive(Debug)]
pub(crate) struct Held {
    _guards: Vec<OwnedMutexGuard<()>>,
}

impl KeyOrder {
    fn stripe(&self, key: &str) -> usize {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key.as_bytes());
        (hasher.finish() % STRIPES as u64) as usize
    }

    /// Waits for every earlier call on `keys` to finish, then holds them. The stripes are
    /// taken in ascending order, so two calls never wait for each other.
    pub(crate) async fn hold<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> Held {
        let mut stripes: Vec<usize> = keys.into_iter().map(|key| self.stripe(key)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(Arc::clone(&self.stripes[stripe]).lock_owned().await);
        }
        Held { _guards: guards }
    }

    /// Waits for every earlier call on any key to finish, then holds them all: a `list`
    /// then sees what every call started before it did.
    pub(crate) async fn hold_all(&self) -> Held {
        let mut guards = Vec::with_capacity(STRIPES);
        for stripe in self.stripes.iter() {
            guards.push(Arc::clone(stripe).lock_owned().await);
        }
        Held { _guards: guards }
    }
}
