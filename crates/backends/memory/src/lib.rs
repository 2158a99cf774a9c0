//! In-memory backends of the FlatMachines runtime.
//!
//! Each type implements one runtime trait of [`flatmachines_core`] for a single process:
//!
//! - [`NoOpLock`] — an [`ExecutionLock`](flatmachines_core::ExecutionLock) that excludes
//!   nothing, for runs where locking is external or unneeded;
//! - [`MemoryBackend`] — checkpoint storage
//!   ([`PersistenceBackend`](flatmachines_core::PersistenceBackend)) in a hash map;
//! - [`MemoryResultBackend`] — execution results
//!   ([`ResultBackend`](flatmachines_core::ResultBackend)) with blocking reads that wake on
//!   write;
//! - [`MemoryRegistrationBackend`] — worker registration
//!   ([`RegistrationBackend`](flatmachines_core::RegistrationBackend));
//! - [`MemoryWorkBackend`] and [`MemoryWorkPool`] — named work pools
//!   ([`WorkBackend`](flatmachines_core::WorkBackend)/[`WorkPool`](flatmachines_core::WorkPool)).
//!
//! Nothing they hold survives the process: use them for tests, single-process runs and
//! embedding. Their `Clone` impls share state, so clones see each other's writes.

mod lock;
mod persistence;
mod registration;
mod results;
mod time;
mod work;

pub use lock::NoOpLock;
pub use persistence::MemoryBackend;
pub use registration::MemoryRegistrationBackend;
pub use results::MemoryResultBackend;
pub use time::now_iso8601;
pub use work::{MemoryWorkBackend, MemoryWorkPool};
