//! Checkpoints as rows of one table.

use std::fmt::Write as _;

use async_trait::async_trait;
use bytes::Bytes;
use flatmachines_core::{Error, PersistenceBackend, Result, validate_key, validate_prefix};
use sqlx::Connection;

use crate::database::{SqliteDatabase, retrying};

/// The largest value stored, in bytes: SQLite's default limit on one value is 10⁹ bytes.
pub const MAX_VALUE_LEN: usize = 1_000_000_000;

/// Entries of a `save_many` written by one multi-row statement; larger batches are written
/// in slices of this size inside one transaction.
const ROWS_PER_STATEMENT: usize = 32;

/// A [`PersistenceBackend`] keeping each key as a row of the `checkpoints` table of a
/// [`SqliteDatabase`].
///
/// A save is one `INSERT … ON CONFLICT DO UPDATE` statement, atomic and committed when it
/// returns. [`save_many`](PersistenceBackend::save_many) writes all its entries in one
/// statement (one transaction for more than 32 entries), so they become visible together —
/// stronger than the contract's in-order visibility — and a checkpoint (snapshot and `latest`
/// pointer) costs one commit.
///
/// Keys pass [`validate_key`] and `list` prefixes [`validate_prefix`]. `list` is a range scan
/// of the primary key: keys compare by their UTF-8 bytes, which is the order it returns.
/// Values up to [`MAX_VALUE_LEN`] bytes are stored; a larger one fails with
/// [`Error::TooLarge`] and writes nothing.
///
/// `Clone` is cheap and shares the database's connections.
#[derive(Debug, Clone)]
pub struct SqlitePersistence {
    db: SqliteDatabase,
}

impl SqlitePersistence {
    pub(crate) fn new(db: SqliteDatabase) -> Self {
        SqlitePersistence { db }
    }

    /// The database holding the checkpoints.
    pub fn database(&self) -> &SqliteDatabase {
        &self.db
    }
}

fn check_entry(key: &str, value: &Bytes) -> Result<()> {
    validate_key(key)?;
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::TooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_LEN,
            backend: "sqlite",
        });
    }
    Ok(())
}

/// The upsert of `rows` entries, bound as `(key, value)` pairs in order. A later row of the
/// same key overwrites an earlier one, as consecutive saves would.
fn upsert_sql(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO checkpoints (key, value) VALUES ");
    for row in 0..rows {
        let separator = if row == 0 { "" } else { ", " };
        let _ = write!(sql, "{separator}(?{}, ?{})", 2 * row + 1, 2 * row + 2);
    }
    sql.push_str(" ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    sql
}

/// The smallest string greater than every string starting with `prefix`, if there is one:
/// the prefix with its last character stepped up (UTF-8 byte order is code-point order).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[async_trait]
impl PersistenceBackend for SqlitePersistence {
    async fn save(&self, key: &str, value: Bytes) -> Result<()> {
        check_entry(key, &value)?;
        retrying!(
            self.db,
            conn = writer,
            format!("save `{key}`"),
            sqlx::query(
                "INSERT INTO checkpoints (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(&value[..])
            .execute(&mut *conn)
            .await
        );
        Ok(())
    }

    async fn save_many(&self, entries: &[(&str, Bytes)]) -> Result<()> {
        // Every entry is checked before anything is written, so a bad one touches nothing.
        for (key, value) in entries {
            check_entry(key, value)?;
        }
        let [(first, value), ..] = entries else {
            return Ok(());
        };
        let what = || format!("save {} entries starting with `{first}`", entries.len());
        match entries.len() {
            1 => return self.save(first, value.clone()).await,
            n if n <= ROWS_PER_STATEMENT => {
                let sql = upsert_sql(n);
                retrying!(self.db, conn = writer, what(), {
                    let mut query = sqlx::query(&sql);
                    for (key, value) in entries {
                        query = query.bind(*key).bind(&value[..]);
                    }
                    query.execute(&mut *conn).await
                });
            }
            _ => {
                let full = upsert_sql(ROWS_PER_STATEMENT);
                retrying!(self.db, conn = writer, what(), {
                    async {
                        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                        for chunk in entries.chunks(ROWS_PER_STATEMENT) {
                            let partial;
                            let sql = if chunk.len() == ROWS_PER_STATEMENT {
                                &full
                            } else {
                                partial = upsert_sql(chunk.len());
                                &partial
                            };
                            let mut query = sqlx::query(sql);
                            for (key, value) in chunk {
                                query = query.bind(*key).bind(&value[..]);
                            }
                            query.execute(&mut *tx).await?;
                        }
                        tx.commit().await
                    }
                    .await
                });
            }
        }
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<Bytes>> {
        validate_key(key)?;
        let value: Option<Vec<u8>> = retrying!(
            self.db,
            conn = reader,
            format!("load `{key}`"),
            sqlx::query_scalar("SELECT value FROM checkpoints WHERE key = ?1")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
        );
        Ok(value.map(Bytes::from))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        retrying!(
            self.db,
            conn = writer,
            format!("delete `{key}`"),
            sqlx::query("DELETE FROM checkpoints WHERE key = ?1")
                .bind(key)
                .execute(&mut *conn)
                .await
        );
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        // Two statements, so that SQLite bounds the index range on both sides when it can.
        let upper = prefix_upper_bound(prefix);
        let keys: Vec<String> = retrying!(
            self.db,
            conn = reader,
            format!("list keys starting with `{prefix}`"),
            match &upper {
                Some(upper) => {
                    sqlx::query_scalar(
                        "SELECT key FROM checkpoints WHERE key >= ?1 AND key < ?2 ORDER BY key",
                    )
                    .bind(prefix)
                    .bind(upper)
                    .fetch_all(&mut *conn)
                    .await
                }
                None => {
                    sqlx::query_scalar("SELECT key FROM checkpoints WHERE key >= ?1 ORDER BY key")
                        .bind(prefix)
                        .fetch_all(&mut *conn)
                        .await
                }
            }
        );
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn upserts_number_their_parameters_in_pairs() {
        assert_eq!(
            upsert_sql(2),
            "INSERT INTO checkpoints (key, value) VALUES (?1, ?2), (?3, ?4) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        );
    }

    #[test]
    fn upper_bounds_step_the_last_character() {
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("exec-1/").as_deref(), Some("exec-10"));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(prefix_upper_bound("ab\u{10FFFF}").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
    }

    proptest! {
        /// A key starts with the prefix exactly when it lies in `[prefix, upper)`.
        #[test]
        fn the_range_holds_exactly_the_keys_with_the_prefix(
            prefix in "[a-c\u{7f}-\u{81}\u{10FFFE}-\u{10FFFF}/]{0,4}",
            key in "[a-c\u{7f}-\u{81}\u{10FFFE}-\u{10FFFF}/]{0,6}",
        ) {
            let upper = prefix_upper_bound(&prefix);
            let in_range = key.as_bytes() >= prefix.as_bytes()
                && upper.as_ref().is_none_or(|u| key.as_bytes() < u.as_bytes());
            prop_assert_eq!(in_range, key.starts_with(&prefix));
        }
    }
}
