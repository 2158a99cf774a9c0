//! The S3 family: the persistence and machine suites, under a prefix of their own in the
//! URL's bucket.
//!
//! `FLATMACHINES_TEST_S3_URL` names the store (`s3://BUCKET/PREFIX?endpoint=…`; default the
//! local emulator `cargo xtask test` starts, [`DEFAULT_URL`]); credentials, region and
//! endpoint otherwise come from the AWS chain (`AWS_ENDPOINT_URL`, …). A run works under
//! `{prefix}conformance-{random}/`, each case under a prefix below that, and deletes every
//! object of the run when the last factory of the run goes. A missing bucket is created when
//! the endpoint is on loopback (an emulator), never elsewhere.

use std::sync::Arc;
use std::time::Duration;

use flatmachines_conformance::process::{HelperBackends, ProcessLauncher};
use flatmachines_conformance::{Capabilities, PersistenceFactory};
use flatmachines_core::PersistenceBackend;
use flatmachines_s3::{S3Backend, S3Config, S3Error, S3ErrorKind};

use super::{Backend, HELPER_BACKEND_ENV, HELPER_URL_ENV};

/// The local emulator's test bucket.
const DEFAULT_URL: &str = "s3://flatmachines-test?endpoint=http://127.0.0.1:5000&region=us-east-1";

/// Opens the family for one run, after checking that the bucket answers.
pub(super) fn open(url: Option<&str>) -> Result<Backend, String> {
    let base = config(url.unwrap_or(DEFAULT_URL))?;
    let root = format!(
        "{}conformance-{}",
        base.prefix(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let config = base.with_prefix(&root).map_err(|e| e.to_string())?;
    reachable(&config)?;
    let launcher = ProcessLauncher::current_exe()?
        .env(HELPER_BACKEND_ENV, "s3")
        .env(HELPER_URL_ENV, config.url());
    let factories = Factories {
        config: config.clone(),
        _purge: Some(Arc::new(Purge(config))),
    };
    let persistence = factories.persistence();
    Ok(Backend {
        name: "s3",
        persistence: Some((
            persistence.clone(),
            Capabilities::none().cross_process(launcher).large_values(),
        )),
        lock: None,
        results: None,
        registration: None,
        work: None,
        machines: Some((persistence, Capabilities::none())),
        _cleanup: None,
    })
}

/// The factories a helper process serves with: the run's root prefix comes in the URL.
pub(super) fn helper_backends(url: &str) -> Result<HelperBackends, String> {
    // The parent owns the run's objects and deletes them; a helper only borrows them.
    let factories = Factories {
        config: config(url)?,
        _purge: None,
    };
    Ok(HelperBackends {
        persistence: Some(factories.persistence()),
        lock: None,
        work: None,
    })
}

/// The URL's configuration with test timeouts. An emulator on loopback takes any
/// credentials, so dummy ones stand in when the environment has none.
fn config(url: &str) -> Result<S3Config, String> {
    let mut config = S3Config::from_url(url)
        .map_err(|e| e.to_string())?
        .with_connect_timeout(Duration::from_secs(2))
        .with_attempt_timeout(Duration::from_secs(20));
    if on_loopback(&config) && std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        config = config.with_credentials("test", "test");
    }
    Ok(config)
}

fn on_loopback(config: &S3Config) -> bool {
    let endpoint = config
        .endpoint()
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .unwrap_or_default();
    ["://127.", "://localhost", "://[::1]"]
        .iter()
        .any(|host| endpoint.contains(host))
}

fn reachable(config: &S3Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a Tokio runtime: {e}"))?;
    let backend = S3Backend::new(config.clone().with_max_attempts(2));
    runtime.block_on(async {
        let Err(error) = backend.check().await else {
            return Ok(());
        };
        let missing = match &error {
            flatmachines_core::Error::Backend { source, .. } => source
                .downcast_ref::<S3Error>()
                .is_some_and(|e| e.kind() == S3ErrorKind::NoSuchBucket),
            _ => false,
        };
        if missing && on_loopback(config) {
            return backend
                .create_bucket()
                .await
                .map_err(|e| format!("S3 test bucket could not be created: {e}"));
        }
        Err(format!("S3 is not usable: {error}"))
    })
}

/// Namespace `ns` of a run is the prefix `{root}{ns}/`. Every open makes a backend (and a
/// connection) of its own, on the runtime of the case that opens it.
#[derive(Clone)]
struct Factories {
    config: S3Config,
    /// Held for its `Drop`, which deletes the run's objects.
    _purge: Option<Arc<Purge>>,
}

impl Factories {
    /// A method of the whole value, so that the factory closure holds `_purge` too.
    fn backend(&self, ns: &str) -> Result<S3Backend, String> {
        let prefix = format!("{}{ns}", self.config.prefix());
        let config = self.config.clone().with_prefix(&prefix);
        config.map(S3Backend::new).map_err(|e| e.to_string())
    }

    fn persistence(&self) -> PersistenceFactory {
        let this = self.clone();
        PersistenceFactory::new(move |ns| {
            let opened = this.backend(&ns);
            async move { Ok(Arc::new(opened?) as Arc<dyn PersistenceBackend>) }
        })
    }
}

/// Deletes every object of the run once the last factory holding it is dropped.
struct Purge(S3Config);

impl Drop for Purge {
    fn drop(&mut self) {
        let config = self.0.clone();
        // A thread of its own, so dropping works inside or outside a runtime.
        let purged = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime
                .block_on(S3Backend::new(config).delete_prefix(""))
                .ok()
        })
        .join();
        if !matches!(purged, Ok(Some(_))) {
            eprintln!(
                "could not delete the S3 objects under `s3://{}/{}`",
                self.0.bucket(),
                self.0.prefix()
            );
        }
    }
}
