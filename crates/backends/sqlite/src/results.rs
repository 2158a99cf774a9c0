//! Results of executions as rows of the `results` table, with blocking reads that look at the
//! file again until the row is there.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use flatmachines_core::{Error, ReadOptions, Result, ResultBackend, ResultUri};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::database::{SqliteDatabase, retrying};
use crate::persistence::MAX_VALUE_LEN;
use crate::time::now_iso8601;

/// The first pause of a blocked reader between two looks at its row.
const POLL_FIRST: Duration = Duration::from_millis(5);

/// The longest pause of a blocked reader between two looks at its row: how late, at worst, a
/// reader learns of a write made by another process.
const POLL_MAX: Duration = Duration::from_millis(100);

/// A [`ResultBackend`] keeping each result as a row of the `results` table of a
/// [`SqliteDatabase`].
///
/// `flatagents://{execution_id}/{path}` is the row keyed `{execution_id}/{path}`
/// ([`ResultUri::key`]); the value is its JSON text, stored with the time it was written. A
/// `write` is one `INSERT … ON CONFLICT DO UPDATE` statement, committed when it returns.
/// Values whose JSON is larger than [`MAX_VALUE_LEN`] bytes fail with [`Error::TooLarge`] and
/// write nothing.
///
/// # Blocking reads
///
/// SQLite tells no one about a commit, so a blocking `read` looks at its row, and while it is
/// missing, looks again after a pause that starts at 5 ms and doubles up to 100 ms: a write
/// made by another process (or through another handle) wakes its readers within about
/// 100 ms. A look is one primary-key lookup on a read connection, which in WAL mode never
/// waits for writers. Writes made in this process also wake the blocked readers of the same
/// file and key at once, whichever handle they use. A reader whose timeout passes looks once
/// more — a value written at the last moment wins — then fails with [`Error::Timeout`].
/// A read without a timeout waits until a value is written, or until it is dropped.
///
/// `Clone` is cheap and shares the database's connections.
#[derive(Debug, Clone)]
pub struct SqliteResultBackend {
    db: SqliteDatabase,
}

impl SqliteResultBackend {
    pub(crate) fn new(db: SqliteDatabase) -> Self {
        SqliteResultBackend { db }
    }

    /// The database holding the results.
    pub fn database(&self) -> &SqliteDatabase {
        &self.db
    }

    /// The value stored at `key`, if any. `uri` names it in errors.
    async fn fetch(&self, uri: &ResultUri<'_>, key: &str) -> Result<Option<Value>> {
        let text: Option<String> = retrying!(
            self.db,
            conn = reader,
            format!("read the result at {uri}"),
            sqlx::query_scalar("SELECT value FROM results WHERE key = ?1")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
        );
        text.map(|text| {
            serde_json::from_str(&text).map_err(|source| Error::Serialization {
                action: "decode",
                what: format!(
                    "the result at {uri} in `{}` (expected JSON text)",
                    self.db.path().display()
                ),
                source,
            })
        })
        .transpose()
    }

    /// Waits until a value is stored at `key`, or `timeout` passes.
    async fn wait_for(
        &self,
        uri: &ResultUri<'_>,
        key: &str,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        // A timeout too long to add to the clock is no timeout at all.
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        let waiter = Waiter::register(self.db.path(), key);
        let mut pause = POLL_FIRST;
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            // Registered before the look: a write of this process that commits after the look
            // began wakes this reader rather than waiting for the next look.
            notified.as_mut().enable();
            if let Some(value) = self.fetch(uri, key).await? {
                return Ok(value);
            }
            let mut wake_at = Instant::now() + pause;
            if let Some(deadline) = deadline {
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        what: format!("a result at {uri}"),
                        after: timeout.unwrap_or_default(),
                    });
                }
                wake_at = wake_at.min(deadline);
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
            pause = next_pause(pause);
        }
    }
}

/// The pause after `pause`: twice as long, at most [`POLL_MAX`].
fn next_pause(pause: Duration) -> Duration {
    pause.saturating_mul(2).min(POLL_MAX)
}

/// Blocked readers of this process: by database file, then by result key, a notifier and how
/// many readers wait on it.
type Waiting = HashMap<PathBuf, HashMap<String, (Arc<Notify>, usize)>>;

fn waiting() -> MutexGuard<'static, Waiting> {
    static WAITING: OnceLock<Mutex<Waiting>> = OnceLock::new();
    // Each update is one insert, removal or count change: a poisoned map is consistent.
    WAITING
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Wakes the readers of this process blocked on `key` in the file at `path`.
fn wake(path: &Path, key: &str) {
    if let Some((notify, _)) = waiting().get(path).and_then(|keys| keys.get(key)) {
        notify.notify_waiters();
    }
}

/// A blocked reader's registration; dropping it (on return, timeout or cancellation) removes
/// the key's notifier when it was the last reader, so the map holds only keys being waited on.
struct Waiter {
    path: PathBuf,
    key: String,
    notify: Arc<Notify>,
}

impl Waiter {
    fn register(path: &Path, key: &str) -> Self {
        let mut waiting = waiting();
        let entry = waiting
            .entry(path.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        Waiter {
            path: path.to_owned(),
            key: key.to_owned(),
            notify: Arc::clone(&entry.0),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiting = waiting();
        let Some(keys) = waiting.get_mut(&self.path) else {
            return;
        };
        if let Some(entry) = keys.get_mut(&self.key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                keys.remove(&self.key);
            }
        }
        if keys.is_empty() {
            waiting.remove(&self.path);
        }
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("path", &self.path)
            .field("key", &self.key)
            .finish()
    }
}

#[async_trait]
impl ResultBackend for SqliteResultBackend {
    async fn write(&self, uri: &str, data: Value) -> Result<()> {
        let parsed = ResultUri::parse(uri)?;
        let text = parsed.encode(&data, MAX_VALUE_LEN, "sqlite")?;
        let key = parsed.key();
        let written_at = now_iso8601();
        retrying!(
            self.db,
            conn = writer,
            format!("write the result at {parsed}"),
            sqlx::query(
                "INSERT INTO results (key, value, written_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE \
                 SET value = excluded.value, written_at = excluded.written_at",
            )
            .bind(&key)
            .bind(&text)
            .bind(&written_at)
            .execute(&mut *conn)
            .await
        );
        // Committed: readers that look now find it.
        wake(self.db.path(), &key);
        Ok(())
    }

    async fn read(&self, uri: &str, options: ReadOptions) -> Result<Option<Value>> {
        let parsed = ResultUri::parse(uri)?;
        let key = parsed.key();
        if options.block {
            self.wait_for(&parsed, &key, options.timeout)
                .await
                .map(Some)
        } else {
            self.fetch(&parsed, &key).await
        }
    }

    async fn exists(&self, uri: &str) -> Result<bool> {
        let parsed = ResultUri::parse(uri)?;
        let key = parsed.key();
        let found: Option<i64> = retrying!(
            self.db,
            conn = reader,
            format!("check the result at {parsed}"),
            sqlx::query_scalar("SELECT 1 FROM results WHERE key = ?1")
                .bind(&key)
                .fetch_optional(&mut *conn)
                .await
        );
        Ok(found.is_some())
    }

    async fn delete(&self, uri: &str) -> Result<()> {
        let parsed = ResultUri::parse(uri)?;
        let key = parsed.key();
        retrying!(
            self.db,
            conn = writer,
            format!("delete the result at {parsed}"),
            sqlx::query("DELETE FROM results WHERE key = ?1")
                .bind(&key)
                .execute(&mut *conn)
                .await
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(path: &Path, key: &str) -> usize {
        waiting()
            .get(path)
            .and_then(|keys| keys.get(key))
            .map_or(0, |(_, readers)| *readers)
    }

    #[tokio::test]
    async fn a_wake_reaches_the_readers_of_its_file_and_key_only() {
        let (path, other) = (Path::new("/wake/a.sqlite"), Path::new("/wake/b.sqlite"));
        let first = Waiter::register(path, "e/result");
        let second = Waiter::register(path, "e/result");
        let elsewhere = Waiter::register(other, "e/result");
        assert!(Arc::ptr_eq(&first.notify, &second.notify));
        assert_eq!(registered(path, "e/result"), 2);

        let (notify, other_notify) = (Arc::clone(&first.notify), Arc::clone(&elsewhere.notify));
        let woken = notify.notified();
        let not_woken = other_notify.notified();
        tokio::pin!(woken, not_woken);
        woken.as_mut().enable();
        not_woken.as_mut().enable();
        wake(path, "e/other");
        wake(path, "e/result");
        tokio::time::timeout(Duration::from_secs(5), woken)
            .await
            .expect("the reader of the written key wakes");
        let quiet = tokio::time::timeout(Duration::from_millis(50), not_woken).await;
        assert!(quiet.is_err(), "a write to another file woke a reader");

        drop(first);
        assert_eq!(registered(path, "e/result"), 1);
        drop(second);
        assert_eq!(registered(path, "e/result"), 0);
        assert!(!waiting().contains_key(path), "the file's entry is removed");
        drop(elsewhere);
        assert!(!waiting().contains_key(other));
    }

    #[test]
    fn the_poll_pause_grows_to_its_cap() {
        let mut pause = POLL_FIRST;
        let mut pauses = Vec::new();
        for _ in 0..8 {
            pauses.push(pause.as_millis());
            pause = next_pause(pause);
        }
        assert_eq!(pauses, [5, 10, 20, 40, 80, 100, 100, 100]);
    }
}
