//! One database file: checks before opening, connections, migrations, and retries while the
//! database is busy.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use flatmachines_core::Result;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, Notify, OnceCell};
use tokio::task::JoinHandle;

use crate::config::{SqliteConfig, Synchronous};
use crate::error::{SqliteError, classify, detail, is_busy};
use crate::file::{absolute, check_file};
use crate::lock::SqliteLock;
use crate::persistence::SqlitePersistence;
use crate::registration::SqliteRegistration;
use crate::results::SqliteResultBackend;
use crate::work::SqliteWorkBackend;

/// The schema, embedded from `migrations/` at build time.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!();

/// The schema version this build creates and understands: the newest embedded migration.
pub fn schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// How many times one operation meets a busy database before it gives up. Each attempt
/// already waits up to the busy timeout inside SQLite.
const BUSY_ATTEMPTS: u32 = 6;

/// How many times opening tries the migrations: processes opening a new file at once race
/// to create the schema, and the loser finds it made on its next try.
const MIGRATE_ATTEMPTS: u32 = 4;

/// One SQLite database file shared by the backends of this crate.
///
/// [`persistence`](Self::persistence), [`results`](Self::results),
/// [`registration`](Self::registration), [`work`](Self::work) and [`lock`](Self::lock) hand
/// out backends that share this handle's connections; handles opened on the same file — in
/// this process or in others — share its data.
///
/// # Opening
///
/// [`open`](Self::open) checks the file at once: a directory, a file that is not a SQLite
/// database, or a file this process may not write is refused with an error naming the path.
/// A missing file (and its parent directories) is created. Connections and the schema
/// migrations wait for the first operation (or for [`ready`](Self::ready)), so `open`
/// needs no async runtime; [`connect`](Self::connect) does both at once.
///
/// The schema is versioned ([`schema_version`]): opening a file written by an older build
/// upgrades it in place, one migration per transaction; a file written by a newer build is
/// refused rather than misread.
///
/// # Connections and contention
///
/// The file is in WAL mode, so readers never block the writer or each other. Each handle has
/// one write connection, which its tasks take in turn, and up to
/// [`readers`](SqliteConfig::readers) read connections. Across processes SQLite's own file
/// locks order the writers: a statement waits up to the
/// [`busy timeout`](SqliteConfig::busy_timeout) for the write lock, and an operation that
/// still finds the database busy is retried a few times with a growing pause; only then does
/// it fail, with a retryable error. Every write is one statement or one `BEGIN IMMEDIATE`
/// transaction, so a retry never repeats half of one.
///
/// # Durability
///
/// Every commit survives the process crashing or being killed at any point, with either
/// [`Synchronous`] level; the default (`NORMAL`) may lose the last commits to a power loss or
/// an OS crash, `FULL` does not. A background task (on the Tokio runtime of the first write)
/// folds the WAL back into the database file every 300 commits and each second after
/// writes, so commits do not wait for that sync; SQLite still does it inline should the WAL
/// grow past 10 000 pages.
///
/// [`close`](Self::close) closes the connections; the last one to the file removes the WAL.
/// A process that exits without closing leaves the `-wal` and `-shm` files, which the next
/// opener uses as they are.
#[derive(Clone)]
pub struct SqliteDatabase {
    inner: Arc<Inner>,
}

struct Inner {
    config: SqliteConfig,
    path: PathBuf,
    options: SqliteConnectOptions,
    migrated: OnceCell<()>,
    writer: Slot,
    readers: Box<[Slot]>,
    next_reader: AtomicUsize,
    wal: WalCheckpoints,
}

/// Folding the WAL back into the database file in the background. SQLite would otherwise do
/// it inside the commit that crosses its threshold, syncing the file while that caller waits;
/// here a task of its own does it on a connection of its own, and writes go on meanwhile.
#[derive(Default)]
struct WalCheckpoints {
    /// Commits since the last checkpoint.
    commits: AtomicU32,
    wake: Arc<Notify>,
    task: StdMutex<Option<JoinHandle<()>>>,
    connection: Slot,
}

/// The live handles of [`SqliteDatabase::open_shared`], by file and options.
type OpenHandles = HashMap<(PathBuf, String), Weak<Inner>>;

/// A connection opened on first use and replaced after it breaks.
#[derive(Default)]
struct Slot {
    connection: Mutex<Option<SqliteConnection>>,
    broken: AtomicBool,
}

/// A connection taken from a [`Slot`]; others wait until it is dropped.
pub(crate) struct Conn<'a> {
    connection: MappedMutexGuard<'a, SqliteConnection>,
    broken: &'a AtomicBool,
    writes: bool,
}

impl Deref for Conn<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.connection
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.connection
    }
}

impl SqliteDatabase {
    /// Opens the database `config` names, creating the file if it is missing.
    ///
    /// Fails at once if the path is a directory, the file is not a SQLite database, or it is
    /// read-only. Connections open and the schema is brought up to date on first use.
    pub fn open(config: SqliteConfig) -> Result<Self> {
        let path = absolute(config.path())?;
        check_file(&path)?;
        let synchronous = match config.synchronous_level() {
            Synchronous::Full => SqliteSynchronous::Full,
            _ => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(config.busy_timeout_duration())
            .foreign_keys(false)
            // A backstop: the background checkpoints normally keep the WAL far below this.
            .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string())
            .disable_statement_logging();
        let readers = (0..config.reader_count())
            .map(|_| Slot::default())
            .collect();
        Ok(SqliteDatabase {
            inner: Arc::new(Inner {
                config,
                path,
                options,
                migrated: OnceCell::new(),
                writer: Slot::default(),
                readers,
                next_reader: AtomicUsize::new(0),
                wal: WalCheckpoints::default(),
            }),
        })
    }

    /// Opens the database of a `sqlite://PATH[?options]` URL (see [`SqliteConfig`]).
    pub fn open_url(url: &str) -> Result<Self> {
        Self::open(SqliteConfig::from_url(url)?)
    }

    /// Like [`open`](Self::open), but returns the handle this process already has on the
    /// same file with the same options, if one is still alive, so that every backend of a
    /// process that names the file (checkpoints, locks, pools) shares one write connection
    /// rather than contending for SQLite's lock.
    pub fn open_shared(config: SqliteConfig) -> Result<Self> {
        static OPEN: OnceLock<StdMutex<OpenHandles>> = OnceLock::new();
        let path = absolute(config.path())?;
        let key = (path, config.to_url());
        // Entries are only inserted or pruned, so a poisoned map is still consistent.
        let mut open = OPEN
            .get_or_init(StdMutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.retain(|_, handle| handle.strong_count() > 0);
        if let Some(inner) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(SqliteDatabase { inner });
        }
        let database = Self::open(config)?;
        open.insert(key, Arc::downgrade(&database.inner));
        Ok(database)
    }

    /// Whether `other` is this handle or a clone of it (as [`open_shared`](Self::open_shared)
    /// returns), sharing its connections.
    pub fn shares_connections_with(&self, other: &SqliteDatabase) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Opens the database and brings its schema up to date before returning, so that every
    /// problem with the file shows here.
    pub async fn connect(config: SqliteConfig) -> Result<Self> {
        let database = Self::open(config)?;
        database.ready().await?;
        Ok(database)
    }

    /// Opens the write connection and applies pending migrations, if not done yet.
    pub async fn ready(&self) -> Result<()> {
        self.inner
            .migrated
            .get_or_try_init(|| self.migrate())
            .await
            .map(|_| ())
            .map_err(Into::into)
    }

    /// The schema version the file is at: 0 for a new file, older than
    /// [`schema_version`] until the first operation (or [`ready`](Self::ready)) upgrades it.
    pub async fn stored_schema_version(&self) -> Result<i64> {
        // Read as it is: no migration first.
        let mut conn = self.take(&self.inner.readers[0]).await?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| classify(&self.inner.path, "read the schema version", &e))?;
        if exists.is_none() {
            return Ok(0);
        }
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| classify(&self.inner.path, "read the schema version", &e))?;
        Ok(version.unwrap_or(0))
    }

    /// Closes this handle's connections, waiting until they are closed. The last connection
    /// to the file folds the WAL back into the database file and removes it. The handle stays
    /// usable: the next operation opens connections again.
    pub async fn close(&self) {
        let slots = [&self.inner.writer, &self.inner.wal.connection];
        for slot in slots.into_iter().chain(self.inner.readers.iter()) {
            let connection = slot.connection.lock().await.take();
            if let Some(connection) = connection {
                // A connection that fails to close cleanly is gone all the same.
                let _ = connection.close().await;
            }
        }
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SqliteConfig {
        &self.inner.config
    }

    /// The database file, as an absolute path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The checkpoint store in this database.
    pub fn persistence(&self) -> SqlitePersistence {
        SqlitePersistence::new(self.clone())
    }

    /// The results of executions in this database: where launched machines leave their
    /// outputs for whoever launched them, in this process or another.
    pub fn results(&self) -> SqliteResultBackend {
        SqliteResultBackend::new(self.clone())
    }

    /// Worker registration in this database.
    pub fn registration(&self) -> SqliteRegistration {
        SqliteRegistration::new(self.clone())
    }

    /// The work pools in this database.
    pub fn work(&self) -> SqliteWorkBackend {
        SqliteWorkBackend::new(self.clone())
    }

    /// A new execution-lock holder in this database, with the configured lease. Each call is
    /// a separate holder.
    pub fn lock(&self) -> SqliteLock {
        SqliteLock::new(self.clone(), self.inner.config.lock_lease_duration())
    }

    async fn migrate(&self) -> Result<(), SqliteError> {
        let mut last = None;
        for attempt in 0..MIGRATE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let mut conn = self.take(&self.inner.writer).await?;
            // `run` takes any `Acquire`, whose higher-ranked bound keeps the compiler from
            // proving this future `Send`; `run_direct` is sqlx's way around that.
            let migrated = MIGRATOR.run_direct(&mut *conn).await;
            drop(conn);
            match migrated {
                Ok(()) => return Ok(()),
                Err(error) => {
                    let (error, final_) = self.migrate_error(error);
                    if final_ {
                        return Err(error);
                    }
                    last = Some(error);
                }
            }
        }
        Err(last.unwrap_or_else(|| SqliteError::Migrate {
            path: self.inner.path.clone(),
            target: schema_version(),
            detail: "no attempt was made".to_owned(),
        }))
    }

    /// The error to report for a failed migration, and whether trying again is pointless.
    fn migrate_error(&self, error: MigrateError) -> (SqliteError, bool) {
        let path = self.inner.path.clone();
        let target = schema_version();
        match error {
            MigrateError::VersionMissing(found) => (
                SqliteError::NewerSchema {
                    path,
                    found,
                    known: target,
                },
                true,
            ),
            MigrateError::Execute(error) | MigrateError::ExecuteMigration(error, _) => {
                match classify(&path, "apply the schema migrations", &error) {
                    SqliteError::Driver { detail, .. } => (
                        SqliteError::Migrate {
                            path,
                            target,
                            detail,
                        },
                        false,
                    ),
                    // Read-only, corrupt and foreign files stay so.
                    other => (other, true),
                }
            }
            other => {
                let retry = !matches!(
                    other,
                    MigrateError::VersionMismatch(_) | MigrateError::Dirty(_)
                );
                (
                    SqliteError::Migrate {
                        path,
                        target,
                        detail: other.to_string(),
                    },
                    !retry,
                )
            }
        }
    }

    /// The write connection, once the schema is up to date.
    pub(crate) async fn writer(&self) -> Result<Conn<'_>> {
        self.ready().await?;
        let mut conn = self.take(&self.inner.writer).await?;
        conn.writes = true;
        Ok(conn)
    }

    /// Counts a commit, and wakes (or starts) the background checkpoints when enough have
    /// piled up in the WAL.
    fn committed(&self) {
        let wal = &self.inner.wal;
        let commits = wal.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if commits == 1 || commits.is_multiple_of(CHECKPOINT_EVERY) {
            let mut task = wal.task.lock().unwrap_or_else(PoisonError::into_inner);
            // A task ends with the Tokio runtime it ran on; the next one starts it again.
            if task.as_ref().is_none_or(JoinHandle::is_finished)
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                let inner = Arc::downgrade(&self.inner);
                *task = Some(runtime.spawn(checkpoint_in_background(inner, Arc::clone(&wal.wake))));
            }
            if commits >= CHECKPOINT_EVERY {
                wal.wake.notify_one();
            }
        }
    }

    /// A read connection, once the schema is up to date: a free one if there is one.
    pub(crate) async fn reader(&self) -> Result<Conn<'_>> {
        self.ready().await?;
        let readers = &self.inner.readers;
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        let free = (0..readers.len())
            .map(|offset| &readers[(start + offset) % readers.len()])
            .find(|slot| slot.connection.try_lock().is_ok());
        Ok(self.take(free.unwrap_or(&readers[start])).await?)
    }

    async fn take<'a>(&'a self, slot: &'a Slot) -> Result<Conn<'a>, SqliteError> {
        let mut guard = slot.connection.lock().await;
        // A connection that broke, or that a cancelled caller left inside a transaction, is
        // replaced rather than reused.
        let stale = slot.broken.swap(false, Ordering::AcqRel)
            || guard.as_ref().is_some_and(|c| c.is_in_transaction());
        if stale && let Some(old) = guard.take() {
            drop(old);
        }
        if guard.is_none() {
            *guard = Some(self.open_connection().await?);
        }
        let connection =
            MutexGuard::try_map(guard, Option::as_mut).map_err(|_| SqliteError::Open {
                path: self.inner.path.clone(),
                detail: "the connection went away while it was being opened".to_owned(),
            })?;
        Ok(Conn {
            connection,
            broken: &slot.broken,
            writes: false,
        })
    }

    /// Opens a connection, again while the database is busy: a new connection's pragmas can
    /// meet another handle switching a new file to WAL or creating its schema, and SQLite
    /// then answers busy without waiting for its busy timeout.
    async fn open_connection(&self) -> Result<SqliteConnection, SqliteError> {
        let mut attempts = 0u32;
        loop {
            let error = match self.inner.options.connect().await {
                Ok(connection) => return Ok(connection),
                Err(error) => error,
            };
            attempts += 1;
            if !is_busy(&error) || attempts >= BUSY_ATTEMPTS {
                return Err(classify(&self.inner.path, "open a connection", &error));
            }
            tokio::time::sleep(backoff(attempts)).await;
        }
    }

    /// Ends one attempt of an operation: its value, `None` to try again after a pause (the
    /// database was busy), or the error to report. `what` names the operation for messages.
    pub(crate) async fn settle<T>(
        &self,
        attempts: &mut u32,
        conn: Conn<'_>,
        result: std::result::Result<T, sqlx::Error>,
        what: impl FnOnce() -> String,
    ) -> Result<Option<T>> {
        let error = match result {
            Ok(value) => {
                if conn.writes {
                    drop(conn);
                    self.committed();
                }
                return Ok(Some(value));
            }
            Err(error) => error,
        };
        if matches!(
            error,
            sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_)
        ) {
            conn.broken.store(true, Ordering::Release);
        }
        // Others may use the connection while this operation waits.
        drop(conn);
        *attempts += 1;
        if is_busy(&error) {
            if *attempts < BUSY_ATTEMPTS {
                tokio::time::sleep(backoff(*attempts)).await;
                return Ok(None);
            }
            return Err(SqliteError::Busy {
                path: self.inner.path.clone(),
                operation: what(),
                attempts: *attempts,
                detail: detail(&error),
            }
            .into());
        }
        Err(classify(&self.inner.path, what(), &error).into())
    }
}

/// Runs `$body` on a connection from `$db.$acquire()`, again while the database is busy, and
/// evaluates to its value. `$what` names the operation in errors.
macro_rules! retrying {
    ($db:expr, $conn:ident = $acquire:ident, $what:expr, $body:expr) => {{
        let db = &$db;
        let mut attempts = 0u32;
        loop {
            #[allow(unused_mut)]
            let mut $conn = db.$acquire().await?;
            let result = $body;
            if let Some(done) = db.settle(&mut attempts, $conn, result, || $what).await? {
                break done;
            }
        }
    }};
}
pub(crate) use retrying;

/// Commits between background checkpoints: about a thousand pages of WAL, SQLite's own
/// default threshold.
const CHECKPOINT_EVERY: u32 = 300;

/// The WAL size, in pages, at which a commit checkpoints inline after all: ten times the
/// background threshold, reached only if the background task cannot keep up.
const WAL_BACKSTOP_PAGES: u32 = 10_000;

/// How often the background task looks for commits below the threshold.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);

/// Checkpoints the WAL (`PASSIVE`: never waits for readers or writers) whenever woken, or
/// every [`CHECKPOINT_IDLE`] if there were commits, until the database handle is gone.
async fn checkpoint_in_background(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let _ = tokio::time::timeout(CHECKPOINT_IDLE, wake.notified()).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.wal.commits.swap(0, Ordering::Relaxed) == 0 {
            continue;
        }
        let database = SqliteDatabase { inner };
        if let Ok(mut conn) = database.take(&database.inner.wal.connection).await {
            // Another process's checkpoint may be running; the next round catches up.
            let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut *conn)
                .await;
        }
    }
}

/// The pause before attempt `attempt + 1`: 5 ms doubling, at most 160 ms, with jitter so
/// that processes that collided once do not collide again.
fn backoff(attempt: u32) -> Duration {
    let base = 5u64 << attempt.min(5);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base))
}

impl fmt::Debug for SqliteDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDatabase")
            .field("path", &self.inner.path)
            .field("config", &self.inner.config)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..10 {
            let pause = backoff(attempt);
            let base = 5u64 << attempt.min(5);
            assert!(pause >= Duration::from_millis(base / 2), "{pause:?}");
            assert!(pause <= Duration::from_millis(base * 3 / 2), "{pause:?}");
        }
    }

    #[test]
    fn the_schema_version_is_the_newest_migration() {
        assert_eq!(schema_version(), 4);
        let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(versions, [1, 2, 3, 4]);
    }
}
