//! MCP servers as tool providers for FlatMachines tool loops, on the official Rust SDK
//! ([`rmcp`]).
//!
//! An agent declares its servers in `data.mcp`:
//!
//! ```yaml
//! mcp:
//!   servers:
//!     files: {command: npx, args: ["-y", "@modelcontextprotocol/server-filesystem", "."]}
//!     search: {server_url: "http://127.0.0.1:8000/mcp", headers: {Authorization: "Bearer …"}}
//!   tool_filter: {allow: ["files:*", "search:query"], deny: ["files:write_file"]}
//!   tool_prompt: "{% for t in tools %}- {{ t.name }}: {{ t.description }}\n{% endfor %}"
//! ```
//!
//! A `tool_loop` state running that agent starts each server once per run tree (a child
//! machine declaring the same server shares it), lists its tools, offers those the filter
//! lets through, and calls them with `tools/call`. The servers stop when the run ends. Give
//! a runtime an [`McpLauncher`] with `RuntimeBuilder::tool_servers`; `flatmachines::runtime()`
//! does so. `docs/tools.md` describes the behaviour in full.

mod content;
mod pool;
mod server;

use std::sync::Arc;

use flatmachines_core::{Limit, Limits, ToolServerLauncher, ToolServerPool};

pub use server::CALL_ID_META_KEY;

/// Starts the MCP servers of each run tree: a runtime's `ToolServerLauncher`.
#[derive(Debug, Clone, Copy, Default)]
pub struct McpLauncher;

impl McpLauncher {
    /// A launcher.
    pub fn new() -> McpLauncher {
        McpLauncher
    }
}

impl ToolServerLauncher for McpLauncher {
    fn pool(&self, limits: &Limits) -> Arc<dyn ToolServerPool> {
        let max_message_bytes =
            usize::try_from(limits.get(Limit::McpMessageBytes)).unwrap_or(usize::MAX);
        Arc::new(pool::McpPool::new(max_message_bytes))
    }
}
