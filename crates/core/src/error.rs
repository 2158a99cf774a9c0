//! The error every runtime trait returns.

use std::time::Duration;

/// Result alias for runtime trait methods.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error returned by the runtime traits ([`PersistenceBackend`](crate::PersistenceBackend),
/// [`ResultBackend`](crate::ResultBackend), work pools, …).
///
/// Backends keep their own private error types and map driver failures into
/// [`Error::Backend`], stating whether retrying can help. The other variants carry a meaning
/// that callers act on (a missing worker, a held lock, a key that was rejected).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named thing does not exist.
    #[error("{what} `{key}` was not found")]
    NotFound {
        /// What kind of thing was looked up ("worker", "work item", …).
        what: &'static str,
        /// Its identifier.
        key: String,
    },
    /// The named thing exists already and may not be created again.
    #[error("{what} `{key}` already exists")]
    AlreadyExists {
        /// What kind of thing it is.
        what: &'static str,
        /// Its identifier.
        key: String,
    },
    /// A concurrent writer won a race (a conditional write failed).
    #[error("conflict on `{key}`: {message}")]
    Conflict {
        /// The contended key.
        key: String,
        /// What happened.
        message: String,
    },
    /// An execution lock is held by someone else.
    #[error("lock `{key}` is held elsewhere")]
    LockHeld {
        /// The lock key (usually an execution id).
        key: String,
    },
    /// A lease-based execution lock this owner acquired is no longer safely its own: its lease
    /// could not be renewed in time, or another holder took the key.
    #[error("the execution lock `{key}` was lost: {reason}")]
    LockLost {
        /// The lock key (usually an execution id).
        key: String,
        /// How it was lost.
        reason: String,
    },
    /// A storage key was rejected (path traversal, empty, …).
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A `flatagents://` URI did not have the spec's shape.
    #[error("invalid result URI `{uri}`: {reason}")]
    InvalidUri {
        /// The rejected URI.
        uri: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A blocking operation ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// The operation is not available on this backend.
    #[error("`{operation}` is not supported by the {backend} backend")]
    Unsupported {
        /// The operation that was asked for.
        operation: &'static str,
        /// The backend that lacks it.
        backend: &'static str,
    },
    /// A value is larger than the backend accepts.
    #[error("value for `{key}` is {size} bytes, over the {backend} backend's limit of {limit}")]
    TooLarge {
        /// The key being written.
        key: String,
        /// The value's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
        /// The backend enforcing it.
        backend: &'static str,
    },
    /// Stored bytes could not be decoded, or a value could not be encoded.
    #[error("cannot {action} {what}: {source}")]
    Serialization {
        /// "encode" or "decode".
        action: &'static str,
        /// What was being (de)serialized, naming its key where there is one.
        what: String,
        /// The underlying serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The backend's driver or service failed.
    #[error("{backend} backend: {source}")]
    Backend {
        /// The backend family ("redis", "postgres", …).
        backend: &'static str,
        /// Whether retrying the same call may succeed (timeouts, dropped connections).
        retryable: bool,
        /// The driver error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A permanent driver failure of `backend`.
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Backend {
            backend,
            retryable: false,
            source: source.into(),
        }
    }

    /// A transient driver failure of `backend` (retrying may help).
    pub fn transient(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Backend {
            backend,
            retryable: true,
            source: source.into(),
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Backend {
                retryable: true,
                ..
            } | Error::Timeout { .. }
                | Error::Conflict { .. }
        )
    }
}
