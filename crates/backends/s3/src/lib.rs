//! S3 checkpoint storage of the FlatMachines runtime, for serverless deployments (Lambda,
//! Cloud Run) that keep their checkpoints in object storage: [`S3Backend`], a
//! [`PersistenceBackend`](flatmachines_core::PersistenceBackend) with one object per key
//! under a configurable prefix of a bucket, on AWS S3 or any S3-compatible server (MinIO,
//! Ceph, Cloudflare R2, LocalStack, moto).
//!
//! ```no_run
//! use flatmachines_s3::S3Backend;
//!
//! # async fn demo() -> flatmachines_core::Result<()> {
//! // Credentials, region and endpoint come from the standard AWS chain unless the URL says.
//! let checkpoints = S3Backend::open("s3://my-bucket/flatmachines?region=eu-west-1")?;
//! checkpoints.check().await?; // fails clearly when the bucket is missing or unreachable
//! # Ok(()) }
//! ```
//!
//! For S3-compatible servers set `AWS_ENDPOINT_URL` (or `?endpoint=http://HOST:PORT`);
//! path-style addressing is then on by default.
//!
//! **No execution lock.** S3 has nothing to build a lock from without a lease protocol of
//! its own, so this crate offers none, and the facade pairs `s3://` stores with no lock. Run
//! at most one runner per execution id, or take the lock from a backend that has one
//! (`settings.backends.locking: redis` or `postgres`). Snapshots are created with
//! `If-None-Match: *`, so a snapshot written twice is at least noticed (see [`S3Backend`]).
//!
//! Requests time out (3 s to connect, 20 s per attempt, 60 s in all by default) and are
//! retried by the SDK's standard policy, throttling included. Failures name the operation,
//! the object as `s3://bucket/key` and the endpoint, and say what to do about a missing
//! bucket, refused credentials, a wrong region or an unreachable endpoint; [`S3Error`]
//! carries the [`S3ErrorKind`].

mod client;
mod conditional;
mod config;
mod error;
mod persistence;

/// The AWS SDK this crate is built on, for [`S3Backend::sdk_client`].
pub use aws_sdk_s3;
pub use client::DEFAULT_REGION;
pub use config::S3Config;
pub use error::{S3Error, S3ErrorKind};
pub use persistence::{MAX_VALUE_BYTES, S3Backend};

/// The URL scheme this crate opens: `s3`.
pub const SCHEME: &str = "s3";

/// The environment variable naming the store (`s3://BUCKET/PREFIX`) for configs that say
/// `backend: s3` without `settings.backends.s3_bucket`.
pub const URL_ENV: &str = "FLATMACHINES_S3_URL";
