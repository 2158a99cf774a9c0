//! Checkpoint storage as one file per key under a directory.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use flatmachines_core::{Error, PersistenceBackend, Result, validate_key, validate_prefix};

use crate::error::{LocalError, blocking};
use crate::files;
use crate::order::KeyOrder;

/// A [`PersistenceBackend`] storing each key as a file under one directory.
///
/// The layout is the reference runtime's: key `abc/step_000001_execute.json` is the file
/// `{dir}/abc/step_000001_execute.json`, and key `abc/latest` is `{dir}/abc/latest`, holding
/// exactly the saved bytes. Directories are created as keys need them and removed by `delete`
/// once empty.
///
/// # Writes
///
/// A save writes the value to a temporary file beside the final one (`.{name}.{pid}.{n}.tmp`),
/// flushes it to disk, renames it over the final name and then flushes the directory. The
/// rename is the only change to the final name, so a reader — or a run after a crash — sees
/// the old value or the new one, never a mix, and a failed save leaves the old value intact.
/// With [`durable(false)`](Self::durable) the two flushes are skipped: saves stay atomic
/// (including when the process dies mid-write), but a power loss or kernel crash may lose
/// recent saves, or leave a newly created key empty.
///
/// [`save_many`](PersistenceBackend::save_many) renames its entries in order and flushes each
/// directory once, after the last rename. On journaling filesystems (ext4, XFS) entries in one
/// directory then become visible in order even across a crash; the checkpoint pair (the
/// snapshot, then `latest`) lives in one directory.
///
/// # Keys
///
/// Keys pass [`validate_key`], which refuses empty segments (`a//b`, a trailing `/`) and
/// segments starting with `.`: this backend keeps its temporary files (and lock directories
/// such as `.locks`) under such names, and `list` skips them, as it skips names that are not
/// UTF-8. A key cannot be both a value and a directory
/// of other keys (`a` and `a/b`): loading, saving or deleting `a` while `a/b` exists fails
/// with an error naming the path. A segment longer than the filesystem's name limit (255 bytes
/// on most) fails with an I/O error.
///
/// `list(prefix)` reads only the directory the prefix's `/`-separated part names, and below it
/// only the entries the rest of the prefix can match; it does not follow symbolic links into
/// directories.
///
/// # Concurrency
///
/// All filesystem work runs on Tokio's blocking pool. Concurrent saves of one key, from tasks
/// or processes, never share a temporary file; the last rename wins. A relative directory is
/// resolved against the working directory at each call, as in the reference runtime.
///
/// Calls on one key through one backend (and its clones) take effect in the order they were
/// made, even when a caller stops waiting for one: dropping the future of a `save` or
/// `delete` does not stop its filesystem work, so the next call on that key waits until that
/// work is done, and a `list` waits for every call started before it. Without this, a
/// checkpoint write abandoned by a cancelled run could land in the middle of a later run's
/// `replace` (its `list` missing the pointer, its `delete` removing the snapshot), leaving a
/// pointer to a snapshot that no longer exists.
///
/// `Clone` is cheap (a path, a flag and a shared lock table): clones write the same files, in
/// the same order.
#[derive(Debug, Clone)]
pub struct LocalFileBackend {
    dir: PathBuf,
    durable: bool,
    order: KeyOrder,
}

impl LocalFileBackend {
    /// The reference runtime's default directory, relative to the working directory.
    pub const DEFAULT_DIR: &'static str = ".checkpoints";

    /// Stores checkpoints under `dir`, creating it (and its parents) if missing.
    ///
    /// Fails if `dir` cannot be created or is not a directory.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        files::ensure_dir(&dir, "create checkpoint directory")?;
        Ok(LocalFileBackend {
            dir,
            durable: true,
            order: KeyOrder::default(),
        })
    }

    /// Reads checkpoints under an existing `dir`, creating nothing: for tools that only look
    /// (`flatmachines checkpoints list`), which should work without write access and must not
    /// leave an empty store behind a mistyped path.
    ///
    /// Fails if `dir` does not exist or is not a directory.
    pub fn open_existing(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => Ok(LocalFileBackend {
                dir,
                durable: true,
                order: KeyOrder::default(),
            }),
            Ok(_) => Err(LocalError::new(
                "open checkpoint directory",
                &dir,
                std::io::ErrorKind::NotADirectory.into(),
            )
            .into()),
            Err(err) => Err(LocalError::new("open checkpoint directory", &dir, err).into()),
        }
    }

    /// Removes the temporary files (`.{name}.{pid}.{n}.tmp`) that saves cut short by a crash
    /// or a kill left behind, if they were last written more than `older_than` ago, and
    /// returns their paths. With `dry_run`, only returns them.
    ///
    /// A save holds its temporary file for milliseconds, so an age of minutes is safe even
    /// while other processes write to the store; a younger one may belong to a live save and
    /// is left alone. Directories named with a leading `.` (lock directories) are not entered.
    pub fn remove_stale_temporaries(
        &self,
        older_than: std::time::Duration,
        dry_run: bool,
    ) -> Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        let now = std::time::SystemTime::now();
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    return Err(LocalError::new("read checkpoint directory", &dir, err).into());
                }
            };
            for entry in entries {
                let entry =
                    entry.map_err(|err| LocalError::new("read checkpoint directory", &dir, err))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    if !name.starts_with('.') {
                        pending.push(entry.path());
                    }
                    continue;
                }
                if !(kind.is_file() && name.starts_with('.') && name.ends_with(".tmp")) {
                    continue;
                }
                let stale = entry
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .ok()
                    .and_then(|modified| now.duration_since(modified).ok())
                    .is_some_and(|age| age >= older_than);
                if !stale {
                    continue;
                }
                let path = entry.path();
                if !dry_run {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        // Another cleaner got there first.
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(err) => {
                            return Err(LocalError::new("remove temporary file", &path, err).into());
                        }
                    }
                }
                found.push(path);
            }
        }
        found.sort();
        Ok(found)
    }

    /// Whether saves and deletes flush to disk (`fsync`) before returning; `true` by default.
    ///
    /// With `false`, saves are still atomic (temporary file, then rename) but not durable
    /// across power loss: the last saves before a power loss may be missing after it.
    #[must_use]
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// The directory holding the checkpoint files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, key: &str) -> PathBuf {
        // Checked keys have no leading `/`, `.` or `..` segments, so the join stays in `dir`.
        self.dir.join(key)
    }
}

#[async_trait]
impl PersistenceBackend for LocalFileBackend {
    async fn save(&self, key: &str, value: Bytes) -> Result<()> {
        check_key(key)?;
        let held = self.order.hold([key]).await;
        let (dir, durable, key) = (self.dir.clone(), self.durable, key.to_owned());
        blocking(move || {
            let _held = held;
            files::write_all(&dir, &[(key.as_str(), value)], durable)
        })
        .await
    }

    async fn save_many(&self, entries: &[(&str, Bytes)]) -> Result<()> {
        // Every key is checked before anything is written, so a bad key touches nothing.
        for (key, _) in entries {
            check_key(key)?;
        }
        if entries.is_empty() {
            return Ok(());
        }
        let owned: Vec<(String, Bytes)> = entries
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        let held = self.order.hold(entries.iter().map(|(key, _)| *key)).await;
        let (dir, durable) = (self.dir.clone(), self.durable);
        blocking(move || {
            let _held = held;
            let borrowed: Vec<(&str, Bytes)> = owned
                .iter()
                .map(|(key, value)| (key.as_str(), value.clone()))
                .collect();
            files::write_all(&dir, &borrowed, durable)
        })
        .await
    }

    async fn load(&self, key: &str) -> Result<Option<Bytes>> {
        check_key(key)?;
        let held = self.order.hold([key]).await;
        let path = self.path_of(key);
        blocking(move || {
            let _held = held;
            files::read(&path)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let held = self.order.hold([key]).await;
        let (dir, durable, key) = (self.dir.clone(), self.durable, key.to_owned());
        blocking(move || {
            let _held = held;
            files::delete(&dir, &key, durable)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        check_prefix(prefix)?;
        let held = self.order.hold_all().await;
        let (dir, prefix) = (self.dir.clone(), prefix.to_owned());
        blocking(move || {
            let _held = held;
            files::walk(&dir, &prefix).map(|walk| walk.keys)
        })
        .await
    }
}

/// Checks a key with [`validate_key`] (which also refuses the empty and `.`-led segments this
/// backend keeps for its own files).
pub(crate) fn check_key(key: &str) -> Result<()> {
    validate_key(key)
}

/// Checks a `list` prefix with [`validate_prefix`].
fn check_prefix(prefix: &str) -> Result<()> {
    validate_prefix(prefix)
}

/// Whether `key` names a file a save could have written; `list` returns only such names.
pub(crate) fn is_storable(key: &str) -> bool {
    check_key(key).is_ok()
}

pub(crate) fn invalid(key: &str, reason: &'static str) -> Error {
    Error::InvalidKey {
        key: key.escape_debug().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = LocalFileBackend::new(tmp.path()).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let write = |path: &str, aged: bool| {
            let path = tmp.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let file = fs::File::create(&path).unwrap();
            if aged {
                file.set_modified(old).unwrap();
            }
            path
        };
        let stale = write("exec/.latest.999.0.tmp", true);
        let fresh = write("exec/.latest.999.1.tmp", false);
        let key = write("exec/latest", true);
        let lock = write(".locks/.held.1.0.tmp", true);
        let minute = std::time::Duration::from_secs(60);
        assert_eq!(
            backend.remove_stale_temporaries(minute, true).unwrap(),
            std::slice::from_ref(&stale)
        );
        assert!(stale.exists(), "a dry run removes nothing");
        assert_eq!(
            backend.remove_stale_temporaries(minute, false).unwrap(),
            std::slice::from_ref(&stale)
        );
        assert!(!stale.exists());
        assert!(fresh.exists() && key.exists() && lock.exists());
    }

    #[test]
    fn open_existing_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let error = LocalFileBackend::open_existing(&missing).unwrap_err();
        assert!(
            error.to_string().contains("open checkpoint directory"),
            "{error}"
        );
        assert!(!missing.exists());
        assert!(LocalFileBackend::open_existing(tmp.path()).is_ok());
    }

    #[test]
    fn segment_rules_apply_to_keys_and_prefixes() {
        for key in ["a", "a/b", "x.y", "a b/ü", "a./b"] {
            assert!(check_key(key).is_ok(), "{key}");
        }
        for key in ["a//b", "a/", ".hidden", "a/.tmp", "..", "/a", ""] {
            assert!(
                matches!(check_key(key), Err(Error::InvalidKey { .. })),
                "{key}"
            );
        }
        for prefix in ["", "a", "a/", "a/b", "a/st"] {
            assert!(check_prefix(prefix).is_ok(), "{prefix}");
        }
        for prefix in ["a//", "/", ".locks/", "a/.t", "a//b"] {
            assert!(check_prefix(prefix).is_err(), "{prefix}");
        }
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = LocalFileBackend::new(&file).unwrap_err().to_string();
        assert!(err.contains(&*file.to_string_lossy()), "{err}");
    }
}
