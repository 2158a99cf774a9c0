//! The PostgreSQL family: every suite, each case namespace in a schema of its own.
//!
//! `FLATMACHINES_TEST_POSTGRES_URL` names the server (default
//! `postgres://postgres@127.0.0.1:5432/test`). A run takes a random root `fmc_{12 hex}`;
//! namespace `ns` is the schema `{root}_{16 hex of ns's hash}`, created (migrated) at its
//! first use. When the run ends, every schema it opened is dropped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flatmachines_conformance::process::{HelperBackends, ProcessLauncher};
use flatmachines_conformance::{
    Capabilities, LockFactory, PersistenceFactory, RegistrationFactory, ResultFactory, WorkFactory,
};
use flatmachines_core::{
    ExecutionLock, PersistenceBackend, RegistrationBackend, ResultBackend, WorkBackend,
};
use flatmachines_postgres::{DEFAULT_URL, PostgresConfig, PostgresStore};

use super::{Backend, HELPER_BACKEND_ENV, HELPER_URL_ENV};

/// A lock's session ends with its holder, so the key frees at once; one second is the
/// slack the lease-expiry case allows for the server to notice.
const LEASE: Duration = Duration::from_secs(1);

/// Opens the family for one run, after checking that the server answers.
pub(super) fn open(url: Option<&str>) -> Result<Backend, String> {
    let url = url.unwrap_or(DEFAULT_URL);
    let root = format!("fmc_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let config = PostgresConfig::from_url(url)
        .and_then(|c| c.with_schema(root.clone()))
        .map_err(|e| e.to_string())?
        .with_connect_timeout(Duration::from_secs(3))
        .with_pool_size(4);
    reachable(&config)?;
    let separator = if url.contains('?') { '&' } else { '?' };
    let launcher = ProcessLauncher::current_exe()?
        .env(HELPER_BACKEND_ENV, "postgres")
        .env(HELPER_URL_ENV, format!("{url}{separator}schema={root}"));
    let shared = Capabilities::none().cross_process(launcher);
    let factories = Factories {
        config: config.clone(),
        opened: Some(Arc::new(Opened {
            config,
            schemas: Mutex::default(),
        })),
    };
    let persistence = factories.persistence();
    Ok(Backend {
        name: "postgres",
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

/// The factories a helper process serves with: the run's root schema comes in the URL.
pub(super) fn helper_backends(url: &str) -> Result<HelperBackends, String> {
    let config = PostgresConfig::from_url(url)
        .map_err(|e| e.to_string())?
        .with_pool_size(2);
    // The parent opened every namespace it hands out and drops their schemas.
    let factories = Factories {
        config,
        opened: None,
    };
    Ok(HelperBackends {
        persistence: Some(factories.persistence()),
        lock: Some(factories.lock()),
        work: Some(factories.work()),
    })
}

fn reachable(config: &PostgresConfig) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a Tokio runtime: {e}"))?;
    let store = PostgresStore::new(config.clone()).map_err(|e| e.to_string())?;
    let reached = runtime
        .block_on(async {
            store.ping().await?;
            store.drop_schema().await
        })
        .map_err(|e| format!("PostgreSQL is not reachable: {e}"));
    drop(store);
    reached
}

/// FNV-1a, so every process maps a namespace to the same schema.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Namespace `ns` of a run is the schema `{root}_{hash}`; every open is a store (a pool) of
/// its own, on the runtime of the case that opens it.
#[derive(Clone)]
struct Factories {
    config: PostgresConfig,
    /// The run's record of schemas to drop; `None` in a helper, which only borrows them.
    opened: Option<Arc<Opened>>,
}

impl Factories {
    fn store(&self, ns: &str) -> Result<PostgresStore, String> {
        let schema = format!("{}_{:016x}", self.config.schema(), fnv1a(ns));
        if let Some(opened) = &self.opened {
            opened
                .schemas
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(schema.clone());
        }
        let config = self
            .config
            .clone()
            .with_schema(schema)
            .map_err(|e| e.to_string())?;
        PostgresStore::new(config).map_err(|e| e.to_string())
    }

    fn persistence(&self) -> PersistenceFactory {
        let this = self.clone();
        PersistenceFactory::new(move |ns| {
            let opened = this.store(&ns);
            async move { Ok(Arc::new(opened?.persistence()) as Arc<dyn PersistenceBackend>) }
        })
    }

    fn lock(&self) -> LockFactory {
        let this = self.clone();
        LockFactory::new(move |ns| {
            let opened = this.store(&ns);
            async move { Ok(Arc::new(opened?.lock()) as Arc<dyn ExecutionLock>) }
        })
    }

    fn results(&self) -> ResultFactory {
        let this = self.clone();
        ResultFactory::new(move |ns| {
            let opened = this.store(&ns);
            async move { Ok(Arc::new(opened?.results()) as Arc<dyn ResultBackend>) }
        })
    }

    fn registration(&self) -> RegistrationFactory {
        let this = self.clone();
        RegistrationFactory::new(move |ns| {
            let opened = this.store(&ns);
            async move { Ok(Arc::new(opened?.registration()) as Arc<dyn RegistrationBackend>) }
        })
    }

    fn work(&self) -> WorkFactory {
        let this = self.clone();
        WorkFactory::new(move |ns| {
            let opened = this.store(&ns);
            async move { Ok(Arc::new(opened?.work()) as Arc<dyn WorkBackend>) }
        })
    }
}

/// The schemas this process opened; dropped when the last factory goes.
struct Opened {
    config: PostgresConfig,
    schemas: Mutex<BTreeSet<String>>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        let schemas = std::mem::take(
            self.schemas
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if schemas.is_empty() {
            return;
        }
        let config = self.config.clone();
        // A thread of its own, so dropping works inside or outside a runtime.
        let left = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let mut left = Vec::new();
            for schema in schemas {
                let dropped = config
                    .clone()
                    .with_schema(schema.clone())
                    .and_then(PostgresStore::new)
                    .map(|store| runtime.block_on(store.drop_schema()));
                if !matches!(dropped, Ok(Ok(()))) {
                    left.push(schema);
                }
            }
            Some(left)
        })
        .join();
        match left {
            Ok(Some(left)) if left.is_empty() => {}
            Ok(Some(left)) => eprintln!("could not drop the PostgreSQL schemas {left:?}"),
            _ => eprintln!("could not drop the run's PostgreSQL schemas"),
        }
    }
}
