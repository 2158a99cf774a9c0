//! Execution locks as lease rows of the `execution_locks` table.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flatmachines_core::{Error, ExecutionLock, Result, validate_key};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::database::{SqliteDatabase, retrying};
use crate::holder::{self, Holder, Liveness};
use crate::time::{now_iso8601, now_millis};

/// An [`ExecutionLock`] whose held keys are rows of a [`SqliteDatabase`], each with an owner,
/// a lease deadline and the process that holds it.
///
/// `acquire` is one statement: insert the row, or take it over if its lease has passed. It
/// answers at once (after at most the busy timeout if another process is writing), `true`
/// when this holder now has the key. While it holds any key, the holder renews the leases of
/// all its rows every third of the lease in one statement, so a live holder keeps its keys
/// however long it runs. `release` deletes the row if this holder owns it.
///
/// A holder that dies — or is dropped without releasing — stops renewing, and its keys
/// become free once their lease passes ([`SqliteConfig::lock_lease`], 30 s by default).
/// Each `SqliteLock` is one holder (a random owner id): two of them, in one process or two,
/// exclude each other; a holder asking again for a key it holds is refused too.
///
/// # Holders that died
///
/// Each row also records the holding process: host name, boot id, pid namespace, pid and
/// start time (read from `/proc`). An `acquire` that finds the key held within its lease
/// looks that process up: when it ran on this host, this boot and this pid namespace, and it
/// is gone — no such pid, a zombie, or the pid now belongs to a process that started at
/// another time — the key is taken over at once, by one `UPDATE` that matches the holder
/// exactly as read, so of several resumers racing for it one wins. A holder that still runs
/// is never taken over, whichever of its `SqliteLock`s holds the key. Rows of other hosts,
/// rows without a holder (written before schema version 4, or where `/proc` could not be
/// read), and every row on systems without Linux's `/proc` are freed by their lease only.
///
/// [`ensure_held`](ExecutionLock::ensure_held) answers from the last renewal: it fails with
/// [`Error::LockLost`] once a renewal found the row taken over or gone, or when less than a
/// third of the lease is left since the last confirmed renewal (the database did not answer
/// in time).
///
/// Lease deadlines are read from the system clock of each process; the processes sharing a
/// database file are on one host, so they read the same clock.
///
/// [`SqliteConfig::lock_lease`]: crate::SqliteConfig::lock_lease
pub struct SqliteLock {
    db: SqliteDatabase,
    owner: String,
    lease: Duration,
    held: Arc<Mutex<HashMap<String, Lease>>>,
    renewer: Mutex<Option<JoinHandle<()>>>,
}

/// What this holder knows about one key it acquired.
#[derive(Debug, Clone)]
struct Lease {
    /// When the acquire that took it had returned.
    acquired: Instant,
    /// Until when the key is surely this holder's: a lease after the start of the last
    /// statement that confirmed it.
    confirmed_until: Instant,
    /// Why the key is known to be lost.
    lost: Option<String>,
}

fn lock_map<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update is one insert, removal or field assignment: a poisoned map is consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

impl SqliteLock {
    pub(crate) fn new(db: SqliteDatabase, lease: Duration) -> Self {
        SqliteLock {
            db,
            owner: Uuid::new_v4().to_string(),
            lease,
            held: Arc::default(),
            renewer: Mutex::new(None),
        }
    }

    /// This holder's owner id, as stored in its rows.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease of the keys it holds.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Starts the task renewing this holder's leases, if it is not running.
    fn ensure_renewer(&self) {
        let mut renewer = lock_map(&self.renewer);
        if renewer.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let renewal = Renewal {
            db: self.db.clone(),
            owner: self.owner.clone(),
            lease: self.lease,
            held: Arc::clone(&self.held),
        };
        *renewer = Some(tokio::spawn(renewal.run()));
    }
}

/// The owner and holder columns of one lock row; the holder ones are NULL in rows without a
/// holder.
type HolderRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// The owner of a row, and its holder if the row records all of it.
fn recorded_holder(row: HolderRow) -> (String, Option<Holder>) {
    let (owner, host, boot_id, pid_ns, pid, start_time) = row;
    let holder = (|| {
        Some(Holder {
            host: host?,
            boot_id: boot_id?,
            pid_ns: pid_ns?,
            pid: pid?,
            start_time: start_time?,
        })
    })();
    (owner, holder)
}

impl SqliteLock {
    /// Inserts the row of `key`, or takes over one whose lease has passed; whether it did.
    async fn insert_or_take_expired(&self, key: &str, me: Option<&Holder>) -> Result<bool> {
        let now = now_millis();
        let acquired = retrying!(
            self.db,
            conn = writer,
            format!("acquire the execution lock `{key}`"),
            sqlx::query(
                "INSERT INTO execution_locks (key, owner, expires_at, acquired_at, holder_host, \
                     holder_boot_id, holder_pid_ns, holder_pid, holder_start_time) \
                 VALUES (?1, ?2, ?3, ?4, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, \
                     expires_at = excluded.expires_at, acquired_at = excluded.acquired_at, \
                     holder_host = excluded.holder_host, \
                     holder_boot_id = excluded.holder_boot_id, \
                     holder_pid_ns = excluded.holder_pid_ns, holder_pid = excluded.holder_pid, \
                     holder_start_time = excluded.holder_start_time \
                 WHERE execution_locks.expires_at <= ?5",
            )
            .bind(key)
            .bind(&self.owner)
            .bind(now.saturating_add(millis(self.lease)))
            .bind(now_iso8601())
            .bind(now)
            .bind(me.map(|me| me.host.as_str()))
            .bind(me.map(|me| me.boot_id.as_str()))
            .bind(me.map(|me| me.pid_ns.as_str()))
            .bind(me.map(|me| me.pid))
            .bind(me.map(|me| me.start_time))
            .execute(&mut *conn)
            .await
        );
        Ok(acquired.rows_affected() == 1)
    }

    /// Takes over the row of `key` if the process it records is gone; whether it did.
    ///
    /// The update matches the owner and holder exactly as read: a resumer that read the same
    /// row and updated first changed them, so only one of several racing resumers wins, and
    /// a row that changed hands since it was read is left alone.
    async fn take_from_gone_holder(&self, key: &str, me: &Holder) -> Result<bool> {
        let row: Option<HolderRow> = retrying!(
            self.db,
            conn = reader,
            format!("read the holder of the execution lock `{key}`"),
            sqlx::query_as(
                "SELECT owner, holder_host, holder_boot_id, holder_pid_ns, holder_pid, \
                     holder_start_time FROM execution_locks WHERE key = ?1",
            )
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
        );
        // No row: released since the insert failed; the caller may simply ask again.
        let Some((owner, Some(recorded))) = row.map(recorded_holder) else {
            return Ok(false);
        };
        if holder::liveness(me, &recorded) != Liveness::Gone {
            return Ok(false);
        }
        let now = now_millis();
        let taken = retrying!(
            self.db,
            conn = writer,
            format!(
                "take over the execution lock `{key}` from process {} that is gone",
                recorded.pid
            ),
            sqlx::query(
                "UPDATE execution_locks SET owner = ?2, expires_at = ?3, acquired_at = ?4, \
                     holder_host = ?5, holder_boot_id = ?6, holder_pid_ns = ?7, \
                     holder_pid = ?8, holder_start_time = ?9 \
                 WHERE key = ?1 AND owner = ?10 AND holder_host = ?11 \
                     AND holder_boot_id = ?12 AND holder_pid_ns = ?13 AND holder_pid = ?14 \
                     AND holder_start_time = ?15",
            )
            .bind(key)
            .bind(&self.owner)
            .bind(now.saturating_add(millis(self.lease)))
            .bind(now_iso8601())
            .bind(&me.host)
            .bind(&me.boot_id)
            .bind(&me.pid_ns)
            .bind(me.pid)
            .bind(me.start_time)
            .bind(&owner)
            .bind(&recorded.host)
            .bind(&recorded.boot_id)
            .bind(&recorded.pid_ns)
            .bind(recorded.pid)
            .bind(recorded.start_time)
            .execute(&mut *conn)
            .await
        );
        Ok(taken.rows_affected() == 1)
    }
}

/// The background renewal of one holder's leases.
struct Renewal {
    db: SqliteDatabase,
    owner: String,
    lease: Duration,
    held: Arc<Mutex<HashMap<String, Lease>>>,
}

impl Renewal {
    /// Every third of a lease, pushes the deadline of every row the owner holds one lease
    /// ahead and learns which keys it still has. A renewal that fails is tried again after a
    /// quarter of that pause; `ensure_held` notices if the retries come too late.
    async fn run(self) {
        let period = self.lease / 3;
        let mut pause = period;
        loop {
            tokio::time::sleep(pause).await;
            if lock_map(&self.held).is_empty() {
                pause = period;
                continue;
            }
            let started = Instant::now();
            match self.renew().await {
                Ok(kept) => {
                    self.reconcile(started, &kept);
                    pause = period;
                }
                Err(_) => pause = (period / 4).max(Duration::from_millis(20)),
            }
        }
    }

    async fn renew(&self) -> Result<Vec<String>> {
        let deadline = now_millis().saturating_add(millis(self.lease));
        Ok(retrying!(
            self.db,
            conn = writer,
            "renew execution-lock leases".to_owned(),
            sqlx::query_scalar(
                "UPDATE execution_locks SET expires_at = ?2 WHERE owner = ?1 RETURNING key",
            )
            .bind(&self.owner)
            .bind(deadline)
            .fetch_all(&mut *conn)
            .await
        ))
    }

    /// Records what a renewal that started at `started` found: the keys in `kept` are
    /// confirmed; a key acquired before it started and missing from `kept` was taken over.
    fn reconcile(&self, started: Instant, kept: &[String]) {
        let mut held = lock_map(&self.held);
        for (key, lease) in held.iter_mut() {
            if kept.contains(key) {
                lease.confirmed_until = lease.confirmed_until.max(started + self.lease);
            } else if lease.acquired < started && lease.lost.is_none() {
                lease.lost = Some(
                    "its lease ran out and the row is gone or belongs to another holder".to_owned(),
                );
            }
        }
    }
}

impl Drop for SqliteLock {
    fn drop(&mut self) {
        let renewer = self
            .renewer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = renewer {
            task.abort();
        }
    }
}

impl fmt::Debug for SqliteLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteLock")
            .field("path", &self.db.path())
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .field("held", &lock_map(&self.held).len())
            .finish()
    }
}

#[async_trait]
impl ExecutionLock for SqliteLock {
    async fn acquire(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        let sent = Instant::now();
        let me = holder::current();
        let acquired = self.insert_or_take_expired(key, me.as_ref()).await?
            || match &me {
                Some(me) => self.take_from_gone_holder(key, me).await?,
                None => false,
            };
        if !acquired {
            return Ok(false);
        }
        let lease = Lease {
            acquired: Instant::now(),
            // Both statements wrote a deadline a lease after they started, so after `sent`.
            confirmed_until: sent + self.lease,
            lost: None,
        };
        lock_map(&self.held).insert(key.to_owned(), lease);
        self.ensure_renewer();
        Ok(true)
    }

    async fn release(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        lock_map(&self.held).remove(key);
        retrying!(
            self.db,
            conn = writer,
            format!("release the execution lock `{key}`"),
            sqlx::query("DELETE FROM execution_locks WHERE key = ?1 AND owner = ?2")
                .bind(key)
                .bind(&self.owner)
                .execute(&mut *conn)
                .await
        );
        Ok(())
    }

    fn ensure_held(&self, key: &str) -> Result<()> {
        let lost = |reason: String| Error::LockLost {
            key: key.to_owned(),
            reason,
        };
        let held = lock_map(&self.held);
        let Some(lease) = held.get(key) else {
            return Err(lost("this holder does not hold it".to_owned()));
        };
        if let Some(reason) = &lease.lost {
            return Err(lost(reason.clone()));
        }
        // Less than a third of the lease left means at least one renewal did not come back:
        // a write started now might land after the row expired.
        let left = lease
            .confirmed_until
            .saturating_duration_since(Instant::now());
        if left < self.lease / 3 {
            return Err(lost(format!(
                "its lease of {:?} could not be renewed in time in `{}`",
                self.lease,
                self.db.path().display()
            )));
        }
        Ok(())
    }
}
