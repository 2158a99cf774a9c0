//! The blocking filesystem work behind [`LocalFileBackend`](crate::LocalFileBackend).

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::error::LocalError;
use crate::persistence::is_storable;

/// How often a save recreates its directory after a concurrent `delete` removed it (while it
/// looked empty) before the save gives up.
const CREATE_ATTEMPTS: usize = 4;

/// Longest part of the final file name kept in a temporary name, so that the temporary name
/// stays under the usual 255-byte limit whenever the final name does.
const TEMP_NAME_STEM: usize = 200;

/// Makes temporary names unique within the process; the pid makes them unique across processes.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Creates `dir` with its parents if missing, and checks that it is a directory.
pub(crate) fn ensure_dir(dir: &Path, operation: &'static str) -> Result<(), LocalError> {
    fs::create_dir_all(dir).map_err(|err| LocalError::new(operation, dir, err))?;
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(LocalError::new(
            operation,
            dir,
            ErrorKind::NotADirectory.into(),
        )),
        Err(err) => Err(LocalError::new(operation, dir, err)),
    }
}

/// Saves each entry atomically, in order: every temporary file is written first, their data
/// syncs run side by side (the file system can commit them together), then the renames happen
/// in order, and each directory written is synced once.
pub(crate) fn write_all(
    root: &Path,
    entries: &[(&str, Bytes)],
    durable: bool,
) -> Result<(), LocalError> {
    let mut pending: Vec<Pending> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let path = root.join(key);
        let dir = parent_dir(&path).to_path_buf();
        let name = key.rsplit('/').next().unwrap_or(key);
        let temp = dir.join(temp_name(name));
        let mut file = match create_temp(&dir, &temp, &path, durable) {
            Ok(file) => file,
            Err(err) => {
                discard(&pending);
                return Err(err);
            }
        };
        let written = file.write_all(value);
        pending.push(Pending {
            temp,
            path,
            dir,
            file: Some(file),
        });
        if let Err(err) = written {
            discard(&pending);
            let path = pending.last().map(|p| p.path.clone()).unwrap_or_default();
            return Err(LocalError::new("write checkpoint file", &path, err));
        }
    }
    if durable {
        // The data must be on disk before a rename can be, or a crash could expose an empty or
        // partial file under the final name.
        if let Err(err) = sync_all_data(&mut pending) {
            discard(&pending);
            return Err(err);
        }
    }
    for entry in &mut pending {
        entry.file = None;
    }
    let mut written: Vec<&Path> = Vec::new();
    for (index, entry) in pending.iter().enumerate() {
        if let Err(err) = fs::rename(&entry.temp, &entry.path) {
            discard(&pending[index..]);
            return Err(LocalError::new("write checkpoint file", &entry.path, err));
        }
        if durable && !written.contains(&entry.dir.as_path()) {
            written.push(&entry.dir);
        }
    }
    // One sync per directory commits every rename in it; the renames were issued in order.
    for dir in written {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A written temporary file waiting for its rename.
struct Pending {
    temp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    file: Option<File>,
}

/// Syncs the data of every pending file, concurrently when there are several.
fn sync_all_data(pending: &mut [Pending]) -> Result<(), LocalError> {
    let sync = |entry: &Pending| match &entry.file {
        Some(file) => file
            .sync_data()
            .map_err(|err| LocalError::new("write checkpoint file", &entry.path, err)),
        None => Ok(()),
    };
    match pending {
        [] => Ok(()),
        [only] => sync(only),
        [first, rest @ ..] => std::thread::scope(|scope| {
            let others: Vec<_> = rest
                .iter()
                .map(|entry| scope.spawn(move || sync(entry)))
                .collect();
            let mut result = sync(first);
            for other in others {
                let outcome = other.join().unwrap_or_else(|_| {
                    Err(LocalError::new(
                        "write checkpoint file",
                        &first.path,
                        io::Error::other("a sync thread panicked"),
                    ))
                });
                result = result.and(outcome);
            }
            result
        }),
    }
}

/// Removes the temporary files of a failed save (best effort: the first error is the one
/// worth reporting).
fn discard(pending: &[Pending]) {
    for entry in pending {
        let _ = fs::remove_file(&entry.temp);
    }
}

fn temp_name(name: &str) -> String {
    let mut end = name.len().min(TEMP_NAME_STEM);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    format!(".{}.{}.{n}.tmp", &name[..end], process::id())
}

/// Creates the temporary file, creating missing directories only when the first try shows
/// they are missing: the common save into an existing directory costs one `open`.
fn create_temp(dir: &Path, temp: &Path, path: &Path, durable: bool) -> Result<File, LocalError> {
    let mut attempts = 0;
    loop {
        let err = match OpenOptions::new().write(true).create_new(true).open(temp) {
            Ok(file) => return Ok(file),
            Err(err) => err,
        };
        attempts += 1;
        if err.kind() != ErrorKind::NotFound || attempts >= CREATE_ATTEMPTS {
            return Err(LocalError::new("write checkpoint file", path, err));
        }
        match create_dirs(dir, durable) {
            // A concurrent `delete` removed an ancestor while creating; the next round redoes it.
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            other => other?,
        }
    }
}

/// Creates `dir` and its missing ancestors, syncing the parent of each directory created so
/// that the new entries survive a crash.
fn create_dirs(dir: &Path, durable: bool) -> Result<(), LocalError> {
    const OPERATION: &str = "create checkpoint directory";
    let mut missing = Vec::new();
    let mut current = dir;
    loop {
        match fs::symlink_metadata(current) {
            Ok(_) => break,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                missing.push(current);
                match current.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => current = parent,
                    _ => break,
                }
            }
            Err(err) => return Err(LocalError::new(OPERATION, current, err)),
        }
    }
    for created in missing.into_iter().rev() {
        match fs::create_dir(created) {
            Ok(()) if durable => sync_dir(parent_dir(created))?,
            Ok(()) => {}
            // Another writer made it; if it is a file, creating the temporary file says so.
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(err) => return Err(LocalError::new(OPERATION, created, err)),
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), LocalError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|err| LocalError::new("sync checkpoint directory", dir, err))
}

/// The directory holding `path`; `.` for a bare relative name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Whether an error means the path, or a directory on it, does not exist.
fn is_missing(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

pub(crate) fn read(path: &Path) -> Result<Option<Bytes>, LocalError> {
    match fs::read(path) {
        Ok(value) => Ok(Some(Bytes::from(value))),
        Err(err) if is_missing(&err) => Ok(None),
        Err(err) => Err(LocalError::new("read checkpoint file", path, err)),
    }
}

/// Removes the file of `key`, then the directories that became empty, up to `root`.
pub(crate) fn delete(root: &Path, key: &str, durable: bool) -> Result<(), LocalError> {
    let path = root.join(key);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(err) if is_missing(&err) => return Ok(()),
        Err(err) => return Err(LocalError::new("delete checkpoint file", &path, err)),
    }
    let mut changed = parent_dir(&path).to_path_buf();
    for (end, _) in key.rmatch_indices('/') {
        let sub = root.join(&key[..end]);
        // Best effort: a directory still holding other keys, or a save's temporary file, stays.
        if fs::remove_dir(&sub).is_err() {
            break;
        }
        changed = parent_dir(&sub).to_path_buf();
    }
    if durable {
        sync_dir(&changed)?;
    }
    Ok(())
}

/// The keys found by [`walk`], and how many directories it read (what the walk cost).
#[derive(Debug)]
pub(crate) struct Walk {
    pub(crate) keys: Vec<String>,
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "only tests measure the walk's cost")
    )]
    pub(crate) dirs_read: usize,
}

/// Every stored key under `root` starting with `prefix`, sorted.
///
/// The walk starts at the directory named by the prefix's part up to its last `/`; there it
/// enters only entries starting with the rest of the prefix, and below them everything.
pub(crate) fn walk(root: &Path, prefix: &str) -> Result<Walk, LocalError> {
    const OPERATION: &str = "list checkpoint directory";
    let (base, partial) = match prefix.rfind('/') {
        Some(slash) => prefix.split_at(slash + 1),
        None => ("", prefix),
    };
    let mut keys = Vec::new();
    let mut dirs_read = 0;
    // Key prefixes of the directories still to read: `base`, then longer ones ending in `/`.
    let mut pending = vec![base.to_owned()];
    while let Some(dir_key) = pending.pop() {
        let dir = root.join(&dir_key);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Gone, or a file: it holds no keys (a concurrent delete may have just removed it).
            Err(err) if is_missing(&err) => continue,
            Err(err) => return Err(LocalError::new(OPERATION, &dir, err)),
        };
        dirs_read += 1;
        let at_base = dir_key.len() == base.len();
        for entry in entries {
            let entry = entry.map_err(|err| LocalError::new(OPERATION, &dir, err))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            if name.starts_with('.') || (at_base && !name.starts_with(partial)) {
                continue;
            }
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(err) if is_missing(&err) => continue,
                Err(err) => return Err(LocalError::new(OPERATION, &entry.path(), err)),
            };
            let key = format!("{dir_key}{name}");
            // `DirEntry::file_type` does not follow symbolic links, so links are never entered.
            if file_type.is_dir() {
                pending.push(key + "/");
            } else if is_storable(&key) {
                keys.push(key);
            }
        }
    }
    // `str` ordering is byte order, which the contract asks for.
    keys.sort_unstable();
    Ok(Walk { keys, dirs_read })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for file in files {
            let path = tmp.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, b"v").unwrap();
        }
        tmp
    }

    #[test]
    fn a_prefix_ending_in_a_slash_reads_only_that_directory() {
        let tmp = tree(&["exec-1/a", "exec-1/b", "exec-10/a", "exec-2/x/y", "z"]);
        let found = walk(tmp.path(), "exec-1/").unwrap();
        assert_eq!(found.keys, ["exec-1/a", "exec-1/b"]);
        assert_eq!(found.dirs_read, 1);
    }

    #[test]
    fn a_partial_last_segment_reads_its_directory_and_matching_subdirectories_only() {
        let tmp = tree(&[
            "exec-1/step_000001",
            "exec-1/step_000002",
            "exec-1/latest",
            "exec-1/sub/x",
        ]);
        let found = walk(tmp.path(), "exec-1/step_0000").unwrap();
        assert_eq!(found.keys, ["exec-1/step_000001", "exec-1/step_000002"]);
        assert_eq!(found.dirs_read, 1, "`sub` cannot match");

        let tmp = tree(&["ex/a", "exec/b/c", "other/d", "other/e/f", "ex.json"]);
        let found = walk(tmp.path(), "ex").unwrap();
        assert_eq!(found.keys, ["ex.json", "ex/a", "exec/b/c"]);
        assert_eq!(found.dirs_read, 4, "root, ex, exec, exec/b — not other");
    }

    #[test]
    fn a_missing_or_file_directory_lists_nothing() {
        let tmp = tree(&["file"]);
        for prefix in ["missing/", "missing/x", "file/", "file/x"] {
            let found = walk(tmp.path(), prefix).unwrap();
            assert!(found.keys.is_empty() && found.dirs_read == 0, "{prefix}");
        }
        assert!(walk(&tmp.path().join("gone"), "").unwrap().keys.is_empty());
    }

    #[test]
    fn temporary_names_keep_a_bounded_stem_and_are_unique() {
        let long = "é".repeat(150);
        let first = temp_name(&long);
        assert!(first.len() < 255, "{}", first.len());
        assert!(first.starts_with('.') && first.ends_with(".tmp"));
        assert_ne!(first, temp_name(&long));
    }
}
