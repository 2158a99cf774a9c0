//! Checkpoint storage: one row per key in `{schema}.checkpoints`.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use flatmachines_core::{Error, PersistenceBackend, Result, validate_key, validate_prefix};

use crate::error::BACKEND;
use crate::store::{PostgresStore, with_client};

/// Largest value [`PostgresBackend`] stores, in bytes (256 MiB; PostgreSQL's own limit for a
/// `bytea` is 1 GiB).
pub const MAX_VALUE_BYTES: usize = 256 * 1024 * 1024;

/// A [`PersistenceBackend`] on a `{schema}.checkpoints` table.
///
/// A key `{execution_id}/{rest}` is the row `(execution_id, "/{rest}")`, primary key
/// `(execution_id, path)` in the `"C"` collation, so one execution's keys sit together in the
/// index and `list` of a prefix is a range scan of it. Values are `bytea`: the contract wants
/// arbitrary bytes back unchanged, which `jsonb` (it re-orders keys and drops whitespace) and
/// `json`/`text` (UTF-8 only) cannot promise.
///
/// - `save` is one `INSERT … ON CONFLICT DO UPDATE`: atomic, and safe to repeat, so a
///   statement whose connection dropped runs again on another.
/// - `save_many` writes every entry in one statement: all of them become visible at the same
///   commit, which keeps the order clause (a later entry is never seen without the earlier).
/// - `list` returns keys in byte order, as the contract asks.
///
/// Values over [`MAX_VALUE_BYTES`] fail with [`Error::TooLarge`] and store nothing.
#[derive(Clone)]
pub struct PostgresBackend {
    store: PostgresStore,
    sql: Sql,
}

#[derive(Clone)]
struct Sql {
    table: String,
    save: String,
    save_many: String,
    load: String,
    delete: String,
    list_all: String,
    list_executions: String,
    list_executions_from: String,
    list_paths: String,
}

impl PostgresBackend {
    pub(crate) fn new(store: PostgresStore) -> Self {
        let table = store.table("checkpoints");
        let columns = "execution_id, path";
        let sql = Sql {
            save: format!(
                "INSERT INTO {table} ({columns}, value) VALUES ($1, $2, $3)
                 ON CONFLICT ({columns}) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
            ),
            save_many: format!(
                "INSERT INTO {table} ({columns}, value)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
                 ON CONFLICT ({columns}) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
            ),
            load: format!("SELECT value FROM {table} WHERE execution_id = $1 AND path = $2"),
            delete: format!("DELETE FROM {table} WHERE execution_id = $1 AND path = $2"),
            list_all: format!("SELECT {columns} FROM {table}"),
            list_executions: format!(
                "SELECT {columns} FROM {table} WHERE execution_id >= $1 AND execution_id < $2"
            ),
            list_executions_from: format!("SELECT {columns} FROM {table} WHERE execution_id >= $1"),
            list_paths: format!(
                "SELECT {columns} FROM {table}
                 WHERE execution_id = $1 AND path >= $2 AND path < $3"
            ),
            table,
        };
        PostgresBackend { store, sql }
    }

    /// The store this backend writes to.
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }

    fn check_size(key: &str, value: &Bytes) -> Result<()> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::TooLarge {
                key: key.to_owned(),
                size: value.len(),
                limit: MAX_VALUE_BYTES,
                backend: BACKEND,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("table", &self.sql.table)
            .field("server", &self.store.config().redacted_url())
            .finish()
    }
}

/// `exec/step_1.json` → (`exec`, `/step_1.json`); `exec` → (`exec`, ``).
pub(crate) fn split_key(key: &str) -> (&str, &str) {
    match key.find('/') {
        Some(at) => key.split_at(at),
        None => (key, ""),
    }
}

/// The least string greater than every string starting with `prefix`, in byte order (which
/// is code point order for UTF-8): `prefix` with its last character incremented, dropping
/// trailing U+10FFFF. `None` when every character is U+10FFFF, so nothing is greater.
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            code => char::from_u32(code),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[async_trait]
impl PersistenceBackend for PostgresBackend {
    async fn save(&self, key: &str, value: Bytes) -> Result<()> {
        validate_key(key)?;
        Self::check_size(key, &value)?;
        let (execution_id, path) = split_key(key);
        let what = format!("saving `{key}` in {}", self.sql.table);
        with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.save).await?;
            client
                .execute(&statement, &[&execution_id, &path, &value.as_ref()])
                .await
                .map(drop)
        })
    }

    async fn save_many(&self, entries: &[(&str, Bytes)]) -> Result<()> {
        for (key, value) in entries {
            validate_key(key)?;
            Self::check_size(key, value)?;
        }
        // One statement may not write a row twice: the last entry of a key is the one that
        // counts, and all of them become visible together.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (index, (key, _)) in entries.iter().enumerate() {
            last.insert(key, index);
        }
        let mut execution_ids = Vec::with_capacity(last.len());
        let mut paths = Vec::with_capacity(last.len());
        let mut values: Vec<&[u8]> = Vec::with_capacity(last.len());
        for (index, (key, value)) in entries.iter().enumerate() {
            if last.get(key) == Some(&index) {
                let (execution_id, path) = split_key(key);
                execution_ids.push(execution_id);
                paths.push(path);
                values.push(value.as_ref());
            }
        }
        if values.is_empty() {
            return Ok(());
        }
        let what = format!(
            "saving {} keys (`{}`, …) in {}",
            values.len(),
            entries[0].0,
            self.sql.table
        );
        with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.save_many).await?;
            client
                .execute(&statement, &[&execution_ids, &paths, &values])
                .await
                .map(drop)
        })
    }

    async fn load(&self, key: &str) -> Result<Option<Bytes>> {
        validate_key(key)?;
        let (execution_id, path) = split_key(key);
        let what = format!("loading `{key}` from {}", self.sql.table);
        let row = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.load).await?;
            client.query_opt(&statement, &[&execution_id, &path]).await
        })?;
        Ok(row.map(|row| Bytes::from(row.get::<_, Vec<u8>>(0))))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let (execution_id, path) = split_key(key);
        let what = format!("deleting `{key}` from {}", self.sql.table);
        with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.delete).await?;
            client
                .execute(&statement, &[&execution_id, &path])
                .await
                .map(drop)
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        let what = format!("listing keys under `{prefix}` in {}", self.sql.table);
        let (execution_id, path) = split_key(prefix);
        let rows = with_client!(self.store, what, |client| {
            if prefix.is_empty() {
                let statement = client.prepare_cached(&self.sql.list_all).await?;
                return client.query(&statement, &[]).await;
            }
            if !path.is_empty() {
                // `/` sorts below U+10FFFF, so a path prefix always has an upper bound.
                let upper = prefix_upper_bound(path).unwrap_or_default();
                let statement = client.prepare_cached(&self.sql.list_paths).await?;
                return client
                    .query(&statement, &[&execution_id, &path, &upper])
                    .await;
            }
            match prefix_upper_bound(prefix) {
                Some(upper) => {
                    let statement = client.prepare_cached(&self.sql.list_executions).await?;
                    client.query(&statement, &[&prefix, &upper]).await
                }
                None => {
                    let statement = client
                        .prepare_cached(&self.sql.list_executions_from)
                        .await?;
                    client.query(&statement, &[&prefix]).await
                }
            }
        })?;
        let mut keys: Vec<String> = rows
            .iter()
            .map(|row| {
                let mut key: String = row.get(0);
                key.push_str(row.get::<_, &str>(1));
                key
            })
            .collect();
        // Row order follows (execution_id, path), which differs from key order when one
        // execution id is a prefix of another (`a/x` sorts after `a-b/y`).
        keys.sort_unstable();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_their_first_slash() {
        assert_eq!(split_key("exec/step_1.json"), ("exec", "/step_1.json"));
        assert_eq!(split_key("exec/a/b"), ("exec", "/a/b"));
        assert_eq!(split_key("exec"), ("exec", ""));
        assert_eq!(split_key("exec/"), ("exec", "/"));
    }

    #[test]
    fn upper_bounds_close_every_prefix_range() {
        assert_eq!(prefix_upper_bound("abc").as_deref(), Some("abd"));
        assert_eq!(prefix_upper_bound("/").as_deref(), Some("0"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
    }
}
