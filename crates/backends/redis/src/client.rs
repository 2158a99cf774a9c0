//! The shared connection: opened on first use, re-opened when it drops, every operation
//! bounded in time and retried only where retrying is safe.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use flatmachines_core::Result;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{FromRedisValue, RedisError, RedisResult, Script};
use tokio::sync::Mutex;

use crate::config::{RedisConfig, validate_namespace};
use crate::error::{OperationError, is_transient};
use crate::{
    RedisBackend, RedisLock, RedisRegistrationBackend, RedisResultBackend, RedisWorkBackend,
};

/// A handle on one Redis server and one namespace, shared by the backends opened from it.
///
/// Nothing is connected until the first operation. The connection is one multiplexed TCP (or
/// TLS) connection kept by the driver's connection manager: when it drops, the manager opens a
/// new one, and the operation that saw the drop is retried (see [`RedisConfig::retries`]).
/// Every operation this crate sends is safe to repeat — writes carry the ids or tokens that
/// make a second delivery a no-op — so a retry never applies anything twice. Every wait is
/// bounded by the configured timeouts: an operation either finishes or fails with a message
/// naming the operation, its key and the server.
///
/// `Clone` is cheap and shares the connection. The connection lives on the Tokio runtime that
/// first used it; use a client from one runtime.
#[derive(Clone)]
pub struct RedisClient {
    shared: Arc<Shared>,
    namespace: Arc<str>,
}

struct Shared {
    config: RedisConfig,
    driver: redis::Client,
    server: String,
    /// The connection manager, made on first use; forgotten when it can no longer connect on
    /// its own (failed authentication), so the next operation starts over.
    manager: Mutex<Option<ConnectionManager>>,
}

impl RedisClient {
    /// A client for `url` (see [`RedisConfig::from_url`]) with the default settings.
    pub fn open(url: &str) -> Result<Self> {
        Self::new(RedisConfig::from_url(url)?)
    }

    /// A client with `config`. Nothing is connected yet.
    pub fn new(config: RedisConfig) -> Result<Self> {
        if config.is_tls() {
            // rustls needs a process-wide provider; an earlier install (ours or the
            // application's) wins, which is what this ignores.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let driver = redis::Client::open(config.url()).map_err(|e| {
            OperationError::driver("open", config.namespace(), &config.redacted_url(), e)
        })?;
        Ok(RedisClient {
            namespace: config.namespace().into(),
            shared: Arc::new(Shared {
                server: config.redacted_url(),
                driver,
                config,
                manager: Mutex::new(None),
            }),
        })
    }

    /// A client for another namespace on the same connection.
    pub fn with_namespace(&self, namespace: &str) -> Result<Self> {
        validate_namespace(namespace)?;
        Ok(RedisClient {
            shared: Arc::clone(&self.shared),
            namespace: namespace.into(),
        })
    }

    /// The namespace: every key this client touches starts with `{namespace}:`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The configuration it was opened with (its namespace may differ, see
    /// [`with_namespace`](Self::with_namespace)).
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Checkpoint storage in this namespace.
    pub fn persistence(&self) -> RedisBackend {
        RedisBackend::new(self.clone())
    }

    /// A new execution-lock holder in this namespace, with the configured lease.
    pub fn lock(&self) -> RedisLock {
        RedisLock::new(self.clone())
    }

    /// Results in this namespace.
    pub fn results(&self) -> RedisResultBackend {
        RedisResultBackend::new(self.clone())
    }

    /// Worker registration in this namespace.
    pub fn registration(&self) -> RedisRegistrationBackend {
        RedisRegistrationBackend::new(self.clone())
    }

    /// Work pools in this namespace.
    pub fn work(&self) -> RedisWorkBackend {
        RedisWorkBackend::new(self.clone())
    }

    /// Checks that the server answers.
    pub async fn ping(&self) -> Result<()> {
        self.run("ping", "PING", |mut conn| async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// Deletes every key of this namespace and of the namespaces under it (`{ns}:…`,
    /// `{ns:…}:…`, `{ns/…}:…`) and says how many. Listing uses SCAN, so it is safe on a busy
    /// server, and keys written while it runs may survive.
    pub async fn purge(&self) -> Result<u64> {
        let pattern = format!("{{{}[}}:/]*", self.namespace);
        let mut deleted = 0;
        for batch in self.scan(&pattern, "purge").await?.chunks(500) {
            deleted += self
                .run("purge", &pattern, |mut conn| async move {
                    redis::cmd("UNLINK")
                        .arg(batch)
                        .query_async::<u64>(&mut conn)
                        .await
                })
                .await?;
        }
        Ok(deleted)
    }

    /// `{namespace}:{kind}:{rest}`. The braces make the namespace a hash tag, so every key of a
    /// namespace lives in one cluster slot and multi-key scripts stay legal; a kind never holds
    /// `:`, so different kinds never produce the same key.
    pub(crate) fn key(&self, kind: &str, rest: &str) -> String {
        format!("{{{}}}:{kind}:{rest}", self.namespace)
    }

    /// The redacted URL, for messages.
    pub(crate) fn server(&self) -> &str {
        &self.shared.server
    }

    async fn connection(&self) -> RedisResult<ConnectionManager> {
        let config = &self.shared.config;
        let connect = async {
            let settings = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connect_timeout()))
                .set_response_timeout(Some(config.response_timeout()))
                // Reconnecting in the background is cheap to retry once; the operation's own
                // retries decide how long to keep trying.
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(Duration::from_millis(500));
            let opening = ConnectionManager::new_with_config(self.shared.driver.clone(), settings);
            match tokio::time::timeout(config.connect_timeout() * 2, opening).await {
                Ok(result) => result,
                Err(_) => Err(RedisError::from(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was not established in time",
                ))),
            }
        };
        let mut manager = self.shared.manager.lock().await;
        if let Some(manager) = manager.as_ref() {
            return Ok(manager.clone());
        }
        let connected = connect.await?;
        *manager = Some(connected.clone());
        Ok(connected)
    }

    /// Drops the connection manager. It reconnects by itself after I/O errors, but keeps
    /// answering with a failed authentication forever; a fresh one tries again.
    async fn forget_connection(&self) {
        *self.shared.manager.lock().await = None;
    }

    /// Runs `call` on the connection, retrying it after a dropped connection or a transient
    /// server error up to the configured number of times. `call` must be safe to repeat.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        subject: &str,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut attempt = 0;
        loop {
            let result = match self.connection().await {
                Ok(conn) => call(conn).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if is_transient(&e) && attempt < self.shared.config.retries() => {
                    attempt += 1;
                    tracing::debug!(operation, subject, attempt, error = %e, "retrying a Redis operation");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    if needs_new_connection(&e) {
                        self.forget_connection().await;
                    }
                    return Err(OperationError::driver(operation, subject, self.server(), e).into());
                }
            }
        }
    }

    /// Runs a Lua script with `keys` and `args` (see [`run`](Self::run)).
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        operation: &'static str,
        subject: &str,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T> {
        self.run(operation, subject, |mut conn| {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(*key);
            }
            for arg in args {
                invocation.arg(*arg);
            }
            async move { invocation.invoke_async::<T>(&mut conn).await }
        })
        .await
    }

    /// Every key matching `pattern`, by SCAN (never KEYS). A dropped connection resumes from
    /// the last cursor: SCAN's cursor lives in the client, not the server.
    pub(crate) async fn scan(&self, pattern: &str, operation: &'static str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .run(operation, pattern, |mut conn| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key more than once.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// A new connection in subscriber mode, bounded by the connect timeout.
    pub(crate) async fn subscriber(&self) -> RedisResult<PubSub> {
        let timeout = self.shared.config.connect_timeout();
        match tokio::time::timeout(timeout, self.shared.driver.get_async_pubsub()).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(io::Error::new(
                io::ErrorKind::TimedOut,
                "the subscriber connection was not established in time",
            ))),
        }
    }
}

/// Whether `error` says the connection was refused its login (a password changed, a user
/// disabled): the connection manager would keep the failed connection, so a new one is made.
fn needs_new_connection(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH"))
}

/// 50 ms, 100 ms, 200 ms, … up to 1 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.saturating_sub(1).min(5)))
        .min(Duration::from_secs(1))
}

impl fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClient")
            .field("server", &self.shared.server)
            .field("namespace", &self.namespace)
            .field(
                "connected",
                &self.shared.manager.try_lock().is_ok_and(|m| m.is_some()),
            )
            .finish()
    }
}
