//! [`Machine`]: a loaded, checked and compiled machine with the machines it references.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use flatmachines_core::{ConfigError, ConfigWarning, Limits, MachineConfig};

use crate::definition::{MachineDef, MachineSet};
use crate::loader;

/// A machine config, loaded with every child machine it references, with every transition
/// target, expression and template checked and compiled. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Machine {
    pub(crate) set: Arc<MachineSet>,
}

impl Machine {
    /// Loads a YAML or JSON machine file (JSON when it ends in `.json`), within the default
    /// [`Limits`] and those its `settings` choose.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Machine, ConfigError> {
        Self::from_file_within(path, &Limits::new())
    }

    /// [`Machine::from_file`] with bounds chosen by the caller; they win over the machine's
    /// own `settings.max_depth` and `settings.limits`.
    pub fn from_file_within(
        path: impl AsRef<Path>,
        limits: &Limits,
    ) -> Result<Machine, ConfigError> {
        Ok(Machine {
            set: Arc::new(loader::load_file(path.as_ref(), limits)?),
        })
    }

    /// Loads a machine from YAML text. `base_dir` is where relative `machines:` paths resolve;
    /// `<inline>` names it in messages.
    pub fn from_yaml(text: &str, base_dir: impl AsRef<Path>) -> Result<Machine, ConfigError> {
        Self::from_yaml_within(text, base_dir, &Limits::new())
    }

    /// [`Machine::from_yaml`] with bounds chosen by the caller.
    pub fn from_yaml_within(
        text: &str,
        base_dir: impl AsRef<Path>,
        limits: &Limits,
    ) -> Result<Machine, ConfigError> {
        let file = Path::new("<inline>.yml");
        let document = loader::parse_document(text, file, limits)?;
        Self::from_document(document, file, base_dir.as_ref(), limits)
    }

    /// Loads a machine from a parsed document.
    pub fn from_value(document: Value, base_dir: impl AsRef<Path>) -> Result<Machine, ConfigError> {
        Self::from_document(
            document,
            Path::new("<inline>"),
            base_dir.as_ref(),
            &Limits::new(),
        )
    }

    fn from_document(
        document: Value,
        file: &Path,
        dir: &Path,
        limits: &Limits,
    ) -> Result<Machine, ConfigError> {
        Ok(Machine {
            set: Arc::new(loader::load_document(document, file, dir, limits)?),
        })
    }

    /// The bounds this machine runs with: the caller's, then its own settings', then the
    /// defaults.
    pub fn limits(&self) -> &Limits {
        &self.set.limits
    }

    fn root(&self) -> &MachineDef {
        // A set always holds its root machine.
        &self.set.machines[0]
    }

    /// The machine's name (`data.name`).
    pub fn name(&self) -> &str {
        &self.root().name
    }

    /// The parsed config.
    pub fn config(&self) -> &MachineConfig {
        &self.root().config
    }

    /// The file it was loaded from.
    pub fn file(&self) -> &Path {
        &self.root().file
    }

    /// Everything suspicious found while loading it and its children.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.set.warnings
    }

    /// How many machines were loaded: this one and every machine it references.
    pub fn machine_count(&self) -> usize {
        self.set.machines.len()
    }
}
