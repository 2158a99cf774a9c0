//! The store: a connection pool on one schema, from which every backend of this crate opens.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use flatmachines_core::Result;
use futures::Stream;
use tokio::sync::OnceCell;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls};

use crate::config::PostgresConfig;
use crate::error::PgError;
use crate::{
    PostgresBackend, PostgresLock, PostgresRegistrationBackend, PostgresResultBackend,
    PostgresWorkBackend, schema,
};

/// Runs `$body` (an expression using `$client`, a pooled `&deadpool_postgres::Client`, and
/// evaluating to `Result<T, tokio_postgres::Error>`) on a ready schema within the query
/// timeout, and evaluates to `flatmachines_core::Result<T>`. When the connection drops (or does not
/// answer) it is thrown away and the body runs again on another, up to the configured
/// retries: every body given here must be safe to repeat. `$what` names the operation, its
/// key and its table for errors.
///
/// A macro rather than a function taking a closure: the body borrows the caller's
/// arguments, which a generic async closure cannot do inside an `async_trait` method.
macro_rules! with_client {
    ($store:expr, $what:expr, |$client:ident| $body:expr) => {{
        let store: &$crate::store::PostgresStore = &$store;
        let what: &str = &$what;
        let mut attempt = 0;
        loop {
            let outcome = match store.checkout().await {
                Ok(pooled) => {
                    let answer = {
                        let $client: &deadpool_postgres::Client = &pooled;
                        let timeout = store.config().query_timeout();
                        tokio::time::timeout(timeout, async { $body }).await
                    };
                    store.settle(what, pooled, answer)
                }
                Err(error) => Err(error),
            };
            match outcome {
                Err(error) if store.retry(&error, &mut attempt).await => {}
                other => break other.map_err(flatmachines_core::Error::from),
            }
        }
    }};
}
pub(crate) use with_client;

/// The messages of a connection that is not pooled (notifications, notices), ending when the
/// connection does. Polling it is what drives the connection.
pub(crate) type Messages =
    Pin<Box<dyn Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send>>;

/// A connection pool on one PostgreSQL schema: the root every backend of this crate is
/// opened from.
///
/// Opening is lazy: [`open`](Self::open) and [`new`](Self::new) check the configuration but
/// connect to nothing. The first statement of any backend connects, then brings the schema
/// to [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) (with `migrate=true`, the default) or checks
/// that it is there (with `migrate=false`); [`connect`](Self::connect) does that at once.
///
/// ```no_run
/// use flatmachines_postgres::PostgresStore;
///
/// # async fn demo() -> flatmachines_core::Result<()> {
/// let store = PostgresStore::connect_url("postgres://postgres@127.0.0.1:5432/test?schema=app").await?;
/// let checkpoints = store.persistence();
/// let lock = store.lock();
/// let jobs = store.work();
/// # Ok(()) }
/// ```
///
/// Clones share the pool. Checkpoints, results, registration and work share its
/// connections; each [`PostgresLock`] holds one connection of its own (its advisory locks
/// live in that session), and each [`PostgresResultBackend`] opens one for `LISTEN` when it
/// first blocks.
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: PostgresConfig,
    pool: Pool,
    ready: OnceCell<()>,
    tls: Tls,
}

#[derive(Clone)]
enum Tls {
    Plain,
    #[cfg(feature = "tls")]
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl PostgresStore {
    /// A store for `url` (see [`PostgresConfig::from_url`]); nothing is connected yet.
    pub fn open(url: &str) -> Result<Self> {
        Self::new(PostgresConfig::from_url(url)?)
    }

    /// A store for `config`; nothing is connected yet.
    pub fn new(config: PostgresConfig) -> Result<Self> {
        let tls = tls(&config)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Tls::Plain => Manager::from_config(config.driver(), NoTls, manager_config),
            #[cfg(feature = "tls")]
            Tls::Rustls(connector) => {
                Manager::from_config(config.driver(), connector.clone(), manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size())
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(config.connect_timeout()))
            .recycle_timeout(Some(config.connect_timeout()))
            // Waiting for a free connection is bounded like a statement: a pool exhausted for
            // that long is as stuck as a server that does not answer.
            .wait_timeout(Some(config.query_timeout()))
            .build()
            .map_err(|e| {
                PgError::config(
                    format!("cannot build the connection pool: {e}"),
                    "this is a bug in flatmachines-postgres",
                )
            })?;
        Ok(PostgresStore {
            shared: Arc::new(Shared {
                config,
                pool,
                ready: OnceCell::new(),
                tls,
            }),
        })
    }

    /// The store of this process for `config`'s server, database, schema and application
    /// name: the first call creates it (as [`new`](Self::new) does) and later calls return
    /// it while any clone of it is alive, so every backend a process opens on one schema
    /// shares one pool and one schema check. Settings that differ between such calls (pool
    /// size, timeouts) are those of the first.
    pub fn open_shared(config: PostgresConfig) -> Result<Self> {
        static SHARED: LazyLock<Mutex<HashMap<String, Weak<Shared>>>> =
            LazyLock::new(Mutex::default);
        let key = format!(
            "{}\n{}\n{}",
            config.url(),
            config.schema(),
            config.application_name()
        );
        // Entries are only inserted or pruned, so a poisoned map is still consistent.
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        shared.retain(|_, store| store.strong_count() > 0);
        if let Some(store) = shared.get(&key).and_then(Weak::upgrade) {
            return Ok(PostgresStore { shared: store });
        }
        let store = Self::new(config)?;
        shared.insert(key, Arc::downgrade(&store.shared));
        Ok(store)
    }

    /// Opens a store for `config` and gets its schema ready (migrated or checked) before
    /// returning, so a wrong URL or a missing schema shows here.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        let store = Self::new(config)?;
        store.ready().await?;
        Ok(store)
    }

    /// [`connect`](Self::connect) from a URL.
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::connect(PostgresConfig::from_url(url)?).await
    }

    /// The configuration.
    pub fn config(&self) -> &PostgresConfig {
        &self.shared.config
    }

    /// Checkpoint storage in this store's schema.
    pub fn persistence(&self) -> PostgresBackend {
        PostgresBackend::new(self.clone())
    }

    /// A new execution-lock holder: each holder has a session of its own.
    pub fn lock(&self) -> PostgresLock {
        PostgresLock::new(self.clone())
    }

    /// Results whose blocking reads wait on `LISTEN`.
    pub fn results(&self) -> PostgresResultBackend {
        PostgresResultBackend::new(self.clone())
    }

    /// Worker registration.
    pub fn registration(&self) -> PostgresRegistrationBackend {
        PostgresRegistrationBackend::new(self.clone())
    }

    /// Work pools.
    pub fn work(&self) -> PostgresWorkBackend {
        PostgresWorkBackend::new(self.clone())
    }

    /// Connects (if needed) and asks the server for a trivial answer.
    pub async fn ping(&self) -> Result<()> {
        with_client!(self, "ping", |client| client
            .simple_query("SELECT 1")
            .await
            .map(drop))
    }

    /// Applies the migrations this build has and the schema lacks, whatever the `migrate`
    /// setting; returns the versions it applied (none when the schema was up to date).
    pub async fn migrate(&self) -> Result<Vec<i32>> {
        let mut client = self.pooled().await?;
        Ok(schema::migrate(&mut client, self.schema()).await?)
    }

    /// The version the schema is at: 0 when it has no tables of this crate.
    pub async fn schema_version(&self) -> Result<i32> {
        let client = self.pooled().await?;
        Ok(schema::version(&client, self.schema()).await?)
    }

    /// Drops the schema with every table and value in it. For tests and teardown; the store
    /// migrates it again on its next first use only if reopened.
    pub async fn drop_schema(&self) -> Result<()> {
        let sql = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            schema::quoted(self.schema())
        );
        let client = self.pooled().await?;
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| PgError::query(&format!("dropping schema `{}`", self.schema()), &e))?;
        Ok(())
    }

    pub(crate) fn schema(&self) -> &str {
        self.shared.config.schema()
    }

    /// `"schema".table`, for SQL.
    pub(crate) fn table(&self, table: &str) -> String {
        format!("{}.{table}", schema::quoted(self.schema()))
    }

    /// Migrates or checks the schema, once per store (a failure is tried again next time).
    pub(crate) async fn ready(&self) -> Result<(), PgError> {
        self.shared
            .ready
            .get_or_try_init(|| async {
                let mut client = self.pooled().await?;
                if self.shared.config.migrate() {
                    schema::migrate(&mut client, self.schema()).await.map(drop)
                } else {
                    schema::verify(&client, self.schema()).await
                }
            })
            .await
            .map(drop)
    }

    /// A pooled connection, without the schema check.
    async fn pooled(&self) -> Result<Object, PgError> {
        self.shared.pool.get().await.map_err(|e| self.pool_error(e))
    }

    fn pool_error(&self, error: PoolError) -> PgError {
        let url = self.shared.config.redacted_url();
        let timeout = self.shared.config.connect_timeout();
        match error {
            PoolError::Backend(e) => PgError::connect(&url, &crate::error::describe(&e)),
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => PgError::connect(
                &url,
                &format!(
                    "all {} pooled connections stayed busy for {:?}",
                    self.shared.config.pool_size(),
                    self.shared.config.query_timeout()
                ),
            ),
            PoolError::Timeout(_) => PgError::connect(
                &url,
                &format!("no answer within the connect timeout of {timeout:?}"),
            ),
            other => PgError::connect(&url, &other.to_string()),
        }
    }

    /// A pooled connection of a ready schema: the first step of [`with_client!`].
    pub(crate) async fn checkout(&self) -> Result<Object, PgError> {
        self.ready().await?;
        self.pooled().await
    }

    /// The outcome of one statement on `client`: its value, or an error naming `what`. A
    /// connection that dropped (or did not answer) is thrown away, not returned to the pool.
    pub(crate) fn settle<T>(
        &self,
        what: &str,
        client: Object,
        answer: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
    ) -> Result<T, PgError> {
        let error = match answer {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => PgError::query(what, &error),
            Err(_) => PgError::timed_out(what, self.shared.config.query_timeout()),
        };
        if error.dropped() {
            // The session may be half-dead; the pool must not hand it out again.
            drop(Object::take(client));
        }
        Err(error)
    }

    /// Whether to run a failed statement again: only when its connection dropped, and
    /// `attempt` is below the configured retries. Waits before saying yes.
    pub(crate) async fn retry(&self, error: &PgError, attempt: &mut u32) -> bool {
        if !error.dropped() || *attempt >= self.shared.config.retries() {
            return false;
        }
        *attempt += 1;
        tracing::debug!(target: "flatmachines::postgres", %error, attempt = *attempt, "retrying on a new connection");
        tokio::time::sleep(backoff(*attempt)).await;
        true
    }

    /// A connection outside the pool, for sessions that hold state (advisory locks,
    /// `LISTEN`), with its messages. It closes when both the client and the messages are
    /// dropped.
    pub(crate) async fn dedicated(&self) -> Result<(Client, Messages), PgError> {
        let config = self.shared.config.driver();
        let connect = async {
            match &self.shared.tls {
                Tls::Plain => config
                    .connect(NoTls)
                    .await
                    .map(|(c, conn)| (c, messages(conn))),
                #[cfg(feature = "tls")]
                Tls::Rustls(connector) => config
                    .connect(connector.clone())
                    .await
                    .map(|(c, conn)| (c, messages(conn))),
            }
        };
        let url = self.shared.config.redacted_url();
        let timeout = self.shared.config.connect_timeout();
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(connected)) => Ok(connected),
            Ok(Err(e)) => Err(PgError::connect(&url, &crate::error::describe(&e))),
            Err(_) => Err(PgError::connect(
                &url,
                &format!("no answer within the connect timeout of {timeout:?}"),
            )),
        }
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.shared.pool.status();
        f.debug_struct("PostgresStore")
            .field("config", &self.shared.config)
            .field("connections", &status.size)
            .field("idle", &status.available)
            .finish()
    }
}

fn messages<S, T>(mut connection: Connection<S, T>) -> Messages
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(futures::stream::poll_fn(move |cx| {
        connection.poll_message(cx)
    }))
}

/// 50 ms, 100 ms, 200 ms, … up to 1.6 s between retries.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.saturating_sub(1).min(5))
}

fn tls(config: &PostgresConfig) -> Result<Tls> {
    if !config.is_tls() {
        return Ok(Tls::Plain);
    }
    #[cfg(feature = "tls")]
    {
        Ok(Tls::Rustls(crate::tls::connector(config.root_cert())?))
    }
    #[cfg(not(feature = "tls"))]
    {
        Err(PgError::config(
            format!(
                "`{}` asks for TLS (sslmode=require), but this build has no TLS support",
                config.redacted_url()
            ),
            "build flatmachines-postgres with its `tls` feature (the facade's `postgres-tls`)",
        )
        .into())
    }
}
