//! Redis backends of the FlatMachines runtime, for runs shared between processes and hosts:
//!
//! - [`RedisBackend`] — checkpoint storage
//!   ([`PersistenceBackend`](flatmachines_core::PersistenceBackend)), one string per key,
//!   listed with `SCAN`;
//! - [`RedisLock`] — an [`ExecutionLock`](flatmachines_core::ExecutionLock) of `SET NX PX`
//!   keys holding a random token, released by a Lua compare-and-delete, with a lease renewed
//!   in the background so a dead holder's lock expires;
//! - [`RedisResultBackend`] — results ([`ResultBackend`](flatmachines_core::ResultBackend))
//!   whose blocking reads are woken by pub/sub;
//! - [`RedisRegistrationBackend`] — worker registration
//!   ([`RegistrationBackend`](flatmachines_core::RegistrationBackend)), a hash per worker and
//!   a sorted set by heartbeat;
//! - [`RedisWorkBackend`] and [`RedisWorkPool`] — work pools
//!   ([`WorkBackend`](flatmachines_core::WorkBackend)/[`WorkPool`](flatmachines_core::WorkPool))
//!   with atomic claims in Lua.
//!
//! All of them are opened from a [`RedisClient`], which holds the connection and the
//! namespace every key starts with:
//!
//! ```no_run
//! use flatmachines_redis::RedisClient;
//!
//! # fn demo() -> flatmachines_core::Result<()> {
//! let client = RedisClient::open("redis://127.0.0.1:6379/0?namespace=app")?;
//! let checkpoints = client.persistence();
//! let lock = client.lock();
//! # Ok(()) }
//! ```
//!
//! `rediss://` URLs connect over TLS (rustls, with the system's root certificates).

mod client;
mod config;
mod error;
mod lock;
mod persistence;
mod registration;
mod results;
mod work;

pub use client::RedisClient;
pub use config::{RedisConfig, redact_url};
pub use lock::RedisLock;
pub use persistence::{MAX_VALUE_BYTES, RedisBackend};
pub use registration::RedisRegistrationBackend;
pub use results::RedisResultBackend;
pub use work::{RedisWorkBackend, RedisWorkPool};

/// The URL schemes this crate opens: `redis` and `rediss` (TLS).
pub const SCHEMES: [&str; 2] = ["redis", "rediss"];

/// The environment variable naming the server for backends chosen by name in a config
/// (`backend: redis`) when the config does not give `settings.backends.redis_url`.
pub const URL_ENV: &str = "FLATMACHINES_REDIS_URL";

/// The server used when neither the config nor [`URL_ENV`] names one.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";
