//! [`Runtime`]: the backends, agents and hooks a machine runs with, and [`Runner`], a machine
//! bound to them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use flatmachines_core::{
    AdapterContext, AgentAdapter, AgentError, AgentExecutor, AgentResult, ConfigError,
    ExecutionLock, ExecutionType, JsonMap, MachineHooks, MachineInvoker, PersistenceBackend,
    ResultBackend, RunObserver, ToolCallId, ToolProvider, ToolServerLauncher,
};
use flatmachines_memory::{MemoryBackend, MemoryResultBackend};

use crate::definition::{MachineDef, MachineSet};
use crate::error::RunError;
use crate::execution::ExecutionTypes;
use crate::hooks::HookRegistry;
use crate::machine::Machine;
use crate::observe::Observers;
use crate::provider::BackendProvider;
use crate::run::{self, ResumeOptions, RunOptions, RunOutcome};
use crate::tools::{ToolProviders, ToolSet};

/// The step limit of a run when neither the caller nor `settings.max_steps` sets one.
pub const DEFAULT_MAX_STEPS: u64 = 1000;

/// Configures a [`Runtime`].
#[derive(Default)]
pub struct RuntimeBuilder {
    persistence: Option<Arc<dyn PersistenceBackend>>,
    lock: Option<Arc<dyn ExecutionLock>>,
    results: Option<Arc<dyn ResultBackend>>,
    invoker: Option<Arc<dyn MachineInvoker>>,
    hooks: Option<Arc<dyn MachineHooks>>,
    hook_types: HookRegistry,
    agents: HashMap<String, Arc<dyn AgentExecutor>>,
    adapters: HashMap<String, Arc<dyn AgentAdapter>>,
    execution_types: ExecutionTypes,
    profiles_file: Option<PathBuf>,
    provider: Option<Arc<dyn BackendProvider>>,
    observers: Vec<Arc<dyn RunObserver>>,
    keep_snapshots: Option<u64>,
    tool_providers: Vec<Arc<dyn ToolProvider>>,
    tools: ToolSet,
    tool_servers: Option<Arc<dyn ToolServerLauncher>>,
    strict_references: bool,
}

impl RuntimeBuilder {
    /// Refuses a machine whose state names an agent that is not declared, or an agent whose
    /// file does not exist, when the machine is prepared. By default, as in the reference,
    /// such a state fails when it is reached, with `UnknownAgent` or `FileNotFound`, so
    /// `on_error` can route it; a warning names the reference at load. Other agent problems
    /// (an invalid file, a missing key) are refused at prepare time either way.
    pub fn strict_references(mut self, strict: bool) -> Self {
        self.strict_references = strict;
        self
    }

    /// How many of its newest snapshots each execution keeps, for machines whose config does
    /// not say (`persistence.keep_snapshots`); older ones are deleted as new ones are written.
    /// By default every snapshot is kept, except in the built-in memory store (below), which
    /// keeps the newest only: nothing there outlives the process, and resuming needs only
    /// the newest. `0` is taken as 1.
    pub fn keep_snapshots(mut self, count: u64) -> Self {
        self.keep_snapshots = Some(count.max(1));
        self
    }

    /// Opens the backends configs name through `provider`.
    pub fn backend_provider(mut self, provider: Arc<dyn BackendProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Checkpoint storage for every machine run by this runtime. Without it, each machine's
    /// `persistence.backend` chooses (`memory`, the default, is a store shared by the
    /// runtime's runs).
    pub fn persistence(mut self, backend: Arc<dyn PersistenceBackend>) -> Self {
        self.persistence = Some(backend);
        self
    }

    /// The execution lock (default: [`NoOpLock`]).
    pub fn lock(mut self, lock: Arc<dyn ExecutionLock>) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Where child machines leave their outputs (default: an in-memory backend).
    pub fn results(mut self, results: Arc<dyn ResultBackend>) -> Self {
        self.results = Some(results);
        self
    }

    /// Starts child machines through `invoker` instead of running them in this process.
    pub fn invoker(mut self, invoker: Arc<dyn MachineInvoker>) -> Self {
        self.invoker = Some(invoker);
        self
    }

    /// Hooks of the machine being run (its children use the hooks their configs name). They
    /// replace the `hooks:` of the machine's config.
    pub fn hooks(mut self, hooks: Arc<dyn MachineHooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Adds an observer that hears every event of every execution this runtime runs
    /// (children included): states, agent calls, fan-outs, checkpoint writes. Observers only
    /// watch; several can be added, and each hears every event in the order they were added.
    pub fn observer(mut self, observer: Arc<dyn RunObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// The hook classes registered so far, the built-in ones included, sorted.
    pub fn hook_classes(&self) -> Vec<&str> {
        self.hook_types.names()
    }

    /// Registers a hook type that `hooks: {class: <class>, args}` can name.
    pub fn hook_type<F>(mut self, class: &str, factory: F) -> Self
    where
        F: Fn(&JsonMap, &HookRegistry) -> Result<Arc<dyn MachineHooks>, String>
            + Send
            + Sync
            + 'static,
    {
        self.hook_types.register(class, factory);
        self
    }

    /// Starts the MCP servers that agents declare (`data.mcp`) for tool loops:
    /// `flatmachines_mcp::McpLauncher`, which `flatmachines::runtime()` registers (feature
    /// `mcp`). Without one, preparing a machine whose tool loop uses such an agent fails.
    pub fn tool_servers(mut self, launcher: Arc<dyn ToolServerLauncher>) -> Self {
        self.tool_servers = Some(launcher);
        self
    }

    /// Adds a provider of tools for `tool_loop` states. Providers are asked in the order they
    /// were added (tools added with [`RuntimeBuilder::tool`] come last); the first that serves
    /// a name serves it, and a provider's tool replaces an agent's `data.tools` entry of the
    /// same name.
    pub fn tool_provider(mut self, provider: Arc<dyn ToolProvider>) -> Self {
        self.tool_providers.push(provider);
        self
    }

    /// Adds one tool for `tool_loop` states, served by the async closure `call` (see
    /// [`ToolSet::tool`]).
    pub fn tool<F, Fut, E>(
        mut self,
        name: &str,
        description: &str,
        parameters: Value,
        call: F,
    ) -> Self
    where
        F: Fn(Value, ToolCallId) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Value, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.tools = self.tools.tool(name, description, parameters, call);
        self
    }

    /// Serves every agent called `name` (in any machine) with `executor`.
    pub fn agent(mut self, name: &str, executor: Arc<dyn AgentExecutor>) -> Self {
        self.agents.insert(name.to_owned(), executor);
        self
    }

    /// Builds executors for agents of the adapter's type.
    pub fn agent_adapter(mut self, adapter: Arc<dyn AgentAdapter>) -> Self {
        self.adapters
            .insert(adapter.type_name().to_owned(), adapter);
        self
    }

    /// Registers an execution type that `execution: {type: <name>}` can name.
    pub fn execution_type<F>(mut self, name: &str, factory: F) -> Self
    where
        F: Fn(
                &flatmachines_core::config::ExecutionConfig,
            ) -> Result<Arc<dyn ExecutionType>, String>
            + Send
            + Sync
            + 'static,
    {
        self.execution_types.register(name, factory);
        self
    }

    /// A `profiles.yml` for agent adapters to use instead of discovering one.
    pub fn profiles_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.profiles_file = Some(path.into());
        self
    }

    /// Builds the runtime.
    pub fn build(self) -> Runtime {
        Runtime {
            inner: Arc::new(RuntimeInner {
                persistence: self.persistence,
                memory: Arc::new(MemoryBackend::new()),
                keep_snapshots: self.keep_snapshots,
                results_given: self.results.is_some(),
                lock: self.lock,
                results: self
                    .results
                    .unwrap_or_else(|| Arc::new(MemoryResultBackend::new())),
                invoker: self.invoker,
                hooks: self.hooks,
                hook_types: self.hook_types,
                agents: self.agents,
                adapters: self.adapters,
                execution_types: self.execution_types,
                profiles_file: self.profiles_file,
                provider: self.provider,
                observers: Observers::new(self.observers),
                tools: {
                    let mut providers = self.tool_providers;
                    if !self.tools.is_empty() {
                        providers.push(Arc::new(self.tools));
                    }
                    ToolProviders(providers)
                },
                tool_servers: self.tool_servers,
                strict_references: self.strict_references,
            }),
        }
    }
}

pub(crate) struct RuntimeInner {
    pub(crate) persistence: Option<Arc<dyn PersistenceBackend>>,
    /// The store behind `persistence.backend: memory`, shared by this runtime's runs.
    pub(crate) memory: Arc<MemoryBackend>,
    /// [`RuntimeBuilder::keep_snapshots`].
    pub(crate) keep_snapshots: Option<u64>,
    pub(crate) lock: Option<Arc<dyn ExecutionLock>>,
    pub(crate) results_given: bool,
    pub(crate) results: Arc<dyn ResultBackend>,
    pub(crate) invoker: Option<Arc<dyn MachineInvoker>>,
    pub(crate) hooks: Option<Arc<dyn MachineHooks>>,
    pub(crate) hook_types: HookRegistry,
    pub(crate) agents: HashMap<String, Arc<dyn AgentExecutor>>,
    pub(crate) adapters: HashMap<String, Arc<dyn AgentAdapter>>,
    pub(crate) execution_types: ExecutionTypes,
    pub(crate) profiles_file: Option<PathBuf>,
    pub(crate) provider: Option<Arc<dyn BackendProvider>>,
    pub(crate) observers: Observers,
    pub(crate) tools: ToolProviders,
    pub(crate) tool_servers: Option<Arc<dyn ToolServerLauncher>>,
    /// [`RuntimeBuilder::strict_references`].
    pub(crate) strict_references: bool,
}

/// The backends, agents, hooks and execution types machines run with. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("persistence", &self.inner.persistence)
            .field("lock", &self.inner.lock)
            .field("provider", &self.inner.provider)
            .field("results", &self.inner.results)
            .field("agents", &self.inner.agents.keys().collect::<Vec<_>>())
            .field("adapters", &self.inner.adapters.keys().collect::<Vec<_>>())
            .field("hook_types", &self.inner.hook_types)
            .finish_non_exhaustive()
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::builder().build()
    }
}

impl Runtime {
    /// A builder with in-memory defaults.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The runtime's result backend.
    pub fn results(&self) -> &Arc<dyn ResultBackend> {
        &self.inner.results
    }

    /// The store behind `persistence.backend: memory`.
    pub fn memory_store(&self) -> &Arc<MemoryBackend> {
        &self.inner.memory
    }

    /// Binds `machine` to this runtime: picks its backends, builds its agents' executors and
    /// execution types and its hooks. Fails, naming the machine and field, when something the
    /// config needs is not available — before anything runs.
    pub fn prepare(&self, machine: &Machine) -> Result<Runner, ConfigError> {
        let set = Arc::clone(&machine.set);
        let persistence = self.persistence_for(&set)?;
        // The built-in memory store cannot outlive the process: a long loop would otherwise
        // hold every snapshot it ever wrote.
        let in_builtin_memory =
            std::ptr::addr_eq(Arc::as_ptr(&persistence), Arc::as_ptr(&self.inner.memory));
        let keep_snapshots = self.inner.keep_snapshots.or(in_builtin_memory.then_some(1));
        let lock = self.lock_for(&set.machines[0])?;
        let results = self.results_for(&set)?;
        let root_dir = set.machines[0].config_dir.clone();
        let mut bound = Vec::with_capacity(set.machines.len());
        for (index, definition) in set.machines.iter().enumerate() {
            bound.push(self.bind(definition, index == 0, &root_dir)?);
        }
        Ok(Runner {
            prepared: Arc::new(Prepared {
                set,
                persistence,
                keep_snapshots,
                lock,
                results,
                invoker: self.inner.invoker.clone(),
                machines: bound,
                observers: self.inner.observers.clone(),
                tools: self.inner.tools.clone(),
                tool_servers: self.inner.tool_servers.clone(),
            }),
        })
    }

    /// Prepares and runs `machine` with `input`.
    pub async fn run(
        &self,
        machine: &Machine,
        input: JsonMap,
        options: RunOptions,
    ) -> Result<RunOutcome, RunError> {
        self.prepare(machine)?.run(input, options).await
    }

    fn bind(
        &self,
        definition: &MachineDef,
        is_root: bool,
        root_dir: &std::path::Path,
    ) -> Result<BoundMachine, ConfigError> {
        let hooks = match (&self.inner.hooks, &definition.config.data.hooks) {
            (Some(hooks), _) if is_root => Some(Arc::clone(hooks)),
            (_, Some(config)) => {
                let class = config
                    .class
                    .as_deref()
                    .ok_or_else(|| ConfigError::Invalid {
                        file: definition.file.clone(),
                        location: "data.hooks".to_owned(),
                        message: "hooks need a `class` naming a registered hook type".to_owned(),
                    })?;
                if config.file.is_some() || config.module.is_some() {
                    tracing::warn!(
                        file = %definition.file.display(),
                        "hooks `file`/`module` name Python code; `{class}` is looked up in the hook registry instead"
                    );
                }
                Some(
                    self.inner
                        .hook_types
                        .with_config_dir(&definition.config_dir)
                        .build(class, &config.args)
                        .map_err(|message| unsupported(definition, "data.hooks.class", message))?,
                )
            }
            _ => None,
        };
        let mut executors: HashMap<&str, Arc<dyn AgentExecutor>> = HashMap::new();
        let mut agents = Vec::with_capacity(definition.states.len());
        for state in &definition.states {
            let Some(call) = &state.agent else {
                agents.push(None);
                continue;
            };
            let executor = match executors.get(call.name.as_str()) {
                Some(executor) => Arc::clone(executor),
                None => {
                    let executor = if call.undeclared {
                        self.undeclared(definition, &state.name, &call.name)?
                    } else {
                        self.executor(definition, &call.name, root_dir)?
                    };
                    executors.insert(&call.name, Arc::clone(&executor));
                    executor
                }
            };
            let strategy =
                self.inner
                    .execution_types
                    .build(&call.execution)
                    .map_err(|message| ConfigError::Invalid {
                        file: definition.file.clone(),
                        location: format!("data.states.{}.execution", state.name),
                        message,
                    })?;
            if call.tool_loop.is_some() && !executor.supports_tool_loop() {
                return Err(unsupported(
                    definition,
                    &format!("data.states.{}.tool_loop", state.name),
                    format!(
                        "agent `{}` cannot run in a tool loop: its executor does not implement `execute_turn`; remove `tool_loop` or serve the agent with one that does (flatagent agents do)",
                        call.name
                    ),
                ));
            }
            if executor
                .tool_servers()
                .is_some_and(|s| !s.config.servers.is_empty())
            {
                if call.tool_loop.is_none() {
                    tracing::warn!(
                        file = %definition.file.display(),
                        state = %state.name,
                        agent = %call.name,
                        "the agent declares MCP servers (`mcp`), which only `tool_loop` states start and call; this state runs the agent without them"
                    );
                } else if self.inner.tool_servers.is_none() {
                    return Err(unsupported(
                        definition,
                        &format!("data.states.{}.tool_loop", state.name),
                        format!(
                            "agent `{}` declares MCP servers (`mcp`), but this runtime cannot start them: build it with flatmachines::runtime() (feature `mcp`) or register flatmachines_mcp::McpLauncher with RuntimeBuilder::tool_servers",
                            call.name
                        ),
                    ));
                }
            }
            agents.push(Some(BoundAgent { executor, strategy }));
        }
        Ok(BoundMachine { hooks, agents })
    }

    fn executor(
        &self,
        definition: &MachineDef,
        name: &str,
        root_dir: &std::path::Path,
    ) -> Result<Arc<dyn AgentExecutor>, ConfigError> {
        if let Some(executor) = self.inner.agents.get(name) {
            return Ok(Arc::clone(executor));
        }
        let location = format!("data.agents.{name}");
        let Some(reference) = definition.config.data.agents.get(name) else {
            return Err(unsupported(
                definition,
                &location,
                "the agent is not declared".to_owned(),
            ));
        };
        let kind = reference.type_name();
        let Some(adapter) = self.inner.adapters.get(kind) else {
            let hint = if kind == flatmachines_core::AgentRef::DEFAULT_TYPE {
                "LLM agents (`spec: flatagent`) need the flatagent adapter: build the runtime with flatmachines::runtime() (feature `agents`) or register flatmachines_agents::FlatAgentAdapter, or serve this agent from Rust with RuntimeBuilder::agent"
            } else {
                "register an adapter for this type with RuntimeBuilder::agent_adapter, or an executor for this agent with RuntimeBuilder::agent"
            };
            return Err(unsupported(
                definition,
                &location,
                format!("no adapter is registered for agent type `{kind}`: {hint}"),
            ));
        };
        let context = AdapterContext {
            config_dir: definition.config_dir.clone(),
            settings: settings_map(definition),
            machine_name: definition.name.clone(),
            profiles_file: self.inner.profiles_file.clone(),
            root_config_dir: Some(root_dir.to_path_buf()),
        };
        match adapter.create_executor(name, reference, &context) {
            Ok(executor) => Ok(executor),
            // A missing agent file is a broken reference, which the reference meets only when
            // a state uses the agent. Anything else wrong with an agent (a bad file, a missing
            // key) is said now, before anything runs.
            Err(error)
                if error.error_type == crate::error_types::FILE_NOT_FOUND
                    && !self.inner.strict_references =>
            {
                tracing::warn!(
                    file = %definition.file.display(),
                    agent = name,
                    "agent `{name}` ({location}): {}; states that use it fail with `{}` when they are reached (`run --strict` refuses the machine)",
                    error.message,
                    error.error_type
                );
                Ok(Arc::new(BrokenAgent { error }))
            }
            Err(error) => Err(unsupported(definition, &location, error.message)),
        }
    }

    /// The executor for a state naming an agent `data.agents` does not declare: one served
    /// from Rust under that name, else, unless strict, one that fails as the reference does.
    fn undeclared(
        &self,
        definition: &MachineDef,
        state: &str,
        name: &str,
    ) -> Result<Arc<dyn AgentExecutor>, ConfigError> {
        if let Some(executor) = self.inner.agents.get(name) {
            return Ok(Arc::clone(executor));
        }
        let error = crate::compile::undeclared_agent(
            &definition.file,
            state,
            name,
            &definition.config.data.agents,
        );
        if self.inner.strict_references {
            return Err(error);
        }
        Ok(Arc::new(BrokenAgent {
            error: AgentError::new(error.to_string()).with_type(crate::error_types::UNKNOWN_AGENT),
        }))
    }
}

fn settings_map(definition: &MachineDef) -> JsonMap {
    match serde_json::to_value(&definition.config.data.settings) {
        Ok(Value::Object(map)) => map,
        _ => JsonMap::new(),
    }
}

pub(crate) fn unsupported(definition: &MachineDef, location: &str, message: String) -> ConfigError {
    ConfigError::Unsupported {
        file: definition.file.clone(),
        location: location.to_owned(),
        message,
    }
}

/// The executor of an agent that could not be built: every call fails with the error, so a
/// state using it fails when it is reached and `on_error` routes it, as in the reference.
#[derive(Debug)]
struct BrokenAgent {
    error: AgentError,
}

#[async_trait::async_trait]
impl AgentExecutor for BrokenAgent {
    async fn execute(
        &self,
        _input: &JsonMap,
        _context: &JsonMap,
    ) -> Result<AgentResult, AgentError> {
        Err(self.error.clone())
    }
}

/// An agent ready to call.
#[derive(Clone)]
pub(crate) struct BoundAgent {
    pub(crate) executor: Arc<dyn AgentExecutor>,
    pub(crate) strategy: Arc<dyn ExecutionType>,
}

/// A machine's hooks and, per state, its agent.
pub(crate) struct BoundMachine {
    pub(crate) hooks: Option<Arc<dyn MachineHooks>>,
    pub(crate) agents: Vec<Option<BoundAgent>>,
}

/// Everything a run tree shares.
pub(crate) struct Prepared {
    pub(crate) set: Arc<MachineSet>,
    pub(crate) persistence: Arc<dyn PersistenceBackend>,
    /// How many snapshots an execution keeps when its machine's config does not say.
    pub(crate) keep_snapshots: Option<u64>,
    pub(crate) lock: Arc<dyn ExecutionLock>,
    pub(crate) results: Arc<dyn ResultBackend>,
    pub(crate) invoker: Option<Arc<dyn MachineInvoker>>,
    pub(crate) machines: Vec<BoundMachine>,
    pub(crate) observers: Observers,
    /// The tools `tool_loop` states may call.
    pub(crate) tools: ToolProviders,
    /// Starts the MCP servers agents declare; each run tree gets its own pool.
    pub(crate) tool_servers: Option<Arc<dyn ToolServerLauncher>>,
}

/// A machine bound to a runtime, ready to run any number of times. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    pub(crate) prepared: Arc<Prepared>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("machine", &self.prepared.set.machines[0].name)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Runs the machine with `input` to completion, or to its step limit.
    pub async fn run(&self, input: JsonMap, options: RunOptions) -> Result<RunOutcome, RunError> {
        run::run_root(Arc::clone(&self.prepared), input, options).await
    }

    /// Continues execution `execution_id` from its latest checkpoint, to completion or to the
    /// step limit (`max_steps`, else `settings.max_steps`, else 1000, counting the steps
    /// already taken). A finished execution returns its stored output without running
    /// anything.
    pub async fn resume(
        &self,
        execution_id: &str,
        max_steps: Option<u64>,
    ) -> Result<RunOutcome, RunError> {
        let options = ResumeOptions {
            max_steps,
            ..ResumeOptions::default()
        };
        run::resume_root(Arc::clone(&self.prepared), execution_id, options).await
    }

    /// [`resume`](Self::resume), with a budget: the agent calls and cost the execution's
    /// tree had recorded count against it.
    pub async fn resume_with(
        &self,
        execution_id: &str,
        options: ResumeOptions,
    ) -> Result<RunOutcome, RunError> {
        run::resume_root(Arc::clone(&self.prepared), execution_id, options).await
    }

    /// The checkpoint store this runner writes to.
    pub fn persistence(&self) -> &Arc<dyn PersistenceBackend> {
        &self.prepared.persistence
    }
}
