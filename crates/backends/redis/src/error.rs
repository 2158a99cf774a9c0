//! The crate's own errors: which operation failed, on what, against which server.

use std::fmt;

use redis::{ErrorKind, RedisError, RetryMethod};

/// A configuration that cannot work: a bad URL or namespace.
#[derive(Debug)]
pub(crate) struct ConfigError {
    message: String,
    expected: &'static str,
}

impl ConfigError {
    pub(crate) fn new(message: String, expected: &'static str) -> Self {
        ConfigError { message, expected }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.expected)
    }
}

impl std::error::Error for ConfigError {}

/// A failed Redis operation. Its `Display` names the operation, its subject (a key, a pool, a
/// worker) and the server (password hidden), then the driver's message.
#[derive(Debug)]
pub(crate) struct OperationError {
    operation: &'static str,
    subject: String,
    server: String,
    error: RedisError,
}

impl OperationError {
    pub(crate) fn driver(
        operation: &'static str,
        subject: &str,
        server: &str,
        error: RedisError,
    ) -> Self {
        OperationError {
            operation,
            subject: subject.to_owned(),
            server: server.to_owned(),
            error,
        }
    }
}

impl fmt::Display for OperationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.error;
        write!(
            f,
            "cannot {} `{}` on Redis at {}: ",
            self.operation, self.subject, self.server
        )?;
        if e.is_connection_refusal() {
            write!(f, "the server refused the connection (is it running?): {e}")
        } else if e.is_timeout() {
            write!(f, "no answer in time: {e}")
        } else if e.is_connection_dropped() {
            write!(f, "the connection dropped: {e}")
        } else {
            write!(f, "{e}")
        }
    }
}

impl std::error::Error for OperationError {}

impl From<OperationError> for flatmachines_core::Error {
    fn from(error: OperationError) -> Self {
        if is_transient(&error.error) {
            flatmachines_core::Error::transient("redis", error)
        } else {
            flatmachines_core::Error::backend("redis", error)
        }
    }
}

/// Whether the same call may succeed if tried again: the connection dropped or could not be
/// made, or the server asked to be asked again (loading, failover). Server errors about the
/// command itself, and failed authentication, are permanent.
pub(crate) fn is_transient(error: &RedisError) -> bool {
    if error.kind() == ErrorKind::AuthenticationFailed {
        return false;
    }
    matches!(
        error.retry_method(),
        RetryMethod::Reconnect | RetryMethod::RetryImmediately | RetryMethod::WaitAndRetry
    )
}
