//! Built-in hooks and the registry that resolves `hooks: {class, args}` in YAML.

mod composite;
mod logging;
mod metrics;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flatmachines_core::{JsonMap, MachineHooks};

pub use composite::CompositeHooks;
pub use logging::LoggingHooks;
pub use metrics::{Metrics, MetricsHooks};

/// Builds a hook from its YAML `args`. The registry is passed so composite hooks can build
/// their parts.
pub type HookFactory =
    Arc<dyn Fn(&JsonMap, &HookRegistry) -> Result<Arc<dyn MachineHooks>, String> + Send + Sync>;

/// Hook types by `class` name.
///
/// Built in: `LoggingHooks` (`logging`), `MetricsHooks` (`metrics`) and `CompositeHooks`
/// (`composite`, args `{hooks: [{class, args}, …]}`).
#[derive(Clone)]
pub struct HookRegistry {
    factories: HashMap<String, HookFactory>,
    /// The directory of the config whose `hooks:` is being built.
    config_dir: Option<PathBuf>,
}

impl fmt::Debug for HookRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookRegistry")
            .field("classes", &self.names())
            .field("config_dir", &self.config_dir)
            .finish()
    }
}

impl Default for HookRegistry {
    fn default() -> Self {
        let mut registry = HookRegistry {
            factories: HashMap::new(),
            config_dir: None,
        };
        for name in ["LoggingHooks", "logging"] {
            registry.register(name, |args, _| {
                Ok(Arc::new(LoggingHooks::from_args(args)?) as Arc<dyn MachineHooks>)
            });
        }
        for name in ["MetricsHooks", "metrics"] {
            registry.register(name, |_, _| {
                Ok(Arc::new(MetricsHooks::logging_at_end()) as Arc<dyn MachineHooks>)
            });
        }
        for name in ["CompositeHooks", "composite"] {
            registry.register(name, |args, registry| {
                Ok(Arc::new(CompositeHooks::from_args(args, registry)?) as Arc<dyn MachineHooks>)
            });
        }
        registry
    }
}

impl HookRegistry {
    /// Registers (or replaces) the hook type `class`.
    pub fn register<F>(&mut self, class: &str, factory: F)
    where
        F: Fn(&JsonMap, &HookRegistry) -> Result<Arc<dyn MachineHooks>, String>
            + Send
            + Sync
            + 'static,
    {
        self.factories.insert(class.to_owned(), Arc::new(factory));
    }

    /// Instantiates `class` with `args`.
    pub fn build(&self, class: &str, args: &JsonMap) -> Result<Arc<dyn MachineHooks>, String> {
        match self.factories.get(class) {
            Some(factory) => factory(args, self),
            None => Err(format!(
                "hook class `{class}` is not registered (known: {}); Rust hook types are registered with RuntimeBuilder::hook_type",
                self.names().join(", ")
            )),
        }
    }

    /// The directory of the config whose `hooks:` is being built, when the registry builds
    /// hooks for a config file: factories resolve relative paths in their args against it,
    /// as the reference resolves `hooks: {file}`.
    pub fn config_dir(&self) -> Option<&Path> {
        self.config_dir.as_deref()
    }

    /// This registry, building hooks for a config in `dir`.
    pub fn with_config_dir(&self, dir: &Path) -> HookRegistry {
        HookRegistry {
            factories: self.factories.clone(),
            config_dir: Some(dir.to_path_buf()),
        }
    }

    /// The registered class names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.factories.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
