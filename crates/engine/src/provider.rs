//! Choosing a run tree's backends from what its configs name, and the [`BackendProvider`]
//! through which backend families outside the engine are opened.

use std::path::Path;
use std::sync::Arc;

use flatmachines_core::config::BackendConfig;
use flatmachines_core::{
    ConfigError, ExecutionLock, PersistenceBackend, RegistrationBackend, ResultBackend, WorkBackend,
};
use flatmachines_memory::NoOpLock;

use crate::definition::{MachineDef, MachineSet};
use crate::runtime::{Runtime, unsupported};

/// What a config asks of one backend family.
#[derive(Debug, Clone, Copy)]
pub struct BackendRequest<'a> {
    /// The family's name as the config gives it (`local`, `sqlite`, `redis`, …).
    pub name: &'a str,
    /// The machine's `settings.backends`, for options such as `sqlite_path`.
    pub settings: Option<&'a BackendConfig>,
    /// The directory of the machine file, against which relative paths resolve.
    pub config_dir: &'a Path,
}

impl<'a> BackendRequest<'a> {
    /// A request for `name` with no settings, resolved against the working directory.
    pub fn named(name: &'a str) -> Self {
        BackendRequest {
            name,
            settings: None,
            config_dir: Path::new("."),
        }
    }

    /// An option from `settings.backends` (`sqlite_path`, or any other key).
    pub fn option(&self, key: &str) -> Option<&'a str> {
        let settings = self.settings?;
        match key {
            "sqlite_path" => settings.sqlite_path.as_deref(),
            other => settings.extra.get(other).and_then(|v| v.as_str()),
        }
    }
}

/// Opens the backends that configs name (`persistence: {backend: local}`,
/// `settings.backends.locking`, `settings.backends.results`, …). The engine itself knows only
/// `memory` and `none`; the facade crate provides one for every backend family it was built
/// with.
///
/// Each method answers `None` when the provider does not know the name, and `Some(Err(why))`
/// when it knows it but cannot open it.
pub trait BackendProvider: Send + Sync + std::fmt::Debug {
    /// The checkpoint store asked for.
    fn persistence(
        &self,
        request: &BackendRequest<'_>,
    ) -> Option<Result<Arc<dyn PersistenceBackend>, String>>;

    /// The execution lock asked for.
    fn lock(&self, request: &BackendRequest<'_>) -> Option<Result<Arc<dyn ExecutionLock>, String>>;

    /// The result backend asked for.
    fn results(
        &self,
        request: &BackendRequest<'_>,
    ) -> Option<Result<Arc<dyn ResultBackend>, String>> {
        let _ = request;
        None
    }

    /// The worker registration backend asked for.
    fn registration(
        &self,
        request: &BackendRequest<'_>,
    ) -> Option<Result<Arc<dyn RegistrationBackend>, String>> {
        let _ = request;
        None
    }

    /// The work backend asked for.
    fn work(&self, request: &BackendRequest<'_>) -> Option<Result<Arc<dyn WorkBackend>, String>> {
        let _ = request;
        None
    }

    /// The persistence names it knows, for messages.
    fn persistence_names(&self) -> Vec<&'static str>;

    /// The result backend names it knows, for messages.
    fn results_names(&self) -> Vec<&'static str> {
        Vec::new()
    }
}

fn request<'a>(definition: &'a MachineDef, name: &'a str) -> BackendRequest<'a> {
    BackendRequest {
        name,
        settings: definition.config.data.settings.backends.as_ref(),
        config_dir: &definition.config_dir,
    }
}

impl Runtime {
    /// The backend name a machine's config asks for, and where it says so.
    fn persistence_name(definition: &MachineDef) -> (&str, &'static str) {
        let data = &definition.config.data;
        match (&data.persistence, data.settings.backends.as_ref()) {
            (Some(p), _) => (p.backend.as_str(), "data.persistence.backend"),
            (None, Some(b)) if b.persistence.is_some() => (
                b.persistence.as_deref().unwrap_or("memory"),
                "data.settings.backends.persistence",
            ),
            _ => ("memory", "data.persistence.backend"),
        }
    }

    fn open_persistence(
        &self,
        definition: &MachineDef,
    ) -> Result<Arc<dyn PersistenceBackend>, ConfigError> {
        let (name, location) = Self::persistence_name(definition);
        if name == "memory" {
            return Ok(self.inner.memory.clone() as Arc<dyn PersistenceBackend>);
        }
        match self
            .inner
            .provider
            .as_ref()
            .and_then(|p| p.persistence(&request(definition, name)))
        {
            Some(Ok(backend)) => Ok(backend),
            Some(Err(message)) => Err(unsupported(
                definition,
                location,
                format!("cannot open the `{name}` persistence backend: {message}"),
            )),
            None => Err(self.unavailable_persistence(definition, name, location)),
        }
    }

    fn unavailable_persistence(
        &self,
        definition: &MachineDef,
        name: &str,
        location: &str,
    ) -> ConfigError {
        let mut available = vec!["memory"];
        if let Some(provider) = &self.inner.provider {
            available.extend(provider.persistence_names());
        }
        unsupported(
            definition,
            location,
            format!(
                "the `{name}` persistence backend is not available in this build (available: {}); give the runtime a backend or use `backend: memory`",
                available.join(", ")
            ),
        )
    }

    /// The checkpoint store of a run tree: the runtime's own, else the one its root machine
    /// names. Every machine's choice is checked, so a child asking for a backend this build
    /// lacks is refused rather than quietly checkpointed elsewhere.
    pub(crate) fn persistence_for(
        &self,
        set: &MachineSet,
    ) -> Result<Arc<dyn PersistenceBackend>, ConfigError> {
        if let Some(backend) = &self.inner.persistence {
            return Ok(Arc::clone(backend));
        }
        // Children write into the root's store; their own choice only has to exist here.
        for child in set.machines.iter().skip(1) {
            let (name, location) = Self::persistence_name(child);
            let known = name == "memory"
                || self
                    .inner
                    .provider
                    .as_ref()
                    .is_some_and(|p| p.persistence_names().contains(&name));
            if !known {
                return Err(self.unavailable_persistence(child, name, location));
            }
        }
        self.open_persistence(&set.machines[0])
    }

    /// The execution lock of a run tree: the runtime's own, else `settings.backends.locking`,
    /// else the reference's default (`local` with local persistence, none otherwise).
    pub(crate) fn lock_for(
        &self,
        root: &MachineDef,
    ) -> Result<Arc<dyn ExecutionLock>, ConfigError> {
        if let Some(lock) = &self.inner.lock {
            return Ok(Arc::clone(lock));
        }
        let data = &root.config.data;
        let configured = data
            .settings
            .backends
            .as_ref()
            .and_then(|b| b.locking.as_deref());
        let persistence = data.persistence.as_ref();
        // A runtime given its own store decides locking itself; otherwise local checkpoints
        // come with local locks, as in the reference.
        let (name, location) = match configured {
            Some(name) => (name, "data.settings.backends.locking"),
            None if self.inner.persistence.is_none()
                && persistence.is_some_and(|p| p.enabled && p.backend == "local") =>
            {
                ("local", "data.persistence.backend")
            }
            None => ("none", ""),
        };
        if name == "none" {
            return Ok(Arc::new(NoOpLock));
        }
        match self
            .inner
            .provider
            .as_ref()
            .and_then(|p| p.lock(&request(root, name)))
        {
            Some(Ok(lock)) => Ok(lock),
            Some(Err(message)) => Err(unsupported(
                root,
                location,
                format!("cannot open the `{name}` lock: {message}"),
            )),
            None => Err(unsupported(
                root,
                location,
                format!(
                    "the `{name}` lock is not available in this build; use `none` or give the runtime a lock"
                ),
            )),
        }
    }

    /// The result backend of a run tree: the runtime's own, else the one the root machine
    /// names in `settings.backends.results`. A child naming one this build lacks is refused.
    pub(crate) fn results_for(
        &self,
        set: &MachineSet,
    ) -> Result<Arc<dyn ResultBackend>, ConfigError> {
        const LOCATION: &str = "data.settings.backends.results";
        let name_of = |definition: &MachineDef| -> Option<String> {
            let backends = definition.config.data.settings.backends.as_ref()?;
            backends.results.clone().filter(|name| name != "memory")
        };
        let known = |name: &str| {
            self.inner
                .provider
                .as_ref()
                .is_some_and(|p| p.results_names().contains(&name))
        };
        let unavailable = |definition: &MachineDef, name: &str| {
            let mut available = vec!["memory"];
            if let Some(provider) = &self.inner.provider {
                available.extend(provider.results_names());
            }
            unsupported(
                definition,
                LOCATION,
                format!(
                    "the `{name}` result backend is not available in this build (available: {}); use `memory` or give the runtime a result backend",
                    available.join(", ")
                ),
            )
        };
        if self.inner.results_given {
            return Ok(Arc::clone(&self.inner.results));
        }
        for child in set.machines.iter().skip(1) {
            if let Some(name) = name_of(child)
                && !known(&name)
            {
                return Err(unavailable(child, &name));
            }
        }
        let root = &set.machines[0];
        let Some(name) = name_of(root) else {
            return Ok(Arc::clone(&self.inner.results));
        };
        match self
            .inner
            .provider
            .as_ref()
            .and_then(|p| p.results(&request(root, &name)))
        {
            Some(Ok(results)) => Ok(results),
            Some(Err(message)) => Err(unsupported(
                root,
                LOCATION,
                format!("cannot open the `{name}` result backend: {message}"),
            )),
            None => Err(unavailable(root, &name)),
        }
    }
}
