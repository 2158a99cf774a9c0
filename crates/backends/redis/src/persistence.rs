//! Checkpoint storage as Redis strings.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use flatmachines_core::{Error, PersistenceBackend, Result, validate_key, validate_prefix};

use crate::RedisClient;

/// The largest value Redis stores in one string (its `proto-max-bulk-len` default).
pub const MAX_VALUE_BYTES: usize = 512 * 1024 * 1024;

/// A [`PersistenceBackend`] keeping each key as one Redis string at `{namespace}:cp:{key}`.
///
/// - `save` is one `SET`, atomic on the server; `save_many` is one `MULTI`/`EXEC`
///   transaction, so a snapshot and the pointer to it land together or not at all.
/// - `list(prefix)` walks the namespace with `SCAN … MATCH` (never `KEYS`, which would block
///   the server), escaping glob characters of the prefix, and sorts what it finds. It costs
///   one pass over the database's keyspace, so keep checkpoints in a database of their own
///   if it holds millions of other keys.
/// - Values up to [`MAX_VALUE_BYTES`] are stored; larger ones fail with
///   [`Error::TooLarge`] before anything is sent.
/// - Durability is the server's: with the default snapshotting a crash of Redis itself can
///   lose the last writes; configure `appendonly yes` (and `appendfsync`) where that matters.
///
/// `Clone` shares the connection.
#[derive(Clone)]
pub struct RedisBackend {
    client: RedisClient,
}

impl RedisBackend {
    /// Checkpoints in `client`'s namespace.
    pub fn new(client: RedisClient) -> Self {
        RedisBackend { client }
    }

    /// The client it uses.
    pub fn client(&self) -> &RedisClient {
        &self.client
    }

    fn key(&self, key: &str) -> String {
        self.client.key("cp", key)
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("client", &self.client)
            .finish()
    }
}

fn check_size(key: &str, value: &Bytes) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::TooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
            backend: "redis",
        });
    }
    Ok(())
}

/// `text` with Redis glob characters escaped, for a SCAN pattern.
pub(crate) fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[async_trait]
impl PersistenceBackend for RedisBackend {
    async fn save(&self, key: &str, value: Bytes) -> Result<()> {
        validate_key(key)?;
        check_size(key, &value)?;
        let stored = self.key(key);
        self.client
            .run("save", key, |mut conn| {
                let (stored, value) = (&stored, &value);
                async move {
                    redis::cmd("SET")
                        .arg(stored)
                        .arg(value.as_ref())
                        .query_async::<()>(&mut conn)
                        .await
                }
            })
            .await
    }

    async fn save_many(&self, entries: &[(&str, Bytes)]) -> Result<()> {
        for (key, value) in entries {
            validate_key(key)?;
            check_size(key, value)?;
        }
        let Some((first, _)) = entries.first() else {
            return Ok(());
        };
        let mut transaction = redis::pipe();
        transaction.atomic();
        for (key, value) in entries {
            transaction.set(self.key(key), value.as_ref()).ignore();
        }
        self.client
            .run("save", first, |mut conn| {
                let transaction = &transaction;
                async move { transaction.query_async::<()>(&mut conn).await }
            })
            .await
    }

    async fn load(&self, key: &str) -> Result<Option<Bytes>> {
        validate_key(key)?;
        let stored = self.key(key);
        let value: Option<Vec<u8>> = self
            .client
            .run("load", key, |mut conn| {
                let stored = &stored;
                async move { redis::cmd("GET").arg(stored).query_async(&mut conn).await }
            })
            .await?;
        Ok(value.map(Bytes::from))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let stored = self.key(key);
        self.client
            .run("delete", key, |mut conn| {
                let stored = &stored;
                async move {
                    redis::cmd("DEL")
                        .arg(stored)
                        .query_async::<()>(&mut conn)
                        .await
                }
            })
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        let root = self.key("");
        let pattern = format!("{}{}*", escape_glob(&root), escape_glob(prefix));
        let mut keys: Vec<String> = self
            .client
            .scan(&pattern, "list checkpoints")
            .await?
            .into_iter()
            .filter_map(|stored| stored.strip_prefix(&root).map(str::to_owned))
            .filter(|key| key.starts_with(prefix))
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("a*b?[c]\\^"), "a\\*b\\?\\[c\\]\\\\\\^");
        assert_eq!(escape_glob("{ns}:cp:exec/"), "{ns}:cp:exec/");
    }
}
