//! From a parsed [`MachineConfig`] to a [`MachineDef`]: every reference resolved, every
//! expression parsed and every template compiled, so bad configs fail before anything runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use flatmachines_core::config::{
    Guardrail, MachineConfig, MachineTarget, OnError, StateDefinition, StateKind, ToolLoopOptions,
    closest,
};
use flatmachines_core::{CheckpointEvent, ConfigError, ConfigWarning};
use flatmachines_expr::{Expression, ExpressionEngine};

use crate::definition::{
    AgentCall, CheckpointPolicy, ChildRef, Children, GuardrailDef, Launch, MachineDef, MachineId,
    MachineToolDef, OnErrorDef, StateDef, ToolLoopDef, TransitionDef,
};
use crate::template::{TemplateEngine, TemplateTree};

/// Variables a transition condition may read.
const CONDITION_VARIABLES: [&str; 3] = ["context", "input", "output"];

/// Compiles one machine. `children` maps the names under `machines:` to their ids.
pub(crate) struct Compiler<'a> {
    pub(crate) file: &'a Path,
    pub(crate) config_dir: PathBuf,
    pub(crate) children: &'a IndexMap<String, MachineId>,
    pub(crate) templates: &'a mut TemplateEngine,
    pub(crate) warnings: &'a mut Vec<ConfigWarning>,
    /// The language of the machine's conditions (`data.expression_engine`).
    pub(crate) engine: ExpressionEngine,
}

impl Compiler<'_> {
    pub(crate) fn compile(mut self, config: MachineConfig) -> Result<MachineDef, ConfigError> {
        self.engine = self.expression_engine(&config)?;
        let initial = self.initial_state(&config)?;
        let context = self.tree_map(&config.data.context, "data.context")?;
        let mut states = Vec::with_capacity(config.data.states.len());
        for (name, state) in &config.data.states {
            states.push(self.state(&config, name, state)?);
        }
        let checkpoints = self.checkpoint_policy(&config);
        Ok(MachineDef {
            name: config.name().to_owned(),
            file: self.file.to_owned(),
            config_dir: self.config_dir,
            source_file: None,
            children: self.children.clone(),
            context,
            states,
            initial,
            max_steps: config.data.settings.max_steps,
            checkpoints,
            config,
        })
    }

    fn warn(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            file: self.file.to_owned(),
            location: location.into(),
            message: message.into(),
        });
    }

    fn invalid(&self, location: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            location: location.into(),
            message: message.into(),
        }
    }

    fn expression_engine(&self, config: &MachineConfig) -> Result<ExpressionEngine, ConfigError> {
        const LOCATION: &str = "data.expression_engine";
        let Some(name) = config.data.expression_engine.as_deref() else {
            return Ok(ExpressionEngine::Simple);
        };
        let engine: ExpressionEngine = name
            .parse()
            .map_err(|e: flatmachines_expr::UnknownEngine| self.invalid(LOCATION, e.to_string()))?;
        if !engine.is_available() {
            return Err(ConfigError::Unsupported {
                file: self.file.to_owned(),
                location: LOCATION.to_owned(),
                message: format!(
                    "the `{engine}` expression engine is not in this build (enable the `cel` feature of the flatmachines crate)"
                ),
            });
        }
        Ok(engine)
    }

    fn initial_state(&self, config: &MachineConfig) -> Result<usize, ConfigError> {
        let states = &config.data.states;
        let mut initial: Option<(usize, &str)> = None;
        for (index, (name, state)) in states.iter().enumerate() {
            if state.kind == Some(StateKind::Initial) {
                if let Some((_, first)) = initial {
                    return Err(ConfigError::MultipleInitial {
                        file: self.file.to_owned(),
                        first: first.to_owned(),
                        second: name.clone(),
                    });
                }
                initial = Some((index, name));
            }
        }
        Ok(initial
            .map(|(index, _)| index)
            .or_else(|| states.get_index_of("start"))
            .unwrap_or(0))
    }

    fn state_target(
        &self,
        config: &MachineConfig,
        target: &str,
        location: String,
    ) -> Result<usize, ConfigError> {
        let states = &config.data.states;
        states
            .get_index_of(target)
            .ok_or_else(|| ConfigError::UnknownState {
                file: self.file.to_owned(),
                location,
                target: target.to_owned(),
                suggestion: closest(target, states.keys().map(String::as_str)),
            })
    }

    fn child(&self, state: &str, name: &str) -> Result<ChildRef, ConfigError> {
        match self.children.get(name) {
            Some(&id) => Ok(ChildRef {
                name: name.to_owned(),
                id,
            }),
            None => Err(ConfigError::UnknownReference {
                file: self.file.to_owned(),
                state: state.to_owned(),
                kind: "machine",
                section: "machines",
                name: name.to_owned(),
                suggestion: closest(name, self.children.keys().map(String::as_str)),
            }),
        }
    }

    fn tree(&mut self, value: &Value, location: &str) -> Result<TemplateTree, ConfigError> {
        TemplateTree::compile(value, location, self.templates).map_err(|(location, message)| {
            ConfigError::Template {
                file: self.file.to_owned(),
                location,
                message,
            }
        })
    }

    fn tree_map(
        &mut self,
        map: &serde_json::Map<String, Value>,
        location: &str,
    ) -> Result<TemplateTree, ConfigError> {
        TemplateTree::compile_map(map, location, self.templates).map_err(|(location, message)| {
            ConfigError::Template {
                file: self.file.to_owned(),
                location,
                message,
            }
        })
    }

    fn template(
        &mut self,
        source: &str,
        location: &str,
    ) -> Result<crate::template::Template, ConfigError> {
        self.templates
            .compile(source, location)
            .map_err(|message| ConfigError::Template {
                file: self.file.to_owned(),
                location: location.to_owned(),
                message,
            })
    }

    fn state(
        &mut self,
        config: &MachineConfig,
        name: &str,
        state: &StateDefinition,
    ) -> Result<StateDef, ConfigError> {
        let at = |field: &str| format!("data.states.{name}.{field}");
        let empty = serde_json::Map::new();
        let input = state.input.as_ref().unwrap_or(&empty);

        let mut transitions = Vec::with_capacity(state.transitions.len());
        for (index, transition) in state.transitions.iter().enumerate() {
            let location = at(&format!("transitions[{index}]"));
            let to = self.state_target(config, &transition.to, format!("{location}.to"))?;
            let condition = match transition.condition.as_deref() {
                Some(source) if !source.trim().is_empty() => {
                    Some(self.condition(source, &format!("{location}.condition"))?)
                }
                _ => None,
            };
            transitions.push(TransitionDef { condition, to });
        }

        let on_error = match &state.on_error {
            None => None,
            Some(OnError::State(target)) => Some(OnErrorDef::Always(self.state_target(
                config,
                target,
                at("on_error"),
            )?)),
            Some(OnError::ByType(map)) => {
                let mut routes = Vec::new();
                let mut default = None;
                for (error_type, target) in map {
                    let index =
                        self.state_target(config, target, at(&format!("on_error.{error_type}")))?;
                    if error_type == "default" {
                        default = Some(index);
                    } else {
                        routes.push((error_type.clone(), index));
                    }
                }
                Some(OnErrorDef::ByType { routes, default })
            }
        };

        let launch = match &state.launch {
            None => None,
            Some(names) => {
                let machines = names
                    .0
                    .iter()
                    .map(|machine| self.child(name, machine).map(|c| (c.name, c.id)))
                    .collect::<Result<Vec<_>, _>>()?;
                let empty = serde_json::Map::new();
                let input = self.tree_map(
                    state.launch_input.as_ref().unwrap_or(&empty),
                    &at("launch_input"),
                )?;
                Some(Launch { machines, input })
            }
        };
        if state.launch.is_none() && state.launch_input.is_some() {
            self.warn(at("launch_input"), "has no effect without `launch`");
        }

        let children = self.children(name, state, input)?;

        let agent = match &state.agent {
            None => None,
            Some(agent) => {
                // As in the reference, a state naming an undeclared agent fails when it is
                // reached, so `on_error` can route it; binding refuses it when strict.
                let undeclared = !config.data.agents.contains_key(agent);
                if undeclared {
                    let hint = closest(agent, config.data.agents.keys().map(String::as_str))
                        .map(|name| format!(" (did you mean `{name}`?)"))
                        .unwrap_or_default();
                    self.warn(
                        at("agent"),
                        format!("agent `{agent}` is not declared under `data.agents`{hint}; the state fails with `UnknownAgent` when it is reached (`run --strict` refuses the machine)"),
                    );
                }
                let tool_loop = match state.tool_loop.as_ref().and_then(|t| t.options()) {
                    Some(options) => Some(self.tool_loop(&options, name, &at("tool_loop"))?),
                    None => None,
                };
                if tool_loop.is_some() && state.execution.is_some() {
                    self.warn(
                        at("execution"),
                        "has no effect in a `tool_loop` state: each model turn is one call",
                    );
                }
                Some(AgentCall {
                    name: agent.clone(),
                    undeclared,
                    input: self.tree_map(input, &at("input"))?,
                    execution: state.execution.clone().unwrap_or_default(),
                    tool_loop,
                })
            }
        };
        if state.agent.is_none() && state.execution.is_some() {
            self.warn(at("execution"), "has no effect without `agent`");
        }

        let mut output_to_context = Vec::new();
        if let Some(mapping) = &state.output_to_context {
            if children.is_none() && agent.is_none() {
                self.warn(
                    at("output_to_context"),
                    "has no effect: the state has no `agent`, `machine` or `foreach` producing an output",
                );
            }
            for (key, value) in mapping {
                let tree = self.tree(value, &at(&format!("output_to_context.{key}")))?;
                output_to_context.push((key.clone(), tree));
            }
        }

        let is_final = state.is_final();
        let output = match &state.output {
            Some(output) => {
                if !is_final {
                    self.warn(
                        at("output"),
                        "only final states produce an output; it is ignored",
                    );
                }
                Some(self.tree_map(output, &at("output"))?)
            }
            None => None,
        };
        if is_final && !state.transitions.is_empty() {
            self.warn(
                at("transitions"),
                "a final state ends the run; its transitions are never taken",
            );
        }
        if !is_final && state.transitions.is_empty() {
            self.warn(
                format!("data.states.{name}"),
                "the state is not final and has no transitions: a run that reaches it fails with NoTransition",
            );
        }
        if state.agent.is_none() && state.tool_loop.is_some() {
            self.warn(at("tool_loop"), "has no effect without `agent`");
        }
        if state.sampling.is_some() {
            self.warn(at("sampling"), "is reserved by the spec and has no effect");
        }

        Ok(StateDef {
            name: name.to_owned(),
            is_final,
            action: state.action.clone(),
            launch,
            children,
            agent,
            output_to_context,
            output,
            transitions,
            on_error,
        })
    }

    fn condition(&self, source: &str, location: &str) -> Result<Expression, ConfigError> {
        let expression = |message: String| ConfigError::Expression {
            file: self.file.to_owned(),
            location: location.to_owned(),
            message,
        };
        let parsed =
            Expression::parse_with(self.engine, source).map_err(|e| expression(e.to_string()))?;
        for (variable, column) in parsed.root_variables() {
            if !CONDITION_VARIABLES.contains(&variable) {
                return Err(expression(format!(
                    "`{source}` reads unknown variable `{variable}` at column {column} (conditions can read context, input and output)"
                )));
            }
        }
        Ok(parsed)
    }

    fn timeout(
        &self,
        state: &StateDefinition,
        location: String,
    ) -> Result<Option<Duration>, ConfigError> {
        match state.timeout {
            None => Ok(None),
            Some(0.0) => Ok(None),
            Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
                Duration::try_from_secs_f64(seconds)
                    .map(Some)
                    .map_err(|e| self.invalid(location, e.to_string()))
            }
            Some(seconds) => Err(self.invalid(
                location,
                format!("expected a number of seconds ≥ 0 (0 means no limit), found {seconds}"),
            )),
        }
    }

    fn children(
        &mut self,
        name: &str,
        state: &StateDefinition,
        input: &serde_json::Map<String, Value>,
    ) -> Result<Option<Children>, ConfigError> {
        let at = |field: &str| format!("data.states.{name}.{field}");
        let timeout = self.timeout(state, at("timeout"))?;
        let mode = state.mode.unwrap_or_default();
        if let Some(items) = &state.foreach {
            let child = match &state.machine {
                Some(MachineTarget::Single(machine)) => self.child(name, machine)?,
                Some(MachineTarget::List(_)) => {
                    return Err(self.invalid(
                        at("machine"),
                        "`foreach` runs one machine per item, so `machine` must be a single name",
                    ));
                }
                None => {
                    return Err(self.invalid(
                        at("foreach"),
                        "`foreach` needs a `machine` to run for each item",
                    ));
                }
            };
            let as_var = state.as_var.clone().unwrap_or_else(|| "item".to_owned());
            if matches!(as_var.as_str(), "context" | "input" | "output") {
                return Err(self.invalid(
                    at("as"),
                    format!("`{as_var}` is a reserved variable; choose another item name"),
                ));
            }
            let items = self.tree(&Value::String(items.clone()), &at("foreach"))?;
            let key = match &state.key {
                Some(key) => Some(self.tree(&Value::String(key.clone()), &at("key"))?),
                None => None,
            };
            let input = self.tree_map(input, &at("input"))?;
            return Ok(Some(Children::Foreach {
                items,
                as_var,
                key,
                child,
                input,
                mode,
                timeout,
            }));
        }
        for (field, set) in [("as", state.as_var.is_some()), ("key", state.key.is_some())] {
            if set {
                self.warn(at(field), "has no effect without `foreach`");
            }
        }
        match &state.machine {
            None => {
                if state.mode.is_some() || state.timeout.is_some() {
                    self.warn(
                        format!("data.states.{name}"),
                        "`mode` and `timeout` have no effect without `machine` or `foreach`",
                    );
                }
                Ok(None)
            }
            Some(MachineTarget::Single(machine)) => Ok(Some(Children::Single {
                child: self.child(name, machine)?,
                input: self.tree_map(input, &at("input"))?,
                timeout,
            })),
            Some(MachineTarget::List(entries)) => {
                let mut compiled = Vec::with_capacity(entries.len());
                for (index, entry) in entries.iter().enumerate() {
                    if entries[..index].iter().any(|e| e.name == entry.name) {
                        return Err(self.invalid(
                            at("machine"),
                            format!(
                                "machine `{}` is listed twice; outputs are keyed by machine name",
                                entry.name
                            ),
                        ));
                    }
                    let child = self.child(name, &entry.name)?;
                    let tree = match &entry.input {
                        Some(own) => self.tree_map(own, &at(&format!("machine[{index}].input")))?,
                        None => self.tree_map(input, &at("input"))?,
                    };
                    compiled.push((child, tree));
                }
                Ok(Some(Children::List {
                    entries: compiled,
                    mode,
                    timeout,
                }))
            }
        }
    }

    /// Compiles `tool_loop`'s guardrails: numbers at least 0, or templates.
    fn tool_loop(
        &mut self,
        options: &ToolLoopOptions,
        state: &str,
        location: &str,
    ) -> Result<ToolLoopDef, ConfigError> {
        let mut guardrail = |field: &str, value: &Option<Guardrail>| -> Result<_, ConfigError> {
            let at = format!("{location}.{field}");
            match value {
                None => Ok(None),
                Some(Guardrail::Number(n)) if n.is_finite() && *n >= 0.0 => {
                    Ok(Some(GuardrailDef::Number(*n)))
                }
                Some(Guardrail::Number(n)) => Err(self.invalid(
                    at,
                    format!("expected a number at least 0 (0: no bound), got {n}"),
                )),
                Some(Guardrail::Template(source)) => Ok(Some(GuardrailDef::Template {
                    source: source.clone(),
                    template: self.template(source, &at)?,
                })),
            }
        };
        let max_tool_calls = guardrail("max_tool_calls", &options.max_tool_calls)?;
        let max_turns = guardrail("max_turns", &options.max_turns)?;
        let tool_timeout = guardrail("tool_timeout", &options.tool_timeout)?;
        let total_timeout = guardrail("total_timeout", &options.total_timeout)?;
        let max_cost = guardrail("max_cost", &options.max_cost)?;
        let denied_tools = options.denied_tools.clone().unwrap_or_default();
        if let Some(allowed) = &options.allowed_tools
            && allowed.iter().all(|tool| denied_tools.contains(tool))
        {
            self.warn(
                format!("{location}.allowed_tools"),
                "every allowed tool is also denied (or none is allowed): the model is offered no tool",
            );
        }
        let mut machine_tools = Vec::with_capacity(options.machine_tools.len());
        for (tool, offered) in &options.machine_tools {
            let child = self.child(state, tool)?;
            let offered = offered.clone().unwrap_or_default();
            let parameters = match offered.parameters {
                None => serde_json::json!({"type": "object"}),
                Some(schema @ Value::Object(_)) => schema,
                Some(other) => {
                    return Err(self.invalid(
                        format!("{location}.machine_tools.{tool}.parameters"),
                        format!("expected a JSON Schema object, got {other}"),
                    ));
                }
            };
            let mut function = flatmachines_core::JsonMap::new();
            function.insert("name".into(), Value::from(tool.as_str()));
            function.insert(
                "description".into(),
                Value::from(
                    offered
                        .description
                        .unwrap_or_else(|| format!("Runs the machine `{tool}`.")),
                ),
            );
            function.insert("parameters".into(), parameters);
            machine_tools.push(MachineToolDef {
                child,
                definition: flatmachines_core::llm::ToolDefinition {
                    kind: "function".to_owned(),
                    function,
                },
            });
        }
        Ok(ToolLoopDef {
            max_tool_calls,
            max_turns,
            tool_timeout,
            total_timeout,
            max_cost,
            allowed_tools: options.allowed_tools.clone(),
            denied_tools,
            machine_tools,
        })
    }

    fn checkpoint_policy(&mut self, config: &MachineConfig) -> CheckpointPolicy {
        let persistence = config.data.persistence.clone().unwrap_or_default();
        let events = match &persistence.checkpoint_on {
            None => CheckpointEvent::DEFAULT.to_vec(),
            Some(names) => {
                let mut events = Vec::new();
                for name in names {
                    match name.parse::<CheckpointEvent>() {
                        Ok(event) => events.push(event),
                        Err(e) => self.warn("data.persistence.checkpoint_on", e.to_string()),
                    }
                }
                events
            }
        };
        let warn_bytes = match persistence.extra.get("warn_snapshot_bytes") {
            None => Some(CheckpointPolicy::DEFAULT_WARN_BYTES),
            Some(value) => match value.as_u64() {
                Some(0) => None,
                Some(bytes) => Some(usize::try_from(bytes).unwrap_or(usize::MAX)),
                None => {
                    self.warn(
                        "data.persistence.warn_snapshot_bytes",
                        "expected a number of bytes (0 turns the warning off); using 1 MiB",
                    );
                    Some(CheckpointPolicy::DEFAULT_WARN_BYTES)
                }
            },
        };
        let keep = match persistence.extra.get("keep_snapshots") {
            None => None,
            Some(value) => match value.as_u64() {
                Some(count) if count >= 1 => Some(count),
                _ => {
                    self.warn(
                        "data.persistence.keep_snapshots",
                        format!("expected a whole number of snapshots, at least 1, got {value}; keeping every snapshot"),
                    );
                    None
                }
            },
        };
        CheckpointPolicy::new(persistence.enabled, events, warn_bytes).keeping(keep)
    }
}

/// The error for a state naming an agent that `data.agents` does not declare.
pub(crate) fn undeclared_agent<V>(
    file: &Path,
    state: &str,
    agent: &str,
    agents: &IndexMap<String, V>,
) -> ConfigError {
    ConfigError::UnknownReference {
        file: file.to_owned(),
        state: state.to_owned(),
        kind: "agent",
        section: "agents",
        name: agent.to_owned(),
        suggestion: closest(agent, agents.keys().map(String::as_str)),
    }
}
