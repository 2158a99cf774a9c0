//! This crate's failures, and how they map into [`flatmachines_core::Error`].

use std::error::Error as _;
use std::time::Duration;

use flatmachines_core::Error;

/// The backend name errors carry.
pub(crate) const BACKEND: &str = "postgres";

/// A failure of this crate, with the message a person needs: what was done, on which table
/// or server, and what PostgreSQL said.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct PgError {
    message: String,
    /// Whether retrying the same call may succeed.
    retryable: bool,
    /// Whether the connection dropped (or never answered): the statement may be retried on
    /// a fresh one, and the old connection is thrown away.
    dropped: bool,
}

impl PgError {
    /// A configuration the crate cannot use, with a hint of what it expects.
    pub(crate) fn config(message: String, hint: &str) -> Self {
        PgError {
            message: format!("{message} ({hint})"),
            retryable: false,
            dropped: false,
        }
    }

    /// The schema is missing, too old or too new for this build.
    pub(crate) fn schema(message: String) -> Self {
        PgError {
            message,
            retryable: false,
            dropped: false,
        }
    }

    /// No connection could be opened to `url` (already redacted).
    pub(crate) fn connect(url: &str, reason: &str) -> Self {
        PgError {
            message: format!("cannot connect to PostgreSQL at {url}: {reason}"),
            // The server may come back; nothing was done.
            retryable: true,
            dropped: false,
        }
    }

    /// `what` (an operation naming its key and table) failed with a driver error.
    pub(crate) fn query(what: &str, error: &tokio_postgres::Error) -> Self {
        let dropped = is_dropped(error);
        PgError {
            message: format!("{what} failed: {}", describe(error)),
            retryable: dropped || is_transient(error),
            dropped,
        }
    }

    /// `what` got no answer within `after`.
    pub(crate) fn timed_out(what: &str, after: Duration) -> Self {
        PgError {
            message: format!("{what} failed: PostgreSQL did not answer within {after:?}"),
            retryable: true,
            dropped: true,
        }
    }

    /// Whether the connection is gone, so the statement may run again on another.
    pub(crate) fn dropped(&self) -> bool {
        self.dropped
    }

    /// Whether the error is PostgreSQL's "undefined table" or "undefined schema".
    pub(crate) fn missing_relation(error: &tokio_postgres::Error) -> bool {
        error
            .as_db_error()
            .is_some_and(|db| matches!(db.code().code(), "42P01" | "3F000"))
    }
}

impl From<PgError> for Error {
    fn from(error: PgError) -> Self {
        Error::Backend {
            backend: BACKEND,
            retryable: error.retryable,
            source: Box::new(error),
        }
    }
}

/// What PostgreSQL (or the socket) said: the server's message, detail and SQLSTATE for a
/// database error, the cause chain for anything else.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        text.push_str(&format!(" [SQLSTATE {}]", db.code().code()));
        return text;
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Connection-level failures: the session is gone (closed socket, I/O error, the server
/// shutting the backend down or terminating it).
fn is_dropped(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    // No database error and no closed flag: an I/O failure or a protocol error on the
    // socket, after which the connection is unusable.
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Failures that a later attempt can get past: serialization failures, deadlocks, too many
/// connections, a cancelled statement.
fn is_transient(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        matches!(
            db.code().code(),
            "40001" | "40P01" | "53300" | "57014" | "55P03"
        )
    })
}
