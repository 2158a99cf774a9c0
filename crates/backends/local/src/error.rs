//! The crate's own error: which filesystem operation failed, on which path.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A failed filesystem operation. Its `Display` is the whole story (`cannot write checkpoint
/// file `/x/abc/latest`: Permission denied (os error 13)`), so it reports no `source`: a
/// reporter walking the chain would print the OS message twice.
#[derive(Debug)]
pub(crate) struct LocalError {
    operation: &'static str,
    path: PathBuf,
    io: io::Error,
}

impl LocalError {
    pub(crate) fn new(operation: &'static str, path: &Path, io: io::Error) -> Self {
        LocalError {
            operation,
            path: path.to_owned(),
            io,
        }
    }

    pub(crate) fn kind(&self) -> io::ErrorKind {
        self.io.kind()
    }
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} `{}`: {}",
            self.operation,
            self.path.display(),
            self.io
        )
    }
}

impl std::error::Error for LocalError {}

impl From<LocalError> for flatmachines_core::Error {
    fn from(error: LocalError) -> Self {
        // Filesystem failures (permissions, a full disk, a file where a directory should be)
        // do not go away by retrying the same call at once.
        flatmachines_core::Error::backend("local", error)
    }
}

/// Runs filesystem work on Tokio's blocking pool: fsync can take milliseconds and must not
/// stall the async workers.
pub(crate) async fn blocking<T, F>(work: F) -> flatmachines_core::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LocalError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Into::into),
        // Only a panic in `work` or a runtime shutting down gets here.
        Err(join) => Err(flatmachines_core::Error::backend("local", join)),
    }
}
