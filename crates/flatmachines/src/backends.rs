//! Backend families, opening them from URLs, and the provider that lets configs name them.
//!
//! | URL | backend | lock |
//! |---|---|---|
//! | `memory://` | a new in-memory store | none |
//! | `file://DIR` (feature `local`) | files under `DIR`, fsync-durable | `flock` on files under `DIR/.locks` |
//! | `redis://HOST:PORT/DB`, `rediss://…` (feature `redis`) | Redis strings under the URL's `namespace` (default `flatmachines`) | `SET NX PX` keys with a renewed lease |
//! | `postgres://…`, `postgresql://…` (feature `postgres`) | rows of tables in the URL's `schema` (default `flatmachines`), created at first use | a session-level advisory lock, freed when the session ends |
//! | `s3://BUCKET/PREFIX` (feature `s3`) | one S3 object per key under `PREFIX`; endpoint, region and credentials from the AWS chain (`AWS_ENDPOINT_URL`, …) | none: S3 has no lock |
//!
//! Configs name the Redis family as `redis` for persistence, locking, results, registration
//! and work, each chosen on its own in `settings.backends`. Its server is
//! `settings.backends.redis_url`, else the `FLATMACHINES_REDIS_URL` environment variable, else
//! `redis://127.0.0.1:6379/0`; `settings.backends.redis_namespace` overrides the namespace.
//!
//! `sqlite://PATH[?options]` (feature `sqlite`) keeps checkpoints and leased execution locks
//! in one SQLite database file (WAL mode), which results, worker registration and work pools
//! share. Configs name the family as `sqlite` for persistence, locking, results, registration
//! and work; the
//! file is `settings.backends.sqlite_path` (a path or a `sqlite://` URL), else
//! `workers.sqlite` in the working directory.
//!
//! Configs name the PostgreSQL family as `postgres` for persistence, locking, results,
//! registration and work. Its server is `settings.backends.postgres_url`, else the
//! `FLATMACHINES_POSTGRES_URL` environment variable, else
//! `postgres://postgres@127.0.0.1:5432/test`; `settings.backends.postgres_schema` overrides
//! the schema. The backends of one server and schema share one connection pool.
//!
//! Configs name the S3 family as `s3` for persistence only. Its bucket is
//! `settings.backends.s3_bucket` under `s3_prefix` (with `s3_region` and `s3_endpoint` when
//! given), else the store of the `FLATMACHINES_S3_URL` environment variable. S3 has no
//! execution lock: `locking: s3` is refused; without `settings.backends.locking` a run has
//! none, so run one runner per execution or take the lock from `redis` or `postgres`.

use std::sync::Arc;

use flatmachines_core::{
    ExecutionLock, PersistenceBackend, RegistrationBackend, ResultBackend, WorkBackend,
};
use flatmachines_engine::{BackendProvider, BackendRequest};

#[cfg(feature = "postgres")]
mod postgres_store;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "s3")]
mod s3_store;
#[cfg(feature = "sqlite")]
mod sqlite_store;

/// The server URL a config's backend names: its settings option, else the environment
/// variable (when set and not empty), else the local default.
#[cfg(any(feature = "redis", feature = "postgres"))]
fn configured_url(request: &BackendRequest<'_>, option: &str, env: &str, default: &str) -> String {
    request
        .option(option)
        .map(str::to_owned)
        .unwrap_or_else(|| env_url(env, default))
}

/// The URL in environment variable `env` when set and not empty, else `default`.
#[cfg(any(feature = "redis", feature = "postgres"))]
fn env_url(env: &str, default: &str) -> String {
    std::env::var(env)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The in-memory backends.
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory {
    pub use flatmachines_memory::*;
}

/// The Redis backends.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    pub use flatmachines_redis::*;
}

/// The SQLite backends.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite {
    pub use flatmachines_sqlite::*;
}

/// The PostgreSQL backends.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres {
    pub use flatmachines_postgres::*;
}

/// The S3 checkpoint store.
#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub mod s3 {
    pub use flatmachines_s3::*;
}

/// The local-file backends.
#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub mod local {
    pub use flatmachines_local::*;
}

/// A backend URL could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL has no `scheme://`.
    #[error(
        "`{url}` is not a backend URL (expected scheme://…, for example file://.checkpoints or memory://)"
    )]
    NotAUrl {
        /// The URL given.
        url: String,
    },
    /// The scheme names a backend family this build does not include.
    #[error("the `{scheme}` backend is not available in this build (available: {available})")]
    Unavailable {
        /// The scheme.
        scheme: String,
        /// The schemes this build can open.
        available: String,
    },
    /// The store cannot hold worker pools that several processes share.
    #[error("`{url}` {reason}; use sqlite://, redis:// or postgres://")]
    NotShared {
        /// The URL given.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// The backend could not be opened.
    #[error("cannot open `{url}`: {source}")]
    Open {
        /// The URL given.
        url: String,
        /// Why.
        #[source]
        source: flatmachines_core::Error,
    },
}

/// The URL schemes this build can open.
pub fn available_schemes() -> Vec<&'static str> {
    let mut schemes = Vec::new();
    if cfg!(feature = "memory") {
        schemes.push("memory");
    }
    if cfg!(feature = "local") {
        schemes.push("file");
    }
    if cfg!(feature = "redis") {
        schemes.extend(["redis", "rediss"]);
    }
    if cfg!(feature = "sqlite") {
        schemes.push("sqlite");
    }
    if cfg!(feature = "postgres") {
        schemes.extend(["postgres", "postgresql"]);
    }
    if cfg!(feature = "s3") {
        schemes.push("s3");
    }
    schemes
}

/// A checkpoint store, the execution lock that goes with it, and the other backends of the
/// same family when it has them: where launched machines leave their results, and the worker
/// registry and work pools of distributed workers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Store {
    /// Where checkpoints go.
    pub persistence: Arc<dyn PersistenceBackend>,
    /// The lock for executions checkpointed there.
    pub lock: Arc<dyn ExecutionLock>,
    /// Results shared by every process using this store (`None`: the family has none).
    pub results: Option<Arc<dyn ResultBackend>>,
    /// Worker registration (`None`: the family has none).
    pub registration: Option<Arc<dyn RegistrationBackend>>,
    /// Work pools (`None`: the family has none).
    pub work: Option<Arc<dyn WorkBackend>>,
}

/// The worker registry and work pools of one store.
pub type WorkerBackends = (Arc<dyn RegistrationBackend>, Arc<dyn WorkBackend>);

impl Store {
    /// The worker registry and work pools of this store, opened from `url`, when processes
    /// can share them: `memory://` and stores without them (`file://`, `s3://`) are refused.
    pub fn shared_workers(&self, url: &str) -> Result<WorkerBackends, OpenError> {
        let refuse = |reason| OpenError::NotShared {
            url: url.to_owned(),
            reason,
        };
        if url.starts_with("memory:") {
            return Err(refuse(
                "lives and dies with one process, so it cannot hold a pool that workers share",
            ));
        }
        match (&self.registration, &self.work) {
            (Some(registration), Some(work)) => Ok((Arc::clone(registration), Arc::clone(work))),
            _ => Err(refuse("has no worker registry or work pools")),
        }
    }

    /// A store with only checkpoints and a lock.
    pub fn new(persistence: Arc<dyn PersistenceBackend>, lock: Arc<dyn ExecutionLock>) -> Self {
        Store {
            persistence,
            lock,
            results: None,
            registration: None,
            work: None,
        }
    }
}

fn split(url: &str) -> Result<(&str, &str), OpenError> {
    url.split_once("://").ok_or_else(|| OpenError::NotAUrl {
        url: url.to_owned(),
    })
}

/// Opens a checkpoint store and its lock from a URL (see the module table).
pub fn open_store(url: &str) -> Result<Store, OpenError> {
    let (scheme, rest) = split(url)?;
    match scheme {
        #[cfg(feature = "memory")]
        "memory" => Ok(Store {
            results: Some(Arc::new(memory::MemoryResultBackend::new())),
            registration: Some(Arc::new(memory::MemoryRegistrationBackend::new())),
            work: Some(Arc::new(memory::MemoryWorkBackend::new())),
            ..Store::new(
                Arc::new(memory::MemoryBackend::new()),
                Arc::new(memory::NoOpLock),
            )
        }),
        #[cfg(feature = "local")]
        "file" => {
            let dir = local_dir(url, rest)?;
            let open_error = |source| OpenError::Open {
                url: url.to_owned(),
                source,
            };
            Ok(Store::new(
                Arc::new(local::LocalFileBackend::new(&dir).map_err(open_error)?),
                Arc::new(local::LocalFileLock::new(dir.join(".locks")).map_err(open_error)?),
            ))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" => redis_store::open_store(url),
        #[cfg(feature = "sqlite")]
        "sqlite" => sqlite_store::open_store(url),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => postgres_store::open_store(url),
        #[cfg(feature = "s3")]
        "s3" => s3_store::open_store(url),
        other => {
            let _ = rest;
            Err(OpenError::Unavailable {
                scheme: other.to_owned(),
                available: available_schemes().join(", "),
            })
        }
    }
}

/// Opens a checkpoint store from a URL: `memory://` (a new, empty store) or `file://DIR`.
pub fn open_persistence(url: &str) -> Result<Arc<dyn PersistenceBackend>, OpenError> {
    open_store(url).map(|store| store.persistence)
}

/// Opens a checkpoint store to read: like [`open_persistence`], except that a `file://DIR`
/// must already exist and is not created (nor its lock directory), so looking at a store
/// needs no write access and a mistyped path is an error rather than a new empty store.
pub fn open_persistence_to_read(url: &str) -> Result<Arc<dyn PersistenceBackend>, OpenError> {
    #[cfg(feature = "local")]
    if let ("file", rest) = split(url)? {
        let dir = local_dir(url, rest)?;
        return local::LocalFileBackend::open_existing(&dir)
            .map(|backend| Arc::new(backend) as Arc<dyn PersistenceBackend>)
            .map_err(|source| OpenError::Open {
                url: url.to_owned(),
                source,
            });
    }
    open_persistence(url)
}

#[cfg(feature = "local")]
fn local_dir(url: &str, rest: &str) -> Result<std::path::PathBuf, OpenError> {
    if rest.is_empty() {
        return Err(OpenError::NotAUrl {
            url: url.to_owned(),
        });
    }
    Ok(std::path::PathBuf::from(rest))
}

/// Opens the backends configs name (`persistence: {backend: local}`, `settings.backends`):
/// `local` checkpoints in `.checkpoints/` and locks in `.locks/` under the working directory,
/// as the reference does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Provider;

impl BackendProvider for Provider {
    fn persistence(
        &self,
        request: &BackendRequest<'_>,
    ) -> Option<Result<Arc<dyn PersistenceBackend>, String>> {
        match request.name {
            #[cfg(feature = "local")]
            "local" => Some(
                local::LocalFileBackend::new(local::LocalFileBackend::DEFAULT_DIR)
                    .map(|b| Arc::new(b) as Arc<dyn PersistenceBackend>)
                    .map_err(|e| e.to_string()),
            ),
            #[cfg(feature = "redis")]
            "redis" => Some(
                redis_store::client(request)
                    .map(|c| Arc::new(c.persistence()) as Arc<dyn PersistenceBackend>),
            ),
            #[cfg(feature = "sqlite")]
            "sqlite" => Some(
                sqlite_store::database(request)
                    .map(|d| Arc::new(d.persistence()) as Arc<dyn PersistenceBackend>),
            ),
            #[cfg(feature = "postgres")]
            "postgres" => Some(
                postgres_store::store(request)
                    .map(|s| Arc::new(s.persistence()) as Arc<dyn PersistenceBackend>),
            ),
            #[cfg(feature = "s3")]
            "s3" => {
                Some(s3_store::backend(request).map(|b| Arc::new(b) as Arc<dyn PersistenceBackend>))
            }
            _ => None,
        }
    }

    fn lock(&self, request: &BackendRequest<'_>) -> Option<Result<Arc<dyn ExecutionLock>, String>> {
        match request.name {
            #[cfg(feature = "local")]
            "local" => Some(
                local::LocalFileLock::new(local::LocalFileLock::DEFAULT_DIR)
                    .map(|l| Arc::new(l) as Arc<dyn ExecutionLock>)
                    .map_err(|e| e.to_string()),
            ),
            #[cfg(feature = "redis")]
            "redis" => Some(
                redis_store::client(request).map(|c| Arc::new(c.lock()) as Arc<dyn ExecutionLock>),
            ),
            #[cfg(feature = "sqlite")]
            "sqlite" => Some(
                sqlite_store::database(request)
                    .map(|d| Arc::new(d.lock()) as Arc<dyn ExecutionLock>),
            ),
            #[cfg(feature = "postgres")]
            "postgres" => Some(
                postgres_store::store(request)
                    .map(|s| Arc::new(s.lock()) as Arc<dyn ExecutionLock>),
            ),
            #[cfg(feature = "s3")]
            "s3" => Some(Err(s3_store::no_lock())),
            _ => None,
        }
    }

    fn results(
        &self,
        request: &BackendRequest<'_>,
    ) -> Option<Result<Arc<dyn flatmachines_core::ResultBackend>, String>> {
        match request.name {
            #[cfg(feature = "redis")]
            "redis" => Some(
                redis_store::client(request)
                    .map(|c| Arc::new(c.results()) as Arc<dyn flatmachines_core::ResultBackend>),
            ),
            #[cfg(feature = "postgres")]
            "postgres" => Some(
                postgres_store::store(request)
                    .map(|s| Arc::new(s.results()) as Arc<dyn flatmachines_core::ResultBackend>),
            ),
            #[cfg(feature = "sqlite")]
            "sqlite" => Some(
                sqlite_store::database(request)
                    .map(|d| Arc::new(d.results()) as Arc<dyn flatmachines_core::ResultBackend>),
            ),
            _ => None,
        }
    }

    fn registration(
        &self,
        request: &BackendRequest<'_>,
    ) -> Option<Result<Arc<dyn flatmachines_core::RegistrationBackend>, String>> {
        match request.name {
            #[cfg(feature = "redis")]
            "redis" => Some(redis_store::client(request).map(|c| {
                Arc::new(c.registration()) as Arc<dyn flatmachines_core::RegistrationBackend>
            })),
            #[cfg(feature = "sqlite")]
            "sqlite" => Some(sqlite_store::database(request).map(|d| {
                Arc::new(d.registration()) as Arc<dyn flatmachines_core::RegistrationBackend>
            })),
            #[cfg(feature = "postgres")]
            "postgres" => Some(postgres_store::store(request).map(|s| {
                Arc::new(s.registration()) as Arc<dyn flatmachines_core::RegistrationBackend>
            })),
            _ => None,
        }
    }

    fn work(
        &self,
        request: &BackendRequest<'_>,
    ) -> Option<Result<Arc<dyn flatmachines_core::WorkBackend>, String>> {
        match request.name {
            #[cfg(feature = "redis")]
            "redis" => Some(
                redis_store::client(request)
                    .map(|c| Arc::new(c.work()) as Arc<dyn flatmachines_core::WorkBackend>),
            ),
            #[cfg(feature = "sqlite")]
            "sqlite" => Some(
                sqlite_store::database(request)
                    .map(|d| Arc::new(d.work()) as Arc<dyn flatmachines_core::WorkBackend>),
            ),
            #[cfg(feature = "postgres")]
            "postgres" => Some(
                postgres_store::store(request)
                    .map(|s| Arc::new(s.work()) as Arc<dyn flatmachines_core::WorkBackend>),
            ),
            _ => None,
        }
    }

    fn results_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if cfg!(feature = "redis") {
            names.push("redis");
        }
        if cfg!(feature = "postgres") {
            names.push("postgres");
        }
        if cfg!(feature = "sqlite") {
            names.push("sqlite");
        }
        names
    }

    fn persistence_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if cfg!(feature = "local") {
            names.push("local");
        }
        if cfg!(feature = "redis") {
            names.push("redis");
        }
        if cfg!(feature = "sqlite") {
            names.push("sqlite");
        }
        if cfg!(feature = "postgres") {
            names.push("postgres");
        }
        if cfg!(feature = "s3") {
            names.push("s3");
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_what_this_build_has_and_names_what_is_missing() {
        assert!(open_persistence("memory://").is_ok());
        let error = open_persistence("etcd://127.0.0.1:2379")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error,
            Some(format!(
                "the `etcd` backend is not available in this build (available: {})",
                available_schemes().join(", ")
            ))
        );
        assert!(matches!(
            open_persistence("memory"),
            Err(OpenError::NotAUrl { .. })
        ));
    }

    #[cfg(feature = "local")]
    #[test]
    fn file_urls_open_a_directory_with_its_locks() {
        let dir = std::env::temp_dir().join(format!("fm-store-{}", std::process::id()));
        let store = open_store(&format!("file://{}", dir.display())).unwrap();
        assert!(dir.is_dir());
        assert!(dir.join(".locks").is_dir());
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_urls_open_lazily_and_hide_passwords() {
        // Nothing connects until the first use, so an unreachable server still opens.
        assert!(open_store("redis://127.0.0.1:1/0?namespace=t").is_ok());
        assert!(open_store("rediss://127.0.0.1:1/0").is_ok());
        let error = open_store("redis://:hunter2@127.0.0.1:notaport/0")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("not a Redis URL"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let names = Provider.persistence_names();
        assert!(names.contains(&"redis"), "{names:?}");
        assert!(Provider.results_names().contains(&"redis"));
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn sqlite_urls_and_config_names_share_one_database_file() {
        use flatmachines_core::config::BackendConfig;

        let dir = std::env::temp_dir().join(format!("fm-sqlite-store-{}", std::process::id()));
        let path = dir.join("fm.sqlite");
        let url = format!("sqlite://{}?synchronous=full", path.display());
        let store = open_store(&url).unwrap();
        assert!(dir.is_dir(), "the file's directory is created on open");
        store
            .persistence
            .save(
                "exec-1/latest",
                b"exec-1/step_000001_execute.json".to_vec().into(),
            )
            .await
            .unwrap();
        assert!(store.lock.acquire("exec-1").await.unwrap());
        let again = open_store(&url).unwrap();
        assert!(!again.lock.acquire("exec-1").await.unwrap());
        let settings = BackendConfig {
            sqlite_path: Some(path.display().to_string()),
            ..BackendConfig::default()
        };
        let request = BackendRequest {
            settings: Some(&settings),
            ..BackendRequest::named("sqlite")
        };
        let persistence = Provider.persistence(&request).unwrap().unwrap();
        assert!(persistence.load("exec-1/latest").await.unwrap().is_some());
        let pool = Provider.work(&request).unwrap().unwrap().pool("jobs");
        pool.push(serde_json::json!(1), Default::default())
            .await
            .unwrap();
        assert!(Provider.registration(&request).unwrap().is_ok());
        assert!(Provider.persistence_names().contains(&"sqlite"));
        let error = open_store("sqlite://db?bogus=1").err().unwrap().to_string();
        assert!(error.contains("unknown option `bogus`"), "{error}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_urls_open_lazily_and_hide_passwords() {
        // Nothing connects until the first use, so an unreachable server still opens.
        assert!(open_store("postgres://postgres@127.0.0.1:1/test?schema=t").is_ok());
        assert!(open_store("postgresql://127.0.0.1:1/test").is_ok());
        let error = open_store("postgres://u:hunter2@127.0.0.1/db?bogus=1")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("not a PostgreSQL URL"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(available_schemes().contains(&"postgresql"));
        assert!(Provider.persistence_names().contains(&"postgres"));
        assert!(Provider.results_names().contains(&"postgres"));
        let settings = flatmachines_core::config::BackendConfig::default();
        let request = BackendRequest {
            settings: Some(&settings),
            ..BackendRequest::named("postgres")
        };
        for opened in [
            Provider.work(&request).map(|r| r.map(drop)),
            Provider.registration(&request).map(|r| r.map(drop)),
            Provider.lock(&request).map(|r| r.map(drop)),
        ] {
            assert!(matches!(opened, Some(Ok(()))));
        }
    }
}
