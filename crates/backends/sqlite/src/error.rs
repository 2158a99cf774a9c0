//! The crate's own error, and how SQLite's result codes map to the runtime's [`Error`].

use std::path::{Path, PathBuf};

use flatmachines_core::Error;

/// SQLite's primary result codes this crate tells apart (the low byte of an extended code).
mod code {
    pub(super) const BUSY: i32 = 5;
    pub(super) const LOCKED: i32 = 6;
    pub(super) const READONLY: i32 = 8;
    pub(super) const CORRUPT: i32 = 11;
    pub(super) const NOTADB: i32 = 26;
}

/// What went wrong, naming the database file and the operation. Its `Display` is the whole
/// story, so the driver error is part of the message rather than a `source`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SqliteError {
    #[error(
        "`{url}` is not a sqlite URL: {reason} (expected sqlite://PATH[?option=value&…], for example sqlite://workers.sqlite)"
    )]
    BadUrl { url: String, reason: String },
    #[error("database file `{}` is read-only ({detail}); the sqlite backends write to it and to `-wal` and `-shm` files beside it, so the file and its directory must be writable", path.display())]
    ReadOnly { path: PathBuf, detail: String },
    #[error("`{}` is not a SQLite database ({detail}): it is damaged or another kind of file; point the sqlite path at a new file, or restore this one from a backup", path.display())]
    NotADatabase { path: PathBuf, detail: String },
    #[error("database file `{}` is corrupt ({detail}) while trying to {operation}; restore it from a backup, or salvage it with `sqlite3 {} .recover`", path.display(), path.display())]
    Corrupt {
        path: PathBuf,
        operation: String,
        detail: String,
    },
    #[error("cannot open database file `{}`: {detail}", path.display())]
    Open { path: PathBuf, detail: String },
    #[error("database `{}` stayed busy after {attempts} attempts to {operation}, each waiting up to the busy timeout: {detail}", path.display())]
    Busy {
        path: PathBuf,
        operation: String,
        attempts: u32,
        detail: String,
    },
    #[error("cannot {operation} in database `{}`: {detail}", path.display())]
    Driver {
        path: PathBuf,
        operation: String,
        detail: String,
        retryable: bool,
    },
    #[error("cannot bring database `{}` to schema version {target}: {detail}", path.display())]
    Migrate {
        path: PathBuf,
        target: i64,
        detail: String,
    },
    #[error("database `{}` has schema version {found}, newer than this build's {known}: it was written by a newer flatmachines; use that version (or a new database file)", path.display())]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
}

impl From<SqliteError> for Error {
    fn from(error: SqliteError) -> Self {
        let retryable = match &error {
            SqliteError::Busy { .. } => true,
            SqliteError::Driver { retryable, .. } => *retryable,
            _ => false,
        };
        if retryable {
            Error::transient("sqlite", error)
        } else {
            Error::backend("sqlite", error)
        }
    }
}

/// SQLite's primary result code of a driver error, if it came from SQLite.
pub(crate) fn primary_code(error: &sqlx::Error) -> Option<i32> {
    let sqlx::Error::Database(database) = error else {
        return None;
    };
    let extended: i32 = database.code()?.parse().ok()?;
    Some(extended & 0xff)
}

/// Whether waiting and trying again can get past `error` (another connection holds the lock).
pub(crate) fn is_busy(error: &sqlx::Error) -> bool {
    matches!(primary_code(error), Some(code::BUSY | code::LOCKED))
}

/// The driver's message without sqlx's `error returned from database:` framing.
pub(crate) fn detail(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database) => database.message().to_owned(),
        other => other.to_string(),
    }
}

/// Maps a driver error of `operation` on the database at `path` to the crate's error, telling
/// read-only, corrupt and foreign files apart from other failures.
pub(crate) fn classify(
    path: &Path,
    operation: impl Into<String>,
    error: &sqlx::Error,
) -> SqliteError {
    let path = path.to_owned();
    let operation = operation.into();
    let detail = detail(error);
    match primary_code(error) {
        Some(code::READONLY) => SqliteError::ReadOnly { path, detail },
        Some(code::CORRUPT) => SqliteError::Corrupt {
            path,
            operation,
            detail,
        },
        Some(code::NOTADB) => SqliteError::NotADatabase { path, detail },
        _ => {
            let retryable = is_busy(error)
                || matches!(
                    error,
                    sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed
                );
            SqliteError::Driver {
                path,
                operation,
                detail,
                retryable,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_what_to_do() {
        let path = Path::new("/data/fm.sqlite");
        let read_only: Error = SqliteError::ReadOnly {
            path: path.to_owned(),
            detail: "attempt to write a readonly database".into(),
        }
        .into();
        let text = read_only.to_string();
        assert!(
            text.contains("/data/fm.sqlite") && text.contains("writable"),
            "{text}"
        );
        assert!(!read_only.is_retryable());
        let busy: Error = SqliteError::Busy {
            path: path.to_owned(),
            operation: "claim from pool `jobs`".into(),
            attempts: 5,
            detail: "database is locked".into(),
        }
        .into();
        assert!(busy.is_retryable());
        assert!(busy.to_string().contains("claim from pool `jobs`"));
    }

    #[test]
    fn non_database_errors_have_no_code() {
        assert_eq!(primary_code(&sqlx::Error::PoolTimedOut), None);
        assert!(!is_busy(&sqlx::Error::RowNotFound));
        let classified = classify(Path::new("x"), "load `k`", &sqlx::Error::PoolTimedOut);
        assert!(matches!(
            classified,
            SqliteError::Driver {
                retryable: true,
                ..
            }
        ));
    }
}
