//! [`FlatAgentAdapter`]: the engine's `flatagent` agent type.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use flatmachines_core::{
    AdapterContext, AgentAdapter, AgentConfig, AgentError, AgentExecutor, AgentRef,
};

use crate::agent::{FlatAgent, read_config};
use crate::error::BuildError;
use crate::profiles::Profiles;
use crate::secret::KeySource;

/// Builds [`FlatAgent`] executors for agents declared as a path, an inline `spec: flatagent`
/// document, or `{type: flatagent, ref | config}`.
///
/// Register it with `RuntimeBuilder::agent_adapter(Arc::new(FlatAgentAdapter::new()))`.
/// Everything is checked when the machine is prepared: the file, the document, the profile,
/// the provider, the templates and the API key's variable.
#[derive(Debug, Clone, Default)]
pub struct FlatAgentAdapter {
    keys: KeySource,
}

impl FlatAgentAdapter {
    /// The agent type served.
    pub const TYPE: &'static str = AgentRef::DEFAULT_TYPE;

    /// An adapter reading API keys from the process environment.
    pub fn new() -> FlatAgentAdapter {
        FlatAgentAdapter::default()
    }

    /// An adapter reading API keys through `keys`.
    pub fn with_keys(keys: KeySource) -> FlatAgentAdapter {
        FlatAgentAdapter { keys }
    }

    /// Builds the agent `agent_name` declared as `agent_ref`.
    pub fn build(
        &self,
        agent_name: &str,
        agent_ref: &AgentRef,
        context: &AdapterContext,
    ) -> Result<FlatAgent, BuildError> {
        let reference = |message: String| BuildError::Reference {
            agent: agent_name.to_owned(),
            message,
        };
        let source = match agent_ref {
            AgentRef::Path(path) => Source::File(resolve(&context.config_dir, path)),
            AgentRef::Inline(document) => Source::Inline((**document).clone()),
            AgentRef::Typed { kind, .. } if kind != Self::TYPE => {
                return Err(reference(format!(
                    "the flatagent adapter cannot serve agents of type `{kind}`"
                )));
            }
            AgentRef::Typed {
                reference: Some(path),
                ..
            } => Source::File(resolve(&context.config_dir, path)),
            AgentRef::Typed {
                config: Some(config),
                ..
            } => Source::Inline(Value::Object(config.clone())),
            AgentRef::Typed { .. } => {
                return Err(reference(
                    "`type: flatagent` needs `ref` (a path to a flatagent file) or `config` (an inline flatagent document)".to_owned(),
                ));
            }
        };
        let (config, origin, agent_dir) = match source {
            Source::File(path) => {
                let config = read_config(agent_name, &path)?;
                let dir = path.parent().map(Path::to_path_buf);
                (config, path.display().to_string(), dir)
            }
            Source::Inline(document) => {
                let origin = "inline config";
                let (config, warnings) = AgentConfig::from_value(document, Path::new(origin))
                    .map_err(|source| BuildError::Config {
                        agent: agent_name.to_owned(),
                        source,
                    })?;
                for warning in warnings {
                    tracing::warn!(agent = agent_name, "{warning}");
                }
                (config, origin.to_owned(), None)
            }
        };
        let profiles = self.profiles(agent_name, agent_dir.as_deref(), context)?;
        let agent = FlatAgent::new(agent_name, &config, &origin, profiles.as_ref(), &self.keys)?;
        Ok(agent.with_config_dir(agent_dir.unwrap_or_else(|| context.config_dir.clone())))
    }

    /// The profiles for an agent: the runtime's `profiles_file` if given, else the first
    /// `profiles.yml` next to the agent file, the machine, or the root machine.
    fn profiles(
        &self,
        agent_name: &str,
        agent_dir: Option<&Path>,
        context: &AdapterContext,
    ) -> Result<Option<Profiles>, BuildError> {
        let file = match &context.profiles_file {
            Some(file) => Some(file.clone()),
            None => {
                let dirs = agent_dir
                    .into_iter()
                    .chain([context.config_dir.as_path()])
                    .chain(context.root_config_dir.as_deref());
                Profiles::discover(dirs)
            }
        };
        file.map(|file| Profiles::load(&file))
            .transpose()
            .map_err(|source| BuildError::Config {
                agent: agent_name.to_owned(),
                source,
            })
    }
}

enum Source {
    File(PathBuf),
    Inline(Value),
}

/// `path` relative to the machine's directory (`./` segments dropped, for tidier messages).
fn resolve(config_dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        return path.to_owned();
    }
    let relative: PathBuf = path
        .components()
        .filter(|c| *c != std::path::Component::CurDir)
        .collect();
    config_dir.join(relative)
}

impl AgentAdapter for FlatAgentAdapter {
    fn type_name(&self) -> &str {
        Self::TYPE
    }

    fn create_executor(
        &self,
        agent_name: &str,
        agent_ref: &AgentRef,
        context: &AdapterContext,
    ) -> Result<Arc<dyn AgentExecutor>, AgentError> {
        let agent = self.build(agent_name, agent_ref, context)?;
        Ok(Arc::new(agent))
    }
}
