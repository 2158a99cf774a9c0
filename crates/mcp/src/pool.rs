//! The servers of one run tree ([`McpPool`]) and the tools one agent draws from them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::OnceCell;

use flatmachines_core::config::McpServer;
use flatmachines_core::llm::ToolDefinition;
use flatmachines_core::{
    DeclaredServers, JsonMap, ServedTools, ToolError, ToolInfo, ToolOutcome, ToolProvider,
    ToolRequest, ToolServerError, ToolServerPool,
};

use crate::content;
use crate::server::Server;

type Started = Result<Arc<Server>, String>;

/// The MCP servers one run tree has started, by name and definition.
#[derive(Debug)]
pub(crate) struct McpPool {
    max_message_bytes: usize,
    servers: Mutex<HashMap<String, Arc<OnceCell<Started>>>>,
    closed: AtomicBool,
}

impl McpPool {
    pub(crate) fn new(max_message_bytes: usize) -> McpPool {
        McpPool {
            max_message_bytes,
            servers: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Server `name` as `definition` describes it, started on first use.
    async fn server(
        &self,
        name: &str,
        definition: &McpServer,
        servers: &DeclaredServers,
    ) -> Started {
        if self.closed.load(Ordering::Acquire) {
            return Err("the run has ended and its servers were stopped".to_owned());
        }
        // Two agents share a server when they give it the same name and definition; a
        // relative `cwd` is part of it through the directory it resolves in.
        let key = format!(
            "{name}\u{0}{}\u{0}{}",
            serde_json::to_string(definition).unwrap_or_default(),
            servers.base_dir.display()
        );
        let cell = {
            let mut map = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(key).or_default())
        };
        cell.get_or_init(|| async {
            let started =
                Server::start(name, definition, &servers.base_dir, self.max_message_bytes).await;
            match &started {
                Ok(server) => tracing::debug!(
                    target: "flatmachines::mcp",
                    server = name,
                    tools = server.tools.len(),
                    "MCP server started"
                ),
                Err(message) => tracing::warn!(
                    target: "flatmachines::mcp",
                    server = name,
                    "MCP server cannot be used: {message}"
                ),
            }
            started.map(Arc::new)
        })
        .await
        .clone()
    }
}

#[async_trait]
impl ToolServerPool for McpPool {
    async fn connect(
        &self,
        agent: &str,
        servers: &DeclaredServers,
    ) -> Result<ServedTools, ToolServerError> {
        let filter = servers.config.tool_filter.as_ref();
        let mut tools = McpTools::default();
        let mut catalog = Vec::new();
        let mut withheld = Vec::new();
        for (name, definition) in &servers.config.servers {
            let server = match self.server(name, definition, servers).await {
                Ok(server) => server,
                Err(message) if definition.required => {
                    return Err(ToolServerError {
                        agent: agent.to_owned(),
                        server: name.clone(),
                        message,
                    });
                }
                Err(message) => {
                    tools.unavailable.push((name.clone(), message));
                    continue;
                }
            };
            for tool in &server.tools {
                if filter.is_some_and(|f| !f.permits(name, &tool.name)) {
                    withheld.push((
                        tool.name.to_string(),
                        format!(
                            "the agent's tool_filter does not permit `{name}:{}`",
                            tool.name
                        ),
                    ));
                    continue;
                }
                if let Some(other) = tools.entries.iter().find(|e| e.tool == tool.name) {
                    let why = format!(
                        "tool `{}` of MCP server `{name}` is not offered: server `{}` serves a tool of that name first",
                        tool.name, other.server.name
                    );
                    tracing::warn!(target: "flatmachines::mcp", agent, "{why}");
                    continue;
                }
                let schema = Value::Object((*tool.input_schema).clone());
                let description = tool.description.as_deref().unwrap_or_default().to_owned();
                let mut function = JsonMap::new();
                function.insert("name".into(), Value::from(tool.name.as_ref()));
                function.insert("description".into(), Value::from(description.as_str()));
                function.insert("parameters".into(), schema.clone());
                let validator = match jsonschema::validator_for(&schema) {
                    Ok(validator) => Some(validator),
                    Err(e) => {
                        tracing::warn!(
                            target: "flatmachines::mcp",
                            server = %name,
                            tool = %tool.name,
                            "the tool's input schema is not valid JSON Schema, so its arguments are not checked: {e}"
                        );
                        None
                    }
                };
                catalog.push(ToolInfo {
                    name: tool.name.to_string(),
                    description,
                    input_schema: schema,
                    server: Some(name.clone()),
                });
                tools.entries.push(Entry {
                    definition: ToolDefinition {
                        kind: "function".to_owned(),
                        function,
                    },
                    tool: tool.name.to_string(),
                    server: Arc::clone(&server),
                    validator,
                });
            }
        }
        Ok(ServedTools {
            provider: Arc::new(tools),
            catalog,
            withheld,
        })
    }

    async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let cells: Vec<_> = self
            .servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, cell)| cell)
            .collect();
        let stops = cells.iter().filter_map(|cell| match cell.get() {
            Some(Ok(server)) => Some(server.stop()),
            _ => None,
        });
        futures::future::join_all(stops).await;
    }
}

/// One offered tool and the server that serves it.
struct Entry {
    definition: ToolDefinition,
    /// The tool's name on its server.
    tool: String,
    server: Arc<Server>,
    validator: Option<jsonschema::Validator>,
}

/// The tools one agent offers from its MCP servers.
#[derive(Default)]
struct McpTools {
    entries: Vec<Entry>,
    /// Servers that could not be used, with why.
    unavailable: Vec<(String, String)>,
}

impl std::fmt::Debug for McpTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTools")
            .field(
                "tools",
                &self.entries.iter().map(|e| &e.tool).collect::<Vec<_>>(),
            )
            .field("unavailable", &self.unavailable)
            .finish()
    }
}

#[async_trait]
impl ToolProvider for McpTools {
    fn definitions(&self) -> Vec<ToolDefinition> {
        self.entries.iter().map(|e| e.definition.clone()).collect()
    }

    async fn call(&self, request: ToolRequest<'_>) -> Result<ToolOutcome, ToolError> {
        let Some(entry) = self.entries.iter().find(|e| e.tool == request.name) else {
            if self.unavailable.is_empty() {
                return Err(ToolError::Unknown(request.name.to_owned()));
            }
            let why: Vec<String> = self
                .unavailable
                .iter()
                .map(|(server, message)| {
                    format!("MCP server `{server}` could not be used: {message}")
                })
                .collect();
            return Err(ToolError::Failed(format!(
                "no tool named `{}` is available; {}",
                request.name,
                why.join("; ")
            )));
        };
        let server = &entry.server.name;
        let Value::Object(arguments) = request.arguments else {
            return Ok(ToolOutcome::error(format!(
                "Tool '{}' of MCP server `{server}` was not called: its arguments must be a JSON object",
                request.name
            )));
        };
        if arguments.contains_key("_raw") && arguments.len() == 1 {
            return Ok(ToolOutcome::error(format!(
                "Tool '{}' of MCP server `{server}` was not called: its arguments are not valid JSON",
                request.name
            )));
        }
        if let Some(validator) = &entry.validator
            && let Some(error) = validator.iter_errors(request.arguments).next()
        {
            let path = error.instance_path().to_string();
            let place = if path.is_empty() {
                "the arguments".to_owned()
            } else {
                format!(
                    "argument `{}`",
                    path.trim_start_matches('/').replace('/', ".")
                )
            };
            return Ok(ToolOutcome::error(format!(
                "Tool '{}' of MCP server `{server}` was not called: {place} does not match its input schema: {error}",
                request.name
            )));
        }
        match entry
            .server
            .call(&entry.tool, arguments.clone(), request.id)
            .await
        {
            Ok(result) => Ok(content::outcome(&result)),
            Err(message) => Err(ToolError::Failed(format!(
                "MCP server `{server}`, tool `{}`: {message}",
                entry.tool
            ))),
        }
    }
}
