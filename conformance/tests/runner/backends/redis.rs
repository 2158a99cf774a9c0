//! The Redis family: every suite, in a namespace of its own under the URL's server.
//!
//! `FLATMACHINES_TEST_REDIS_URL` names the server (default `redis://127.0.0.1:6379/0`). A run
//! works under `{namespace}:conformance-{random}` (the URL's `namespace` parameter, else
//! `flatmachines`), each case in a namespace below that, and deletes every key of the run when
//! the last factory of the run goes.

use std::sync::Arc;
use std::time::Duration;

use flatmachines_conformance::process::{HelperBackends, ProcessLauncher};
use flatmachines_conformance::{
    Capabilities, LockFactory, PersistenceFactory, RegistrationFactory, ResultFactory, WorkFactory,
};
use flatmachines_core::{
    ExecutionLock, PersistenceBackend, RegistrationBackend, ResultBackend, WorkBackend,
};
use flatmachines_redis::{DEFAULT_URL, RedisClient, RedisConfig};

use super::{Backend, HELPER_BACKEND_ENV, HELPER_URL_ENV};

/// Short, so the lease-expiry case is quick; renewals still run three times per lease.
const LEASE: Duration = Duration::from_secs(2);

/// Opens the family for one run, after checking that the server answers.
pub(super) fn open(url: Option<&str>) -> Result<Backend, String> {
    let url = url.unwrap_or(DEFAULT_URL);
    let base = RedisConfig::from_url(url).map_err(|e| e.to_string())?;
    let root = format!(
        "{}:conformance-{}",
        base.namespace(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let config = base
        .with_namespace(root.clone())
        .map_err(|e| e.to_string())?
        .with_lease(LEASE)
        .with_connect_timeout(Duration::from_secs(2));
    reachable(&config)?;
    let purge = Arc::new(Purge(config.clone()));
    let separator = if config.url().contains('?') { '&' } else { '?' };
    let launcher = ProcessLauncher::current_exe()?
        .env(HELPER_BACKEND_ENV, "redis")
        .env(
            HELPER_URL_ENV,
            format!("{}{separator}namespace={root}", config.url()),
        );
    let shared = Capabilities::none().cross_process(launcher);
    let factories = Factories {
        config,
        _purge: Some(purge),
    };
    let persistence = factories.persistence();
    Ok(Backend {
        name: "redis",
        persistence: Some((persistence.clone(), shared.clone().large_values())),
        lock: Some((
            factories.lock(),
            shared.clone().exclusion().lease_expiry(LEASE),
        )),
        results: Some((factories.results(), Capabilities::none().blocking_read())),
        registration: Some((factories.registration(), Capabilities::none())),
        work: Some((factories.work(), shared.claim_race(4, 4000))),
        machines: Some((persistence, Capabilities::none())),
        _cleanup: None,
    })
}

/// The factories a helper process serves with: the run's root namespace comes in the URL.
pub(super) fn helper_backends(url: &str) -> Result<HelperBackends, String> {
    let config = RedisConfig::from_url(url)
        .map_err(|e| e.to_string())?
        .with_lease(LEASE);
    // The parent owns the run's keys and deletes them; a helper only borrows them.
    let factories = Factories {
        config,
        _purge: None,
    };
    Ok(HelperBackends {
        persistence: Some(factories.persistence()),
        lock: Some(factories.lock()),
        work: Some(factories.work()),
    })
}

fn reachable(config: &RedisConfig) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a Tokio runtime: {e}"))?;
    let client = RedisClient::new(config.clone()).map_err(|e| e.to_string())?;
    runtime
        .block_on(client.ping())
        .map_err(|e| format!("Redis is not reachable: {e}"))
}

/// Namespace `ns` of a run is `{root}:{ns}`. Every open makes a client of its own, on the
/// runtime of the case that opens it.
#[derive(Clone)]
struct Factories {
    config: RedisConfig,
    /// Held for its `Drop`, which deletes the run's keys.
    _purge: Option<Arc<Purge>>,
}

impl Factories {
    fn client(&self, ns: &str) -> Result<RedisClient, String> {
        let namespace = format!("{}:{ns}", self.config.namespace());
        let config = self
            .config
            .clone()
            .with_namespace(namespace)
            .map_err(|e| e.to_string())?;
        RedisClient::new(config).map_err(|e| e.to_string())
    }

    fn persistence(&self) -> PersistenceFactory {
        let this = self.clone();
        PersistenceFactory::new(move |ns| {
            let opened = this.client(&ns);
            async move { Ok(Arc::new(opened?.persistence()) as Arc<dyn PersistenceBackend>) }
        })
    }

    fn lock(&self) -> LockFactory {
        let this = self.clone();
        LockFactory::new(move |ns| {
            let opened = this.client(&ns);
            async move { Ok(Arc::new(opened?.lock()) as Arc<dyn ExecutionLock>) }
        })
    }

    fn results(&self) -> ResultFactory {
        let this = self.clone();
        ResultFactory::new(move |ns| {
            let opened = this.client(&ns);
            async move { Ok(Arc::new(opened?.results()) as Arc<dyn ResultBackend>) }
        })
    }

    fn registration(&self) -> RegistrationFactory {
        let this = self.clone();
        RegistrationFactory::new(move |ns| {
            let opened = this.client(&ns);
            async move { Ok(Arc::new(opened?.registration()) as Arc<dyn RegistrationBackend>) }
        })
    }

    fn work(&self) -> WorkFactory {
        let this = self.clone();
        WorkFactory::new(move |ns| {
            let opened = this.client(&ns);
            async move { Ok(Arc::new(opened?.work()) as Arc<dyn WorkBackend>) }
        })
    }
}

/// Deletes every key of the run once the last factory holding it is dropped.
struct Purge(RedisConfig);

impl Drop for Purge {
    fn drop(&mut self) {
        let config = self.0.clone();
        // A thread of its own, so dropping works inside or outside a runtime.
        let purged = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let client = RedisClient::new(config).ok()?;
            runtime.block_on(client.purge()).ok()
        })
        .join();
        if !matches!(purged, Ok(Some(_))) {
            eprintln!(
                "could not delete the Redis keys of namespace `{}`",
                self.0.namespace()
            );
        }
    }
}
