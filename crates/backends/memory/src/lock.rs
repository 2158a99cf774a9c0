//! A lock that excludes nothing.

use async_trait::async_trait;
use flatmachines_core::{ExecutionLock, Result};

/// An [`ExecutionLock`] that always grants the lock and provides **no exclusion**: two runners
/// of the same execution id both acquire it.
///
/// Use it where locking is external (a scheduler that never starts the same execution twice)
/// or unneeded (a single runner per process, tests). `acquire` always returns `Ok(true)` and
/// `release` does nothing, so contract clause 2 of [`ExecutionLock`] (mutual exclusion) does
/// not hold by design.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NoOpLock;

impl NoOpLock {
    /// The lock. Equivalent to `NoOpLock` or `NoOpLock::default()`.
    pub const fn new() -> Self {
        NoOpLock
    }
}

#[async_trait]
impl ExecutionLock for NoOpLock {
    async fn acquire(&self, _key: &str) -> Result<bool> {
        Ok(true)
    }

    async fn release(&self, _key: &str) -> Result<()> {
        Ok(())
    }
}
