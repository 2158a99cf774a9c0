//! Tool servers that agents declare in their config (`data.mcp`): the [`ToolServerLauncher`] a
//! runtime is given, and the [`ToolServerPool`] of running servers that one run tree shares.
//!
//! The engine knows only these traits; the MCP client lives in its own crate
//! (`flatmachines-mcp`), so that a runtime without MCP needs none of its dependencies.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::McpConfig;
use crate::limits::Limits;
use crate::llm::ToolDefinition;
use crate::tools::ToolProvider;

/// The servers one agent declares, with the directory its config lives in (a relative `cwd`
/// resolves there).
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredServers {
    /// The agent's `data.mcp`.
    pub config: McpConfig,
    /// The directory of the agent's config file (the machine's, for an inline agent).
    pub base_dir: PathBuf,
}

/// One tool as prompts see it (`tools` and `tool_prompt` in an agent's templates).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    /// The name the model calls it by.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its arguments.
    pub input_schema: Value,
    /// The MCP server serving it; `None` for a tool served from Rust or only declared.
    pub server: Option<String>,
}

impl ToolInfo {
    /// The prompt view of a tool that no MCP server serves.
    pub fn from_definition(definition: &ToolDefinition) -> ToolInfo {
        let text = |key: &str| {
            definition
                .function
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        ToolInfo {
            name: text("name"),
            description: text("description"),
            input_schema: definition
                .function
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            server: None,
        }
    }
}

/// The tools an agent's servers serve in one run.
#[derive(Debug, Clone)]
pub struct ServedTools {
    /// Makes the calls.
    pub provider: Arc<dyn ToolProvider>,
    /// One entry per tool of [`ToolProvider::definitions`], in the same order.
    pub catalog: Vec<ToolInfo>,
    /// Tools the servers serve but do not offer, each with why (the agent's `tool_filter`
    /// denies it, another server serves the name first): a call to one is refused with that
    /// reason, not as a tool that does not exist.
    pub withheld: Vec<(String, String)>,
}

/// A server the config marks `required: true` could not be used; the state that needs it
/// fails with this (error type `ToolServerError`), and `on_error` may route it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MCP server `{server}` of agent `{agent}`: {message}")]
pub struct ToolServerError {
    /// The agent declaring the server.
    pub agent: String,
    /// The server's name in `data.mcp.servers`.
    pub server: String,
    /// What went wrong.
    pub message: String,
}

/// Starts the servers of one run tree. A runtime holds one launcher; each run gets its own
/// pool from it.
pub trait ToolServerLauncher: Send + Sync + Debug {
    /// An empty pool for a new run tree, within the run's `limits` (`mcp_message_bytes`).
    fn pool(&self, limits: &Limits) -> Arc<dyn ToolServerPool>;
}

/// The servers running for one run tree.
///
/// # Contract
///
/// 1. `connect` starts each declared server at most once per pool, however many states,
///    agents and child machines declare it (the same name and definition); later calls reuse
///    it, concurrent ones wait for the same start.
/// 2. A server that cannot start, or whose tools cannot be listed, is left out of the
///    returned tools, and the provider's calls to it are tool errors that say why. Only a
///    server marked `required` makes `connect` fail.
/// 3. `shutdown` stops every server and waits (bounded) for them to exit; it may be called
///    more than once. Dropping the pool stops the servers too, without waiting.
#[async_trait]
pub trait ToolServerPool: Send + Sync + Debug {
    /// The tools of the servers `servers` declares for `agent`, filtered by its
    /// `tool_filter`.
    async fn connect(
        &self,
        agent: &str,
        servers: &DeclaredServers,
    ) -> Result<ServedTools, ToolServerError>;

    /// Stops every server of the pool.
    async fn shutdown(&self);
}
