//! Checkpoint storage: a byte-valued key/value store.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Error, Result};

/// Storage for checkpoints, as a key/value store of bytes.
///
/// Keys look like `{execution_id}/step_{step:06}_{event}.json`, plus one pointer per execution
/// at `{execution_id}/latest` whose value is the newest snapshot's key as UTF-8 text.
///
/// # Contract
///
/// 1. `save` is atomic: a concurrent or later `load` sees either the old value or the new one,
///    never a mix, even if the process dies mid-write.
/// 2. `save` overwrites an existing key.
/// 3. `load` of a missing key is `Ok(None)`.
/// 4. `delete` of a missing key succeeds.
/// 5. `list(prefix)` returns every stored key starting with `prefix`, sorted lexicographically
///    (byte order), and no other key.
/// 6. Values are arbitrary bytes, not only UTF-8, and come back unchanged.
/// 7. Keys accepted by [`validate_key`] are stored as given; keys it rejects fail with
///    [`Error::InvalidKey`] and touch nothing. A `list` prefix is checked with
///    [`validate_prefix`] (it may be empty, or end with `/`). Keys are paths: a backend may
///    refuse to hold both `a` and `a/b` (the runtime's keys never do that).
/// 8. `save_many` saves each entry as `save` would, in order: whenever an entry can be seen
///    (even after a crash), every entry before it can be seen too, complete. A checkpoint uses
///    it to write a snapshot and then the pointer to it.
#[async_trait]
pub trait PersistenceBackend: Send + Sync + Debug {
    /// Stores `value` under `key`, replacing any previous value.
    async fn save(&self, key: &str, value: Bytes) -> Result<()>;

    /// Stores several entries in order (see clause 8). The default saves them one by one;
    /// backends override it to share work between them (one directory sync, one round trip).
    async fn save_many(&self, entries: &[(&str, Bytes)]) -> Result<()> {
        for (key, value) in entries {
            self.save(key, value.clone()).await?;
        }
        Ok(())
    }
    /// The value stored under `key`, if any.
    async fn load(&self, key: &str) -> Result<Option<Bytes>>;
    /// Removes `key`. Succeeds when it does not exist.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Every key starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
}

/// Longest key a backend must accept, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Longest `/`-separated segment of a key, in bytes (a file name on most file systems).
pub const MAX_SEGMENT_LEN: usize = 255;

/// Checks a storage key against the rules every backend enforces: not empty, at most
/// [`MAX_KEY_LEN`] bytes, no `..`, no leading `/`, no NUL or other control characters, and
/// `/`-separated segments that are not empty, do not start with `.` (backends keep their own
/// files under such names) and are at most [`MAX_SEGMENT_LEN`] bytes.
pub fn validate_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        "keys may not be empty"
    } else if key.len() > MAX_KEY_LEN {
        "keys may not be longer than 1024 bytes"
    } else if key.contains("..") {
        "keys may not contain `..`"
    } else if key.starts_with('/') {
        "keys may not start with `/`"
    } else if key.chars().any(char::is_control) {
        "keys may not contain control characters"
    } else if key.split('/').any(str::is_empty) {
        "keys may not have empty segments (`a//b`, a trailing `/`)"
    } else if key.split('/').any(|segment| segment.starts_with('.')) {
        "key segments may not start with `.`"
    } else if key
        .split('/')
        .any(|segment| segment.len() > MAX_SEGMENT_LEN)
    {
        "key segments may not be longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey {
        key: key.escape_debug().to_string(),
        reason,
    })
}

/// Checks a `list` prefix: empty (every key), or the start of a valid key, which may end with
/// `/` (`"exec-1/"`, `"exec-1/step_0000"`).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    match prefix.strip_suffix('/').unwrap_or(prefix) {
        "" if prefix.is_empty() => Ok(()),
        trimmed => validate_key(trimmed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "abc/step_000001_execute.json",
            "abc/latest",
            "a b/ü/ключ",
            "x.y/z",
        ] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn rejects_traversal_and_absolute_keys() {
        for key in [
            "",
            "../x",
            "a/../b",
            "/etc/passwd",
            "a\0b",
            "a\nb",
            "a//b",
            "a/",
            ".hidden",
            "a/.tmp",
        ] {
            assert!(
                matches!(validate_key(key), Err(Error::InvalidKey { .. })),
                "{key:?}"
            );
        }
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(validate_key(&"k".repeat(MAX_SEGMENT_LEN + 1)).is_err());
        assert!(validate_key(&vec!["k".repeat(MAX_SEGMENT_LEN); 4].join("/")).is_ok());
    }

    #[test]
    fn prefixes_may_be_empty_or_end_with_a_slash() {
        for prefix in ["", "exec-1/", "exec-1/step_0000", "e"] {
            assert!(validate_prefix(prefix).is_ok(), "{prefix:?}");
        }
        for prefix in ["/", "../", "a//", "/etc/"] {
            assert!(validate_prefix(prefix).is_err(), "{prefix:?}");
        }
    }
}
