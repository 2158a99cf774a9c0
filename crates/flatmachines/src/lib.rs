//! Run [FlatMachines](https://github.com/memgrafter/flatagents) state machines from Rust.
//!
//! This is the facade crate: it re-exports the runtime's parts and picks backend families with
//! cargo features.
//!
//! ```
//! use flatmachines::{Machine, RunOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let machine = Machine::from_yaml(
//!     r#"
//! spec: flatmachine
//! spec_version: "1.0.0"
//! data:
//!   context: {n: "{{ input.n }}"}
//!   states:
//!     start:
//!       type: initial
//!       transitions:
//!         - condition: "context.n > 10"
//!           to: big
//!         - to: small
//!     big: {type: final, output: {size: big}}
//!     small: {type: final, output: {size: small}}
//! "#,
//!     ".",
//! )?;
//! let input = serde_json::json!({"n": 42}).as_object().cloned().unwrap_or_default();
//! let outcome = flatmachines::runtime().build().run(&machine, input, RunOptions::default()).await?;
//! assert_eq!(outcome.output, serde_json::json!({"size": "big"}));
//! # Ok(()) }
//! ```
//!
//! | feature | what it adds |
//! |---|---|
//! | `memory` (default) | the in-memory backends under [`backends::memory`] |
//! | `local` (default) | fsync-durable local-file checkpoints and `flock` locks under `backends::local` (`backend: local`, `file://DIR`) |
//! | `agents` (default) | LLM agents (`spec: flatagent`) under [`agents`], registered by [`runtime()`] |
//! | `mcp` (default) | MCP servers as tools for `tool_loop` states (an agent's `data.mcp`) under [`mcp`], registered by [`runtime()`] |
//! | `hooks` (default) | hooks in any language under [`remote_hooks`]: the `webhook` and `command` hook classes, registered by [`runtime()`] |
//! | `otel` | OpenTelemetry metrics over OTLP under `metrics` |
//! | `cel` | the `cel` expression engine (`expression_engine: cel`); on in the CLI |
//! | `redis` | Redis checkpoints, leased locks, results, registration and work pools under `backends::redis` (`backend: redis`, `redis://`, `rediss://`); on in the CLI |
//! | `all-backends` | every backend family of this build |
//!
//! [`runtime()`] gives a [`RuntimeBuilder`] that can open every backend family compiled in
//! when a config names one (`persistence: {backend: local}`) and, with the `agents` feature,
//! calls LLM providers for `spec: flatagent` agents. `Runtime::builder()` alone knows only the
//! in-memory backends and no agent types.
//!
//! Any agent can also be served from Rust: register an [`AgentExecutor`] per agent name with
//! [`RuntimeBuilder::agent`], for example a closure wrapped in [`FnAgent`]; such executors win
//! over adapters.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "agents")]
#[cfg_attr(docsrs, doc(cfg(feature = "agents")))]
pub use flatmachines_agents as agents;
pub use flatmachines_core as core;
#[cfg(feature = "distributed")]
#[cfg_attr(docsrs, doc(cfg(feature = "distributed")))]
pub use flatmachines_distributed as distributed;
pub use flatmachines_engine as engine;
pub use flatmachines_expr as expr;
#[cfg(feature = "hooks")]
#[cfg_attr(docsrs, doc(cfg(feature = "hooks")))]
pub use flatmachines_hooks as remote_hooks;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use flatmachines_hooks::otel as metrics;
#[cfg(feature = "mcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "mcp")))]
pub use flatmachines_mcp as mcp;

pub use flatmachines_core::{
    AgentError, AgentExecutor, AgentResult, AgentToolCall, ConfigError, ConfigWarning, Context,
    JsonMap, MachineHooks, MachineSnapshot, RunEvent, RunObserver, StateError, ToolCallId,
    ToolCallResult, ToolError, ToolOutcome, ToolProvider, ToolRequest,
};
pub use flatmachines_engine::{
    Budget, FnAgent, Machine, ResumeFailure, ResumeOptions, RunError, RunOptions, RunOutcome,
    RunStatus, Runner, Runtime, RuntimeBuilder, ToolSet, error_types, hooks, to_json_text,
};

pub mod backends;
#[cfg(feature = "distributed")]
mod distributed_hooks;
#[cfg(feature = "distributed")]
#[cfg_attr(docsrs, doc(cfg(feature = "distributed")))]
pub use distributed_hooks::{STORE_ENV, with_distributed_hooks};

/// A runtime builder that opens the backend families of this build by the names configs use
/// and, with the `agents` feature, runs `spec: flatagent` agents against their providers (keys
/// are read from the process environment). With the `distributed` feature, the
/// `DistributedWorkerHooks` hook class opens the store of the `FLATMACHINES_STORE`
/// environment variable (see [`with_distributed_hooks`]).
pub fn runtime() -> RuntimeBuilder {
    let builder = Runtime::builder().backend_provider(std::sync::Arc::new(backends::Provider));
    #[cfg(feature = "agents")]
    let builder = builder.agent_adapter(std::sync::Arc::new(agents::FlatAgentAdapter::new()));
    #[cfg(feature = "mcp")]
    let builder = builder.tool_servers(std::sync::Arc::new(mcp::McpLauncher::new()));
    #[cfg(feature = "hooks")]
    let builder = register_remote_hooks(builder);
    #[cfg(feature = "distributed")]
    let builder = with_distributed_hooks(
        builder,
        std::env::var(STORE_ENV).ok().filter(|url| !url.is_empty()),
    );
    builder
}

/// The `webhook` and `command` hook classes (also under their type names).
#[cfg(feature = "hooks")]
fn register_remote_hooks(builder: RuntimeBuilder) -> RuntimeBuilder {
    use std::sync::Arc;

    use flatmachines_hooks::{CommandHooks, WebhookHooks};

    let mut builder = builder;
    for class in ["webhook", "WebhookHooks"] {
        builder = builder.hook_type(class, |args, _| {
            WebhookHooks::from_args(args)
                .map(|hooks| Arc::new(hooks) as Arc<dyn MachineHooks>)
                .map_err(|e| e.to_string())
        });
    }
    for class in ["command", "CommandHooks"] {
        builder = builder.hook_type(class, |args, registry| {
            CommandHooks::from_args(args, registry.config_dir())
                .map(|hooks| Arc::new(hooks) as Arc<dyn MachineHooks>)
                .map_err(|e| e.to_string())
        });
    }
    builder
}
