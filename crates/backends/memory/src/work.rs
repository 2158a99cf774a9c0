//! Named work pools in process memory.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use flatmachines_core::{
    Error, PushOptions, Result, WorkBackend, WorkCounts, WorkItem, WorkPool, WorkStatus,
};
use indexmap::IndexMap;
use serde_json::Value;
use uuid::Uuid;

use crate::time::now_iso8601;

/// A [`WorkBackend`] whose pools live in process memory.
///
/// `pool(name)` hands out the same [`MemoryWorkPool`] for the same name; pools of different
/// names share nothing. `Clone` shares the set of pools. Nothing survives the process.
#[derive(Clone, Default)]
pub struct MemoryWorkBackend {
    pools: Arc<Mutex<HashMap<String, Arc<MemoryWorkPool>>>>,
}

impl MemoryWorkBackend {
    /// A backend with no pools yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for MemoryWorkBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pools = lock(&self.pools).len();
        f.debug_struct("MemoryWorkBackend")
            .field("pools", &pools)
            .finish()
    }
}

impl WorkBackend for MemoryWorkBackend {
    fn pool(&self, name: &str) -> Arc<dyn WorkPool> {
        let mut pools = lock(&self.pools);
        if let Some(pool) = pools.get(name) {
            return Arc::clone(pool) as Arc<dyn WorkPool>;
        }
        let pool = Arc::new(MemoryWorkPool::new(name));
        pools.insert(name.to_owned(), Arc::clone(&pool));
        pool
    }
}

/// One pool of work items, claimed first in, first out.
///
/// Every method is one critical section on the pool's mutex, so claims are atomic across
/// tasks and threads. `claim` hands out the item that has waited longest as pending: items in
/// push order, and an item returned to pending by `fail` or `release_by_worker` goes behind
/// those already waiting. It is O(1), so pools of 100k items stay fast.
///
/// Items are never removed: `done` and `poisoned` items stay readable through `get`.
/// `complete` and `fail` require the item to be `claimed`; for an item in any other status
/// (already done, poisoned, back to pending) they fail with [`Error::Conflict`], whose message
/// names the item's status, and change nothing. `fail` returns the item to `pending`, clearing
/// `claimed_by` and `claimed_at`, while `attempts < max_retries`, and poisons it otherwise.
/// `release_by_worker` keeps `attempts` as they are: the released claim counts as an attempt.
/// `counts` is one consistent snapshot: the pool keeps a counter per status, updated in the
/// same critical section as each transition, so it is O(1) however many items are kept.
///
/// Share a pool through [`Arc`]; [`MemoryWorkBackend`] does that for named pools.
pub struct MemoryWorkPool {
    name: String,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    /// Every item ever pushed, in push order. Nothing is removed, so indices are stable.
    items: IndexMap<String, WorkItem>,
    /// Indices into `items` of exactly the pending items, oldest first.
    pending: VecDeque<usize>,
    /// Items per status; `pending` is the queue's length, so this keeps the other three.
    claimed: u64,
    done: u64,
    poisoned: u64,
}

impl MemoryWorkPool {
    /// An empty pool called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MemoryWorkPool {
            name: name.into(),
            state: Mutex::default(),
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        lock(&self.state)
    }

    /// Runs `change` on the claimed item `item_id`, returning its index.
    fn with_claimed<T>(
        &self,
        item_id: &str,
        change: impl FnOnce(&mut PoolState, usize) -> T,
    ) -> Result<T> {
        let mut state = self.lock();
        let Some((index, _, item)) = state.items.get_full(item_id) else {
            return Err(Error::NotFound {
                what: "work item",
                key: item_id.to_owned(),
            });
        };
        if item.status != WorkStatus::Claimed {
            return Err(Error::Conflict {
                key: item_id.to_owned(),
                message: format!("work item is {}, not claimed", item.status),
            });
        }
        Ok(change(&mut state, index))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update finishes its bookkeeping before any call that could panic, so the state
    // behind a poisoned lock is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for MemoryWorkPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (items, pending) = {
            let state = self.lock();
            (state.items.len(), state.pending.len())
        };
        f.debug_struct("MemoryWorkPool")
            .field("name", &self.name)
            .field("items", &items)
            .field("pending", &pending)
            .finish()
    }
}

/// Puts the claimed item at `index` back in the queue, no longer held by anyone.
fn requeue(state: &mut PoolState, index: usize) {
    if let Some((_, item)) = state.items.get_index_mut(index) {
        item.status = WorkStatus::Pending;
        item.claimed_by = None;
        item.claimed_at = None;
        state.pending.push_back(index);
        state.claimed = state.claimed.saturating_sub(1);
    }
}

#[async_trait]
impl WorkPool for MemoryWorkPool {
    async fn push(&self, data: Value, options: PushOptions) -> Result<String> {
        let id = Uuid::new_v4().to_string();
        let item = WorkItem {
            id: id.clone(),
            data,
            claimed_by: None,
            claimed_at: None,
            attempts: 0,
            max_retries: options.max_retries,
            status: WorkStatus::Pending,
            created_at: now_iso8601(),
            error: None,
            result: None,
        };
        let mut state = self.lock();
        let (index, _) = state.items.insert_full(id.clone(), item);
        state.pending.push_back(index);
        Ok(id)
    }

    async fn claim(&self, worker_id: &str) -> Result<Option<WorkItem>> {
        // Formatting the time outside the lock keeps the contended section short.
        let now = now_iso8601();
        let mut guard = self.lock();
        let state = &mut *guard;
        while let Some(index) = state.pending.pop_front() {
            // The queue holds only pending items; checking anyway means a stale index could
            // never hand out an item twice.
            let Some((_, item)) = state.items.get_index_mut(index) else {
                continue;
            };
            if item.status != WorkStatus::Pending {
                continue;
            }
            item.status = WorkStatus::Claimed;
            item.claimed_by = Some(worker_id.to_owned());
            item.claimed_at = Some(now);
            item.attempts = item.attempts.saturating_add(1);
            let claimed = item.clone();
            state.claimed += 1;
            return Ok(Some(claimed));
        }
        Ok(None)
    }

    async fn complete(&self, item_id: &str, result: Option<Value>) -> Result<()> {
        self.with_claimed(item_id, |state, index| {
            if let Some((_, item)) = state.items.get_index_mut(index) {
                item.status = WorkStatus::Done;
                item.result = result;
                state.claimed = state.claimed.saturating_sub(1);
                state.done += 1;
            }
        })
    }

    async fn fail(&self, item_id: &str, error: Option<&str>) -> Result<()> {
        let error = error.map(str::to_owned);
        self.with_claimed(item_id, |state, index| {
            let Some((_, item)) = state.items.get_index_mut(index) else {
                return;
            };
            item.error = error;
            if item.attempts < item.max_retries {
                requeue(state, index);
            } else {
                item.status = WorkStatus::Poisoned;
                state.claimed = state.claimed.saturating_sub(1);
                state.poisoned += 1;
            }
        })
    }

    async fn size(&self) -> Result<u64> {
        Ok(self.lock().pending.len() as u64)
    }

    async fn counts(&self) -> Result<WorkCounts> {
        let state = self.lock();
        Ok(WorkCounts {
            pending: state.pending.len() as u64,
            claimed: state.claimed,
            done: state.done,
            poisoned: state.poisoned,
        })
    }

    async fn release_by_worker(&self, worker_id: &str) -> Result<u64> {
        let mut state = self.lock();
        // Collected first, in push order, so released items queue up deterministically.
        let held: Vec<usize> = state
            .items
            .values()
            .enumerate()
            .filter(|(_, item)| {
                item.status == WorkStatus::Claimed && item.claimed_by.as_deref() == Some(worker_id)
            })
            .map(|(index, _)| index)
            .collect();
        for &index in &held {
            requeue(&mut state, index);
        }
        Ok(held.len() as u64)
    }

    async fn get(&self, item_id: &str) -> Result<Option<WorkItem>> {
        Ok(self.lock().items.get(item_id).cloned())
    }
}
