//! The SQLite family: every suite, each case in a database file of its own.
//!
//! `FLATMACHINES_TEST_SQLITE_URL=sqlite://DIR` names a directory (default: a fresh temporary
//! one); a run works in a `run-<uuid>` directory below it, removed when the run ends, and
//! namespace `ns` is the file `{run}/{ns}.sqlite`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flatmachines_conformance::process::{HelperBackends, ProcessLauncher};
use flatmachines_conformance::{
    Capabilities, LockFactory, PersistenceFactory, RegistrationFactory, ResultFactory, WorkFactory,
};
use flatmachines_core::{
    ExecutionLock, PersistenceBackend, RegistrationBackend, ResultBackend, WorkBackend,
};
use flatmachines_sqlite::{SqliteConfig, SqliteDatabase};

use super::{Backend, HELPER_BACKEND_ENV, HELPER_URL_ENV, RunDir};

/// Short, so the lease-expiry case is quick, yet many times a renewal's delay on a loaded
/// machine (renewals run three times per lease).
const LEASE: Duration = Duration::from_secs(2);

/// Opens the family for one run.
pub(super) fn open(url: Option<&str>) -> Result<Backend, String> {
    let run_dir = match url {
        Some(url) => RunDir::under(&directory(url)?)?,
        None => RunDir::temporary()?,
    };
    let root = run_dir.path().to_owned();
    let launcher = ProcessLauncher::current_exe()?
        .env(HELPER_BACKEND_ENV, "sqlite")
        .env(HELPER_URL_ENV, format!("sqlite://{}", root.display()));
    let shared = Capabilities::none().cross_process(launcher);
    let persistence = persistence(&root);
    Ok(Backend {
        name: "sqlite",
        persistence: Some((persistence.clone(), shared.clone().large_values())),
        lock: Some((lock(&root), shared.clone().exclusion().lease_expiry(LEASE))),
        results: Some((results(&root), Capabilities::none().blocking_read())),
        registration: Some((registration(&root), Capabilities::none())),
        // Four helper processes and the runner claim 4 000 items from one pool.
        work: Some((work(&root), shared.claim_race(4, 4000))),
        machines: Some((persistence, Capabilities::none())),
        _cleanup: Some(run_dir),
    })
}

/// The factories a helper process serves with: the run directory comes in the URL.
pub(super) fn helper_backends(url: &str) -> Result<HelperBackends, String> {
    let root = directory(url)?;
    Ok(HelperBackends {
        persistence: Some(persistence(&root)),
        lock: Some(lock(&root)),
        work: Some(work(&root)),
    })
}

/// The directory of a `sqlite://DIR` URL.
fn directory(url: &str) -> Result<PathBuf, String> {
    url.strip_prefix("sqlite://")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            format!("the sqlite runner's URL is `sqlite://DIR`, a directory for the run's database files, not `{url}`")
        })
}

/// Every open is a handle of its own on `{root}/{ns}.sqlite`.
fn database(root: &Path, ns: &str) -> Result<SqliteDatabase, String> {
    let config = SqliteConfig::new(root.join(format!("{ns}.sqlite"))).lock_lease(LEASE);
    SqliteDatabase::open(config).map_err(|e| e.to_string())
}

fn persistence(root: &Path) -> PersistenceFactory {
    let root = root.to_owned();
    PersistenceFactory::new(move |ns| {
        let opened = database(&root, &ns);
        async move { Ok(Arc::new(opened?.persistence()) as Arc<dyn PersistenceBackend>) }
    })
}

fn lock(root: &Path) -> LockFactory {
    let root = root.to_owned();
    LockFactory::new(move |ns| {
        let opened = database(&root, &ns);
        async move { Ok(Arc::new(opened?.lock()) as Arc<dyn ExecutionLock>) }
    })
}

fn results(root: &Path) -> ResultFactory {
    let root = root.to_owned();
    ResultFactory::new(move |ns| {
        let opened = database(&root, &ns);
        async move { Ok(Arc::new(opened?.results()) as Arc<dyn ResultBackend>) }
    })
}

fn registration(root: &Path) -> RegistrationFactory {
    let root = root.to_owned();
    RegistrationFactory::new(move |ns| {
        let opened = database(&root, &ns);
        async move { Ok(Arc::new(opened?.registration()) as Arc<dyn RegistrationBackend>) }
    })
}

fn work(root: &Path) -> WorkFactory {
    let root = root.to_owned();
    WorkFactory::new(move |ns| {
        let opened = database(&root, &ns);
        async move { Ok(Arc::new(opened?.work()) as Arc<dyn WorkBackend>) }
    })
}
