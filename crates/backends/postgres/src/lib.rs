//! PostgreSQL backends of the FlatMachines runtime, for state a team cannot lose:
//!
//! - [`PostgresBackend`] — checkpoint storage
//!   ([`PersistenceBackend`](flatmachines_core::PersistenceBackend)), one `bytea` row per key,
//!   listed by a range scan of the primary key;
//! - [`PostgresLock`] — an [`ExecutionLock`](flatmachines_core::ExecutionLock) of
//!   session-level advisory locks, freed by PostgreSQL the moment the holder's session ends;
//! - [`PostgresResultBackend`] — results ([`ResultBackend`](flatmachines_core::ResultBackend))
//!   whose blocking reads sleep on `LISTEN` until the write's `NOTIFY` wakes them;
//! - [`PostgresRegistrationBackend`] — worker registration
//!   ([`RegistrationBackend`](flatmachines_core::RegistrationBackend)) on the server's clock;
//! - [`PostgresWorkBackend`] and [`PostgresWorkPool`] — work pools
//!   ([`WorkBackend`](flatmachines_core::WorkBackend)/[`WorkPool`](flatmachines_core::WorkPool))
//!   whose claims are one `FOR UPDATE SKIP LOCKED` statement.
//!
//! All of them are opened from a [`PostgresStore`]: a `deadpool-postgres` pool on one schema,
//! whose tables an embedded, versioned migration creates at first use:
//!
//! ```no_run
//! use flatmachines_postgres::PostgresStore;
//!
//! # fn demo() -> flatmachines_core::Result<()> {
//! let store = PostgresStore::open("postgres://postgres@127.0.0.1:5432/test?schema=app")?;
//! let checkpoints = store.persistence();
//! let lock = store.lock();
//! # Ok(()) }
//! ```
//!
//! `sslmode=require` connects over TLS (rustls) with the `tls` feature.

mod config;
mod error;
mod listener;
mod lock;
mod persistence;
mod registration;
mod results;
mod schema;
mod store;
#[cfg(feature = "tls")]
mod tls;
mod work;

pub use config::{PostgresConfig, redact_url};
pub use lock::PostgresLock;
pub use persistence::{MAX_VALUE_BYTES, PostgresBackend};
pub use registration::PostgresRegistrationBackend;
pub use results::{MAX_RESULT_BYTES, PostgresResultBackend};
pub use schema::SCHEMA_VERSION;
pub use store::PostgresStore;
pub use work::{PostgresWorkBackend, PostgresWorkPool};

/// The URL schemes this crate opens: `postgres` and `postgresql`.
pub const SCHEMES: [&str; 2] = ["postgres", "postgresql"];

/// The environment variable naming the server for backends chosen by name in a config
/// (`backend: postgres`) when the config does not give `settings.backends.postgres_url`.
pub const URL_ENV: &str = "FLATMACHINES_POSTGRES_URL";

/// The server used when neither the config nor [`URL_ENV`] names one.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
