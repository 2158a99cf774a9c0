//! The backends this build can test, opened from the environment.
//!
//! `FLATMACHINES_TEST_BACKEND` names them (`memory`, `local`, a comma-separated list, or
//! `all` for every in-tree backend; default `all`) and `FLATMACHINES_TEST_<NAME>_URL` says
//! where each lives (`memory://`; `file://DIR` for local, default a fresh temporary
//! directory; `redis://HOST:PORT/DB` for redis, default `redis://127.0.0.1:6379/0`;
//! `sqlite://DIR` for sqlite, a directory for the run's database files, default a fresh
//! temporary one; `postgres://…` for postgres, default `postgres://postgres@127.0.0.1:5432/test`,
//! each namespace a schema of its own; `s3://BUCKET/PREFIX` for s3, default the local
//! emulator's bucket, see `backends/s3.rs`). Every run works in a namespace of its own,
//! removed when the run ends.

mod postgres;
mod redis;
mod s3;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flatmachines_conformance::process::{HelperBackends, ProcessLauncher};
use flatmachines_conformance::{
    Capabilities, LockFactory, PersistenceFactory, RegistrationFactory, ResultFactory, WorkFactory,
};
use flatmachines_core::{
    ExecutionLock, PersistenceBackend, RegistrationBackend, ResultBackend, WorkBackend,
};
use flatmachines_local::{LocalFileBackend, LocalFileLock};
use flatmachines_memory::{
    MemoryBackend, MemoryRegistrationBackend, MemoryResultBackend, MemoryWorkBackend, NoOpLock,
};

/// Backends built into this crate's tests: what `all` selects.
pub(crate) const IN_TREE: [&str; 6] = ["memory", "local", "redis", "sqlite", "postgres", "s3"];

/// Backend families the project plans but this build does not contain yet.
pub(crate) const NOT_IN_BUILD: [&str; 0] = [];

/// Names the backend a helper process opens.
const HELPER_BACKEND_ENV: &str = "FLATMACHINES_CONFORMANCE_HELPER_BACKEND";
/// The URL of the run's namespace root a helper process opens.
const HELPER_URL_ENV: &str = "FLATMACHINES_CONFORMANCE_HELPER_URL";

/// One backend family ready to test: a factory and capabilities per suite it implements.
pub(crate) struct Backend {
    pub(crate) name: &'static str,
    pub(crate) persistence: Option<(PersistenceFactory, Capabilities)>,
    pub(crate) lock: Option<(LockFactory, Capabilities)>,
    pub(crate) results: Option<(ResultFactory, Capabilities)>,
    pub(crate) registration: Option<(RegistrationFactory, Capabilities)>,
    pub(crate) work: Option<(WorkFactory, Capabilities)>,
    pub(crate) machines: Option<(PersistenceFactory, Capabilities)>,
    /// Removes the run's namespace root when the run ends.
    _cleanup: Option<RunDir>,
}

/// The environment variable holding `name`'s URL.
pub(crate) fn url_var(name: &str) -> String {
    format!("FLATMACHINES_TEST_{}_URL", name.to_ascii_uppercase())
}

/// Opens the in-tree backend `name` for one run.
pub(crate) fn open(name: &'static str) -> Result<Backend, String> {
    let url = std::env::var(url_var(name)).ok().filter(|u| !u.is_empty());
    match name {
        "memory" => open_memory(url.as_deref()),
        "local" => open_local(url.as_deref()),
        "redis" => redis::open(url.as_deref()),
        "postgres" => postgres::open(url.as_deref()),
        "sqlite" => sqlite::open(url.as_deref()),
        "s3" => s3::open(url.as_deref()),
        other => Err(format!("`{other}` is not an in-tree backend")),
    }
}

fn open_memory(url: Option<&str>) -> Result<Backend, String> {
    if let Some(url) = url.filter(|u| *u != "memory://") {
        return Err(format!(
            "the memory backend's URL is `memory://`, not `{url}`"
        ));
    }
    let persistence = PersistenceFactory::shared_per_namespace(|| {
        Arc::new(MemoryBackend::new()) as Arc<dyn PersistenceBackend>
    });
    Ok(Backend {
        name: "memory",
        persistence: Some((persistence.clone(), Capabilities::none().large_values())),
        // NoOpLock grants every acquire by design: no exclusion to check.
        lock: Some((
            LockFactory::new(|_| async { Ok(Arc::new(NoOpLock) as Arc<dyn ExecutionLock>) }),
            Capabilities::none(),
        )),
        results: Some((
            ResultFactory::shared_per_namespace(|| {
                Arc::new(MemoryResultBackend::new()) as Arc<dyn ResultBackend>
            }),
            Capabilities::none().blocking_read(),
        )),
        registration: Some((
            RegistrationFactory::shared_per_namespace(|| {
                Arc::new(MemoryRegistrationBackend::new()) as Arc<dyn RegistrationBackend>
            }),
            Capabilities::none(),
        )),
        work: Some((
            WorkFactory::shared_per_namespace(|| {
                Arc::new(MemoryWorkBackend::new()) as Arc<dyn WorkBackend>
            }),
            Capabilities::none(),
        )),
        machines: Some((persistence, Capabilities::none())),
        _cleanup: None,
    })
}

fn open_local(url: Option<&str>) -> Result<Backend, String> {
    let run_dir = match url {
        Some(url) => RunDir::under(&local_dir(url)?)?,
        None => RunDir::temporary()?,
    };
    let persistence = local_persistence(run_dir.path());
    let launcher = ProcessLauncher::current_exe()?
        .env(HELPER_BACKEND_ENV, "local")
        .env(
            HELPER_URL_ENV,
            format!("file://{}", run_dir.path().display()),
        );
    let shared = Capabilities::none().cross_process(launcher);
    Ok(Backend {
        name: "local",
        persistence: Some((persistence.clone(), shared.clone().large_values())),
        lock: Some((local_lock(run_dir.path()), shared.exclusion())),
        results: None,
        registration: None,
        work: None,
        machines: Some((persistence, Capabilities::none())),
        _cleanup: Some(run_dir),
    })
}

/// The directory of a `file://DIR` URL.
fn local_dir(url: &str) -> Result<PathBuf, String> {
    url.strip_prefix("file://")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| format!("the local backend's URL is `file://DIR`, not `{url}`"))
}

/// Namespace `ns` of a local run is the directory `{root}/{ns}`, holding the checkpoints.
fn local_persistence(root: &Path) -> PersistenceFactory {
    let root = root.to_owned();
    PersistenceFactory::new(move |ns| {
        let dir = root.join(ns);
        async move {
            let backend = LocalFileBackend::new(dir).map_err(|e| e.to_string())?;
            Ok(Arc::new(backend) as Arc<dyn PersistenceBackend>)
        }
    })
}

/// The locks of namespace `ns` live in `{root}/{ns}/.locks`, a name no key can take.
fn local_lock(root: &Path) -> LockFactory {
    let root = root.to_owned();
    LockFactory::new(move |ns| {
        let dir = root.join(ns).join(LocalFileLock::DEFAULT_DIR);
        async move {
            let lock = LocalFileLock::new(dir).map_err(|e| e.to_string())?;
            Ok(Arc::new(lock) as Arc<dyn ExecutionLock>)
        }
    })
}

/// The factories a helper process serves with, from the variables its launcher set.
pub(crate) fn helper_backends() -> Result<HelperBackends, String> {
    let name = std::env::var(HELPER_BACKEND_ENV)
        .map_err(|_| format!("{HELPER_BACKEND_ENV} is not set"))?;
    let url = std::env::var(HELPER_URL_ENV).map_err(|_| format!("{HELPER_URL_ENV} is not set"))?;
    match name.as_str() {
        // The parent made the run directory; the helper opens the same one, as is.
        "local" => {
            let root = local_dir(&url)?;
            Ok(HelperBackends {
                persistence: Some(local_persistence(&root)),
                lock: Some(local_lock(&root)),
                work: None,
            })
        }
        "redis" => redis::helper_backends(&url),
        "postgres" => postgres::helper_backends(&url),
        "sqlite" => sqlite::helper_backends(&url),
        "s3" => s3::helper_backends(&url),
        other => Err(format!("no helper for the `{other}` backend")),
    }
}

/// A run's namespace root, removed when the run ends.
enum RunDir {
    Temporary(tempfile::TempDir),
    Under(PathBuf),
}

impl RunDir {
    fn temporary() -> Result<Self, String> {
        tempfile::Builder::new()
            .prefix("flatmachines-conformance-")
            .tempdir()
            .map(RunDir::Temporary)
            .map_err(|e| format!("cannot create a temporary directory: {e}"))
    }

    /// A fresh `run-<uuid>` directory under `root`, so runs sharing a URL stay apart.
    fn under(root: &Path) -> Result<Self, String> {
        let dir = root.join(format!("run-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        Ok(RunDir::Under(dir))
    }

    fn path(&self) -> &Path {
        match self {
            RunDir::Temporary(dir) => dir.path(),
            RunDir::Under(dir) => dir,
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let RunDir::Under(dir) = self {
            // Leftovers of a failed removal are confined to the run's own directory.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
