//! Execution locks: one runner per execution id.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::Result;

/// Keeps two runners from executing the same execution id at once.
///
/// # Contract
///
/// 1. `acquire` never blocks waiting for the holder: it returns `Ok(true)` when the caller now
///    holds the lock and `Ok(false)` when someone else does.
/// 2. While one holder has the lock, every other `acquire` of that key returns `Ok(false)` —
///    across tasks, and across processes where the backend is shared.
/// 3. `release` by the holder frees the key; `release` of a key the caller does not hold does
///    nothing and succeeds.
/// 4. After `release`, the key can be acquired again.
/// 5. Where the lock has a lease, a holder that dies stops holding the key once its lease ends.
/// 6. `ensure_held` of a key the caller acquired returns `Ok(())` while the caller can be sure
///    it still holds the key, and fails with [`Error::LockLost`](crate::Error::LockLost) once it
///    knows it lost the key (another holder has it) or can no longer be sure it holds it (its
///    lease could not be renewed in time). It answers from what the holder already knows,
///    without waiting on I/O, so callers can ask before every write the lock protects. A key
///    taken by another holder stays lost; a holder only unsure of its lease may answer
///    `Ok(())` again once a later renewal confirms it still holds the key. For a key the caller
///    never acquired, or released, the answer is the backend's to choose. Locks without
///    leases never lose a key and keep the default, which always answers `Ok(())`.
///
/// The in-memory `NoOpLock` is the one deliberate exception to clause 2: it is for runs whose
/// exclusion is handled elsewhere (or not needed) and always grants the lock. The conformance
/// suite knows it as a lock without the exclusion capability.
#[async_trait]
pub trait ExecutionLock: Send + Sync + Debug {
    /// Tries to take the lock for `key` without waiting.
    async fn acquire(&self, key: &str) -> Result<bool>;
    /// Frees the lock for `key` if this owner holds it.
    async fn release(&self, key: &str) -> Result<()>;

    /// Fails with [`Error::LockLost`](crate::Error::LockLost) when this owner has lost `key`,
    /// or can no longer be sure it holds it (clause 6). The runtime asks before every
    /// checkpoint of a run tree, so a runner whose lease ran out stops writing instead of
    /// overwriting the checkpoints of whoever took the execution over.
    fn ensure_held(&self, key: &str) -> Result<()> {
        let _ = key;
        Ok(())
    }
}
