//! Execution locks as `flock` locks on files.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use flatmachines_core::{ExecutionLock, Result};

use crate::error::{LocalError, blocking};
use crate::files::ensure_dir;
use crate::persistence::{check_key, invalid};

/// An [`ExecutionLock`] holding an exclusive `flock` on the file `{dir}/{key}.lock`.
///
/// `acquire` never waits: it takes the lock or reports that someone else — another process,
/// another `LocalFileLock`, or another task of this one — holds it. The lock belongs to the
/// open file, so the OS frees it when the holding process exits or dies, however it ends;
/// there is no lease to expire and no stale lock to clean up. Holding the file open is what
/// holds the lock, and `release` closes it; dropping the `LocalFileLock` releases every key it
/// holds.
///
/// The exclusion is per machine: processes on other hosts do not see it, and on network
/// filesystems (NFS, SMB) `flock` semantics vary, so do not share a lock directory across
/// hosts.
///
/// Keys follow the rules of [`LocalFileBackend`](crate::LocalFileBackend) and may not contain
/// `/`: lock files live flat in `dir`. Lock files are never deleted, since deleting one races
/// with another process locking it; they are empty and one exists per key ever locked.
pub struct LocalFileLock {
    dir: PathBuf,
    held: Mutex<HashMap<String, File>>,
}

impl LocalFileLock {
    /// The reference runtime's default directory, relative to the working directory.
    pub const DEFAULT_DIR: &'static str = ".locks";

    /// Keeps lock files in `dir`, creating it (and its parents) if missing.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        ensure_dir(&dir, "create lock directory")?;
        Ok(LocalFileLock {
            dir,
            held: Mutex::default(),
        })
    }

    /// The directory holding the lock files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, File>> {
        // Each update is one insert or remove, so a panic elsewhere cannot leave the map
        // inconsistent.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for LocalFileLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalFileLock")
            .field("dir", &self.dir)
            .field("held", &self.held().len())
            .finish()
    }
}

fn check_lock_key(key: &str) -> Result<()> {
    check_key(key)?;
    if key.contains('/') {
        return Err(invalid(key, "lock keys may not contain `/`"));
    }
    Ok(())
}

/// Opens the lock file and tries to lock it; `None` when someone else holds it.
fn try_lock(path: &Path) -> Result<Option<File>, LocalError> {
    const OPERATION: &str = "lock";
    // No truncation: the file's content is irrelevant, and it may be locked by someone else.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|err| LocalError::new(OPERATION, path, err))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(err)) => Err(LocalError::new(OPERATION, path, err)),
    }
}

#[async_trait]
impl ExecutionLock for LocalFileLock {
    async fn acquire(&self, key: &str) -> Result<bool> {
        check_lock_key(key)?;
        // The held file must stay untouched: opening and dropping a second handle is harmless
        // for `flock`, but answering from the map is cheaper and certain.
        if self.held().contains_key(key) {
            return Ok(false);
        }
        let path = self.dir.join(format!("{key}.lock"));
        // A cancelled acquire drops the file with the task's output, which frees the lock.
        let Some(file) = blocking(move || try_lock(&path)).await? else {
            return Ok(false);
        };
        match self.held().entry(key.to_owned()) {
            // Unreachable while `flock` excludes our own second handle; refusing is the safe
            // answer.
            Entry::Occupied(_) => Ok(false),
            Entry::Vacant(slot) => {
                slot.insert(file);
                Ok(true)
            }
        }
    }

    async fn release(&self, key: &str) -> Result<()> {
        check_lock_key(key)?;
        let file = self.held().remove(key);
        if let Some(file) = file {
            // Unlocking explicitly frees the lock even if a forked child inherited the
            // descriptor; closing alone would not. Closing frees it too, so errors are moot.
            let _ = file.unlock();
        }
        Ok(())
    }
}
