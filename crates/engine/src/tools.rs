//! Tools registered from Rust ([`ToolSet`]) and the providers a runtime's tool loops draw from.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use flatmachines_core::llm::ToolDefinition;
use flatmachines_core::{
    JsonMap, ServedTools, ToolCallId, ToolError, ToolInfo, ToolOutcome, ToolProvider, ToolRequest,
};

type ToolFuture = Pin<Box<dyn Future<Output = Result<Value, String>> + Send>>;
type ToolFn = dyn Fn(Value, ToolCallId) -> ToolFuture + Send + Sync;

/// A [`ToolProvider`] of async closures, one per tool.
///
/// A closure receives the model's arguments and the call's [`ToolCallId`], and returns the
/// result: a string is given to the model as it is, any other JSON value as its JSON text;
/// an `Err` is a tool error the model reads.
///
/// ```
/// use flatmachines_engine::ToolSet;
/// use serde_json::json;
///
/// let tools = ToolSet::new().tool(
///     "add",
///     "Adds two numbers",
///     json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}),
///     |args, _id| async move {
///         let a = args["a"].as_f64().ok_or("`a` is not a number")?;
///         let b = args["b"].as_f64().ok_or("`b` is not a number")?;
///         Ok::<_, String>(json!(a + b))
///     },
/// );
/// ```
#[derive(Default)]
pub struct ToolSet {
    tools: Vec<(ToolDefinition, Arc<ToolFn>)>,
}

impl ToolSet {
    /// An empty set.
    pub fn new() -> Self {
        ToolSet::default()
    }

    /// Adds the tool `name`, described by `description` and taking `parameters` (a JSON
    /// Schema object), served by `call`. A tool of the same name added before is replaced.
    pub fn tool<F, Fut, E>(
        mut self,
        name: &str,
        description: &str,
        parameters: Value,
        call: F,
    ) -> Self
    where
        F: Fn(Value, ToolCallId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: fmt::Display,
    {
        let mut function = JsonMap::new();
        function.insert("name".into(), Value::from(name));
        function.insert("description".into(), Value::from(description));
        function.insert("parameters".into(), parameters);
        let definition = ToolDefinition {
            kind: "function".to_owned(),
            function,
        };
        let call: Arc<ToolFn> = Arc::new(move |arguments, id| {
            let future = call(arguments, id);
            Box::pin(async move { future.await.map_err(|e| e.to_string()) })
        });
        self.tools
            .retain(|(existing, _)| existing.name() != Some(name));
        self.tools.push((definition, call));
        self
    }

    /// Whether the set has no tool.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

impl fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|(definition, _)| definition.name()))
            .finish()
    }
}

#[async_trait]
impl ToolProvider for ToolSet {
    fn definitions(&self) -> Vec<ToolDefinition> {
        self.tools.iter().map(|(d, _)| d.clone()).collect()
    }

    async fn call(&self, request: ToolRequest<'_>) -> Result<ToolOutcome, ToolError> {
        let Some((_, call)) = self
            .tools
            .iter()
            .find(|(definition, _)| definition.name() == Some(request.name))
        else {
            return Err(ToolError::Unknown(request.name.to_owned()));
        };
        match call(request.arguments.clone(), request.id.clone()).await {
            Ok(Value::String(text)) => Ok(ToolOutcome::ok(text)),
            Ok(other) => Ok(ToolOutcome::ok(other.to_string())),
            Err(message) => Err(ToolError::Failed(message)),
        }
    }
}

/// The tool providers of a runtime, in the order they were registered.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolProviders(pub(crate) Vec<Arc<dyn ToolProvider>>);

/// The tools one loop offers, each with the provider serving it (none: the agent declares it
/// but no provider serves it, so a call to it is a tool error).
#[derive(Debug, Default)]
pub(crate) struct LoopTools {
    pub(crate) definitions: Vec<ToolDefinition>,
    /// The same tools as prompts see them.
    pub(crate) catalog: Vec<ToolInfo>,
    servers: Vec<Option<Arc<dyn ToolProvider>>>,
    /// How many of the first definitions are child machines, which the loop runs itself.
    machines: usize,
    /// Tools the agent's MCP servers serve but do not offer, with why.
    withheld: Vec<(String, String)>,
}

impl LoopTools {
    /// The offered tools no provider serves (the agent declares them), by name.
    pub(crate) fn unserved(&self) -> impl Iterator<Item = &str> {
        self.definitions
            .iter()
            .zip(&self.servers)
            .skip(self.machines)
            .filter(|(_, server)| server.is_none())
            .filter_map(|(definition, _)| definition.name())
    }

    /// What the model is told when it calls `name`, which the loop does not offer: why the
    /// agent's servers hold it back, if they do.
    pub(crate) fn not_offered(&self, name: &str) -> String {
        match self.withheld.iter().find(|(tool, _)| tool == name) {
            Some((_, why)) => format!("Tool '{name}' is not offered: {why}."),
            None => format!("Tool '{name}' does not exist."),
        }
    }

    /// The provider serving `name`: `Ok(None)` when no provider does, `Err` when the loop
    /// does not offer it at all.
    pub(crate) fn server(&self, name: &str) -> Result<Option<&Arc<dyn ToolProvider>>, ()> {
        self.definitions
            .iter()
            .position(|d| d.name() == Some(name))
            .map(|index| self.servers[index].as_ref())
            .ok_or(())
    }
}

impl ToolProviders {
    /// The tools a loop offers, keeping those `permits` accepts, the first of a name winning:
    /// the loop's child machines, the providers' tools, those of the agent's MCP servers
    /// (`served`), then the agent's declared ones that nothing serves.
    pub(crate) fn for_loop<'a>(
        &self,
        machine_tools: impl IntoIterator<Item = &'a ToolDefinition>,
        served: Option<&ServedTools>,
        declared: &[ToolDefinition],
        permits: impl Fn(&str) -> bool,
    ) -> LoopTools {
        let mut tools = LoopTools::default();
        let mut add = |definition: ToolDefinition,
                       info: Option<&ToolInfo>,
                       server: Option<Arc<dyn ToolProvider>>| {
            let Some(name) = definition.name() else {
                return false;
            };
            if !permits(name) || tools.definitions.iter().any(|d| d.name() == Some(name)) {
                return false;
            }
            tools.catalog.push(
                info.cloned()
                    .unwrap_or_else(|| ToolInfo::from_definition(&definition)),
            );
            tools.definitions.push(definition);
            tools.servers.push(server);
            true
        };
        let mut machines = 0;
        for definition in machine_tools {
            machines += usize::from(add(definition.clone(), None, None));
        }
        for provider in &self.0 {
            for definition in provider.definitions() {
                add(definition, None, Some(provider.clone()));
            }
        }
        if let Some(served) = served {
            tools.withheld.clone_from(&served.withheld);
            for (index, definition) in served.provider.definitions().into_iter().enumerate() {
                add(
                    definition,
                    served.catalog.get(index),
                    Some(served.provider.clone()),
                );
            }
        }
        for definition in declared {
            add(definition.clone(), None, None);
        }
        tools.machines = machines;
        tools
    }
}
