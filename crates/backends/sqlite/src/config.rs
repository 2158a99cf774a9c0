//! Where the database lives and how it is opened: [`SqliteConfig`] and its URL form.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::SqliteError;

/// How hard SQLite works to make a commit survive a crash (`PRAGMA synchronous`).
///
/// In WAL mode both levels keep the database consistent, and both make every commit survive
/// the **process** crashing or being killed: a commit is in the operating system's hands when
/// it returns. They differ only on **power loss or an OS crash**.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// `NORMAL` (the default): the WAL is synced at checkpoints, not at each commit. A power
    /// loss may undo the last commits, never corrupt the file.
    #[default]
    Normal,
    /// `FULL`: the WAL is synced at every commit, so a commit survives power loss too. Each
    /// commit then waits for the disk (0.2–3 ms on the machines we measured).
    Full,
}

impl Synchronous {
    /// The name used in URLs and in `PRAGMA synchronous`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
        }
    }
}

/// How to open one SQLite database file shared by the checkpoint store, worker registration,
/// work pools and execution locks of [`SqliteDatabase`](crate::SqliteDatabase).
///
/// Every field has a default suited to several processes sharing the file on one host:
///
/// | field | default | URL option |
/// |---|---|---|
/// | [`synchronous`](Self::synchronous) | [`Synchronous::Normal`] | `synchronous=normal\|full` |
/// | [`busy_timeout`](Self::busy_timeout) | 5 s | `busy_timeout_ms=N` (N ≥ 1) |
/// | [`readers`](Self::readers) | 4 | `readers=N` (1 to 64) |
/// | [`lock_lease`](Self::lock_lease) | 30 s | `lock_lease_ms=N` (N ≥ 1000) |
///
/// The URL form is `sqlite://PATH[?option=value&…]`: `sqlite://workers.sqlite` is relative
/// to the working directory, `sqlite:///var/lib/fm/db.sqlite` is absolute. The path is taken
/// literally (no percent-decoding) and ends at the first `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    path: PathBuf,
    synchronous: Synchronous,
    busy_timeout: Duration,
    readers: u32,
    lock_lease: Duration,
}

/// The URL scheme of the family.
pub const SCHEME: &str = "sqlite";

const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READERS: u32 = 4;
const MAX_READERS: u32 = 64;
const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(30);
/// The shortest lease a holder can keep. Renewals run every third of the lease and a late one
/// makes `ensure_held` fail once less than a third is left, so a third must cover a renewal
/// that waits for another writer or for a loaded scheduler: at 100 ms a renewal 33 ms late
/// made a live runner give up its own key; at 1 s a renewal may be about 333 ms late.
const MIN_LOCK_LEASE: Duration = Duration::from_secs(1);

const OPTIONS: &str = "synchronous, busy_timeout_ms, readers, lock_lease_ms";

impl SqliteConfig {
    /// The database file the reference runtime's SQLite backends default to, relative to
    /// the working directory.
    pub const DEFAULT_PATH: &'static str = "workers.sqlite";

    /// The database at `path` (created on first use if missing), with every default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            synchronous: Synchronous::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            readers: DEFAULT_READERS,
            lock_lease: DEFAULT_LOCK_LEASE,
        }
    }

    /// Parses `sqlite://PATH[?option=value&…]` (see the type's table of options).
    pub fn from_url(url: &str) -> flatmachines_core::Result<Self> {
        parse_url(url).map_err(|reason| {
            SqliteError::BadUrl {
                url: url.to_owned(),
                reason,
            }
            .into()
        })
    }

    /// The URL that [`from_url`](Self::from_url) turns back into this config; options at
    /// their default are left out.
    pub fn to_url(&self) -> String {
        self.to_string()
    }

    /// Sets how commits are synced to disk.
    #[must_use]
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long one statement waits for another connection's write lock before SQLite
    /// reports the database busy (which is then retried a few times). Zero is raised to one
    /// millisecond: the backends never fail at once on a busy database.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How many read connections this handle keeps (1 to 64). Writes share one connection
    /// per handle, so tasks of one process queue for it instead of contending in SQLite.
    #[must_use]
    pub fn readers(mut self, readers: u32) -> Self {
        self.readers = readers.clamp(1, MAX_READERS);
        self
    }

    /// How long an execution lock outlives its holder's last renewal (at least 1 s; shorter
    /// leases are raised to it). Holders renew at a third of it, so a live holder keeps its
    /// keys. A holder on this host whose process is gone loses its keys at once, whatever the
    /// lease (see [`SqliteLock`](crate::SqliteLock)).
    #[must_use]
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lock_lease = lease.max(MIN_LOCK_LEASE);
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How commits are synced.
    pub fn synchronous_level(&self) -> Synchronous {
        self.synchronous
    }

    /// The busy timeout.
    pub fn busy_timeout_duration(&self) -> Duration {
        self.busy_timeout
    }

    /// The number of read connections.
    pub fn reader_count(&self) -> u32 {
        self.readers
    }

    /// The execution locks' lease.
    pub fn lock_lease_duration(&self) -> Duration {
        self.lock_lease
    }
}

impl fmt::Display for SqliteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}://{}", self.path.display())?;
        let mut separator = '?';
        let mut option = |f: &mut fmt::Formatter<'_>, key: &str, value: &dyn fmt::Display| {
            let written = write!(f, "{separator}{key}={value}");
            separator = '&';
            written
        };
        if self.synchronous != Synchronous::default() {
            option(f, "synchronous", &self.synchronous.as_str())?;
        }
        if self.busy_timeout != DEFAULT_BUSY_TIMEOUT {
            option(f, "busy_timeout_ms", &self.busy_timeout.as_millis())?;
        }
        if self.readers != DEFAULT_READERS {
            option(f, "readers", &self.readers)?;
        }
        if self.lock_lease != DEFAULT_LOCK_LEASE {
            option(f, "lock_lease_ms", &self.lock_lease.as_millis())?;
        }
        Ok(())
    }
}

fn parse_url(url: &str) -> Result<SqliteConfig, String> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Err(if url.starts_with("sqlite:") {
            "SQLite URLs here are sqlite://PATH; in-memory databases (`sqlite::memory:`) cannot be shared between processes, use memory:// for those".to_owned()
        } else {
            "it does not start with sqlite://".to_owned()
        });
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err("the database path is empty".to_owned());
    }
    if path.chars().any(char::is_control) {
        return Err("the database path contains control characters".to_owned());
    }
    let mut config = SqliteConfig::new(path);
    let mut seen: Vec<&str> = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("option `{pair}` has no `=value`"))?;
        if seen.contains(&key) {
            return Err(format!("option `{key}` is given twice"));
        }
        seen.push(key);
        config = apply_option(config, key, value)?;
    }
    Ok(config)
}

fn apply_option(config: SqliteConfig, key: &str, value: &str) -> Result<SqliteConfig, String> {
    let number = |min: u64, max: u64| -> Result<u64, String> {
        value
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                format!("option `{key}` must be a whole number from {min} to {max}, not `{value}`")
            })
    };
    Ok(match key {
        "synchronous" => match value.to_ascii_lowercase().as_str() {
            "normal" => config.synchronous(Synchronous::Normal),
            "full" => config.synchronous(Synchronous::Full),
            _ => {
                return Err(format!(
                    "option `synchronous` is `normal` or `full`, not `{value}`"
                ));
            }
        },
        "busy_timeout_ms" => {
            config.busy_timeout(Duration::from_millis(number(1, i32::MAX as u64)?))
        }
        "readers" => config.readers(number(1, u64::from(MAX_READERS))? as u32),
        "lock_lease_ms" => config.lock_lease(Duration::from_millis(number(
            MIN_LOCK_LEASE.as_millis() as u64,
            i64::MAX as u64 / 4,
        )?)),
        other => return Err(format!("unknown option `{other}` (known: {OPTIONS})")),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn paths_are_relative_or_absolute_and_options_override_defaults() {
        let relative = SqliteConfig::from_url("sqlite://workers.sqlite").unwrap();
        assert_eq!(relative, SqliteConfig::new("workers.sqlite"));
        assert_eq!(relative.busy_timeout_duration(), Duration::from_secs(5));
        let absolute = SqliteConfig::from_url(
            "sqlite:///tmp/x/db.sqlite?synchronous=FULL&busy_timeout_ms=250&readers=2&lock_lease_ms=1500",
        )
        .unwrap();
        assert_eq!(absolute.path(), Path::new("/tmp/x/db.sqlite"));
        assert_eq!(absolute.synchronous_level(), Synchronous::Full);
        assert_eq!(absolute.busy_timeout_duration(), Duration::from_millis(250));
        assert_eq!(absolute.reader_count(), 2);
        assert_eq!(absolute.lock_lease_duration(), Duration::from_millis(1500));
        assert_eq!(
            absolute.to_url(),
            "sqlite:///tmp/x/db.sqlite?synchronous=full&busy_timeout_ms=250&readers=2&lock_lease_ms=1500"
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, expected) in [
            ("file:///x", "does not start with sqlite://"),
            ("sqlite::memory:", "memory://"),
            ("sqlite://", "path is empty"),
            ("sqlite://?readers=2", "path is empty"),
            ("sqlite://db?readers=0", "from 1 to 64"),
            ("sqlite://db?readers=x", "not `x`"),
            ("sqlite://db?busy_timeout_ms=0", "from 1"),
            ("sqlite://db?lock_lease_ms=999", "from 1000 to"),
            ("sqlite://db?synchronous=off", "`normal` or `full`"),
            ("sqlite://db?journal=wal", "unknown option `journal`"),
            ("sqlite://db?readers", "has no `=value`"),
            ("sqlite://db?readers=1&readers=2", "given twice"),
            ("sqlite://a\nb", "control characters"),
        ] {
            let message = SqliteConfig::from_url(url).unwrap_err().to_string();
            assert!(message.contains(expected), "{url}: {message}");
            assert!(message.contains("sqlite://PATH"), "{url}: {message}");
        }
    }

    #[test]
    fn builders_keep_values_in_range() {
        let config = SqliteConfig::new("x")
            .busy_timeout(Duration::ZERO)
            .readers(0)
            .lock_lease(Duration::from_millis(1));
        assert_eq!(config.busy_timeout_duration(), Duration::from_millis(1));
        assert_eq!(config.reader_count(), 1);
        assert_eq!(config.lock_lease_duration(), MIN_LOCK_LEASE);
        assert_eq!(SqliteConfig::new("x").readers(1000).reader_count(), 64);
    }

    fn configs() -> impl Strategy<Value = SqliteConfig> {
        (
            "[^?\\p{Cc}]{1,40}",
            any::<bool>(),
            1u64..100_000,
            1u32..=64,
            1000u64..10_000_000,
        )
            .prop_map(|(path, full, busy, readers, lease)| {
                SqliteConfig::new(path)
                    .synchronous(if full {
                        Synchronous::Full
                    } else {
                        Synchronous::Normal
                    })
                    .busy_timeout(Duration::from_millis(busy))
                    .readers(readers)
                    .lock_lease(Duration::from_millis(lease))
            })
    }

    proptest! {
        #[test]
        fn every_config_survives_its_url(config in configs()) {
            let url = config.to_url();
            prop_assert_eq!(SqliteConfig::from_url(&url).unwrap(), config, "{}", url);
        }

        #[test]
        fn parsing_never_panics(url in "sqlite://.{0,60}") {
            let _ = SqliteConfig::from_url(&url);
        }

        #[test]
        fn options_in_any_order_give_one_config(order in Just(["readers=3", "synchronous=full", "busy_timeout_ms=9"]).prop_shuffle()) {
            let url = format!("sqlite://db?{}", order.join("&"));
            let config = SqliteConfig::from_url(&url).unwrap();
            prop_assert_eq!(config, SqliteConfig::new("db").readers(3).synchronous(Synchronous::Full).busy_timeout(Duration::from_millis(9)));
        }
    }
}
