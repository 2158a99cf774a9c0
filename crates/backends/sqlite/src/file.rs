//! Checks of the database file before SQLite opens it, so that unusable files fail at once
//! with an error naming them.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::SqliteError;

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// `path` resolved against the working directory.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, SqliteError> {
    std::path::absolute(path).map_err(|e| SqliteError::Open {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// Refuses what SQLite would open but the backends cannot use, naming the path, and creates
/// the parent directories of a new file.
pub(crate) fn check_file(path: &Path) -> Result<(), SqliteError> {
    let open_error = |detail: String| SqliteError::Open {
        path: path.to_owned(),
        detail,
    };
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(open_error("it is a directory".to_owned())),
        Ok(_) => {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                        SqliteError::ReadOnly {
                            path: path.to_owned(),
                            detail: e.to_string(),
                        }
                    }
                    _ => open_error(e.to_string()),
                })?;
            let mut header = Vec::with_capacity(SQLITE_HEADER.len());
            file.by_ref()
                .take(SQLITE_HEADER.len() as u64)
                .read_to_end(&mut header)
                .map_err(|e| open_error(e.to_string()))?;
            // SQLite treats an empty file as a new database.
            if !header.is_empty() && header != SQLITE_HEADER {
                return Err(SqliteError::NotADatabase {
                    path: path.to_owned(),
                    detail: "the file does not start with the SQLite header".to_owned(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                fs::create_dir_all(parent).map_err(|e| {
                    open_error(format!(
                        "cannot create its directory `{}`: {e}",
                        parent.display()
                    ))
                })
            }
            _ => Ok(()),
        },
        Err(e) => Err(open_error(e.to_string())),
    }
}
