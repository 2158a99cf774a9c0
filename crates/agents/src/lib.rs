//! FlatAgent: LLM agents (`spec: flatagent`) over real provider APIs, model profiles
//! (`spec: flatprofiles`) and structured output, for the FlatMachines runtime.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use flatmachines_agents::FlatAgentAdapter;
//! use flatmachines_engine::{Machine, RunOptions, Runtime};
//!
//! let machine = Machine::from_file("examples/writer-critic/machine.yml")?;
//! let runtime = Runtime::builder()
//!     .agent_adapter(Arc::new(FlatAgentAdapter::new()))
//!     .build();
//! let outcome = runtime.run(&machine, serde_json::Map::new(), RunOptions::default()).await?;
//! println!("{}", outcome.output);
//! # Ok(()) }
//! ```
//!
//! - [`FlatAgentAdapter`] is the engine's `flatagent` agent type: it loads the agent, finds its
//!   profiles, resolves the model and checks the key when a machine is prepared.
//! - [`FlatAgent`] is one agent; each call renders the prompts (minijinja), calls the provider
//!   (OpenAI-compatible chat completions or Anthropic Messages, streamed or not) and returns an
//!   [`AgentResult`](flatmachines_core::AgentResult) with usage and cost.
//! - [`Profiles`] and [`resolve_model`] implement profile discovery and resolution;
//!   [`presets::PRESETS`] lists the providers.
//! - [`LlmClient`] implements the core [`LlmBackend`](flatmachines_core::LlmBackend) trait.
//!
//! The user guide is `docs/agents.md` in the repository.

mod adapter;
mod agent;
mod error;
mod http;
mod llm;
mod profiles;
mod prompt;
mod providers;
mod secret;
mod settings;
mod structured;

pub use adapter::FlatAgentAdapter;
pub use agent::FlatAgent;
pub use error::{BuildError, ModelError, error_types};
pub use llm::LlmClient;
pub use profiles::{Profiles, resolve_model};
pub use prompt::DEFAULT_SYSTEM_PROMPT;
pub use providers::presets;
pub use secret::KeySource;
pub use settings::{
    DEFAULT_ANTHROPIC_MAX_TOKENS, DEFAULT_ANTHROPIC_VERSION, DEFAULT_CONNECT_TIMEOUT_SECS,
    DEFAULT_TEMPERATURE, DEFAULT_TIMEOUT_SECS, ModelSettings,
};
pub use structured::strip_markdown_json;
