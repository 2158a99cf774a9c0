//! SQLite backends of the FlatMachines runtime: checkpoints, execution results, worker
//! registration, work pools and execution locks in one database file that several processes
//! can share.
//!
//! ```no_run
//! use flatmachines_sqlite::{SqliteConfig, SqliteDatabase};
//!
//! # async fn demo() -> flatmachines_core::Result<()> {
//! let db = SqliteDatabase::connect(SqliteConfig::from_url("sqlite://workers.sqlite")?).await?;
//! let checkpoints = db.persistence(); // PersistenceBackend
//! let results = db.results(); // ResultBackend: children's outputs, blocking reads
//! let workers = db.registration(); // RegistrationBackend
//! let work = db.work(); // WorkBackend: named pools with atomic claims
//! let lock = db.lock(); // ExecutionLock with a lease
//! # Ok(()) }
//! ```
//!
//! - [`SqliteDatabase`] — one file, its connections, its versioned schema (embedded
//!   migrations), and bounded retries while another process holds the write lock;
//! - [`SqlitePersistence`] — a [`PersistenceBackend`](flatmachines_core::PersistenceBackend);
//!   a checkpoint (snapshot and `latest` pointer) is one commit;
//! - [`SqliteResultBackend`] — a [`ResultBackend`](flatmachines_core::ResultBackend) at
//!   `flatagents://{execution_id}/{path}`; a blocking read wakes at once on a write of this
//!   process and within about 100 ms on a write of another (it looks again, 5 ms to 100 ms
//!   apart);
//! - [`SqliteRegistration`] — a [`RegistrationBackend`](flatmachines_core::RegistrationBackend);
//! - [`SqliteWorkBackend`] / [`SqliteWorkPool`] — a
//!   [`WorkBackend`](flatmachines_core::WorkBackend) whose claims are one `UPDATE … RETURNING`
//!   statement, so no two workers, in any process, get the same item;
//! - [`SqliteLock`] — an [`ExecutionLock`](flatmachines_core::ExecutionLock) of lease rows,
//!   renewed while the holder lives, and taken over at once on the same host when the process
//!   that held it is gone;
//! - [`SqliteConfig`] — the path and options, also as a `sqlite://PATH?…` URL.
//!
//! The file is in WAL mode with `synchronous=NORMAL` by default: every commit survives the
//! process being killed; `?synchronous=full` also makes it survive power loss.

mod config;
mod database;
mod error;
mod file;
mod holder;
mod lock;
mod persistence;
mod registration;
mod results;
mod time;
mod work;

pub use config::{SCHEME, SqliteConfig, Synchronous};
pub use database::{SqliteDatabase, schema_version};
pub use lock::SqliteLock;
pub use persistence::{MAX_VALUE_LEN, SqlitePersistence};
pub use registration::SqliteRegistration;
pub use results::SqliteResultBackend;
pub use work::{SqliteWorkBackend, SqliteWorkPool};
