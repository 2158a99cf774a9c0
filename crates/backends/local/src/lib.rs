//! Local-file backends of the FlatMachines runtime, for runs on one machine:
//!
//! - [`LocalFileBackend`] — checkpoint storage
//!   ([`PersistenceBackend`](flatmachines_core::PersistenceBackend)) as one file per key under a
//!   directory, written atomically and, by default, durably (fsync);
//! - [`LocalFileLock`] — an [`ExecutionLock`](flatmachines_core::ExecutionLock) made of `flock`
//!   locks on files in a directory, freed by the OS when the holding process exits or dies.

mod error;
mod files;
mod lock;
mod order;
mod persistence;

pub use lock::LocalFileLock;
pub use persistence::LocalFileBackend;
