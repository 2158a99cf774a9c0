//! The per-document checks beyond JSON Schema.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use flatmachines_core::config::{
    AgentRef, MachineRef, ModelSpec, OnError, OutputFieldDef, StateKind,
};
use flatmachines_core::{AgentConfig, MachineConfig, ProfilesConfig};

use super::positions::pointer_of;
use super::{Severity, Source, Validator};
use crate::definition::MachineDef;
use crate::loader;

/// The execution types every runtime has.
const EXECUTION_TYPES: [&str; 4] = ["default", "retry", "parallel", "mdap_voting"];

/// The hook classes every runtime has.
const HOOK_CLASSES: [&str; 6] = [
    "LoggingHooks",
    "logging",
    "MetricsHooks",
    "metrics",
    "CompositeHooks",
    "composite",
];

/// The output field types of the flatagent spec.
const OUTPUT_TYPES: [&str; 7] = ["str", "int", "float", "bool", "json", "list", "object"];

fn dir_of(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl Validator {
    pub(super) fn machine(&mut self, source: &Source) {
        match MachineConfig::from_value(source.value.clone(), &source.file) {
            Ok((config, _)) => self.machine_references(source, &config),
            Err(error) => {
                self.config_error(source, &error);
                return;
            }
        }
        let set = match loader::load_file(&source.file, &self.limits) {
            Ok(set) => set,
            Err(error) => {
                self.config_error(source, &error);
                return;
            }
        };
        // A state naming an undeclared agent loads (it fails when reached, as in the
        // reference), but validating reports it as the error it is.
        let mut undeclared = Vec::new();
        for machine in set.machines.iter().filter(|m| m.file == source.file) {
            for state in &machine.states {
                if let Some(call) = state.agent.as_ref().filter(|call| call.undeclared) {
                    undeclared.push((
                        format!("data.states.{}.agent", state.name),
                        crate::compile::undeclared_agent(
                            &machine.file,
                            &state.name,
                            &call.name,
                            &machine.config.data.agents,
                        ),
                    ));
                }
            }
        }
        for (_, error) in &undeclared {
            self.config_error(source, error);
        }
        for warning in &set.warnings {
            let is_undeclared = undeclared
                .iter()
                .any(|(location, _)| *location == warning.location);
            if warning.file == source.file && !is_undeclared {
                let d = source.diagnostic(
                    Severity::Warning,
                    &pointer_of(&warning.location),
                    &warning.message,
                );
                self.push(d);
            }
        }
        let Some(root) = set.machines.first() else {
            return;
        };
        for chain in super::cycles::child_cycles(&set) {
            let names: Vec<&str> = chain
                .iter()
                .map(|id| set.machines[*id].name.as_str())
                .collect();
            let first = &set.machines[chain[0]];
            let entry = first
                .children
                .iter()
                .find(|(_, id)| Some(*id) == chain.get(1))
                .map(|(name, _)| name.as_str())
                .unwrap_or_default();
            let depth = set.limits.get(flatmachines_core::Limit::MachineDepth);
            let message = format!(
                "child machines run each other: {}; a run nests until the machine depth limit ({depth}) stops it, unless a condition ends the recursion",
                names.join(" -> ")
            );
            let d = if chain[0] == 0 {
                source.diagnostic(
                    Severity::Warning,
                    &format!("/data/machines/{}", escape(entry)),
                    message,
                )
            } else {
                source.diagnostic(Severity::Warning, "/data/machines", message)
            };
            self.push(d);
        }
        self.graph(source, root);
    }

    /// Reachability, final states and default transitions, plus names only a runtime knows.
    fn graph(&mut self, source: &Source, machine: &MachineDef) {
        let data = &machine.config.data;
        let names: Vec<&String> = data.states.keys().collect();
        let mut reachable = vec![false; names.len()];
        let mut queue = VecDeque::from([machine.initial]);
        while let Some(index) = queue.pop_front() {
            if std::mem::replace(&mut reachable[index], true) {
                continue;
            }
            let state = &machine.states[index];
            let mut next: Vec<usize> = state.transitions.iter().map(|t| t.to).collect();
            if let Some((_, definition)) = data.states.get_index(index) {
                let targets: Vec<&String> = match &definition.on_error {
                    Some(OnError::State(target)) => vec![target],
                    Some(OnError::ByType(map)) => map.values().collect(),
                    None => Vec::new(),
                };
                next.extend(targets.iter().filter_map(|t| data.states.get_index_of(*t)));
            }
            queue.extend(next.into_iter().filter(|n| !reachable[*n]));
        }
        let initial = names[machine.initial];
        for (index, name) in names.iter().enumerate() {
            let pointer = format!("/data/states/{}", escape(name));
            if !reachable[index] {
                let d = source.diagnostic(
                    Severity::Warning,
                    &pointer,
                    format!(
                        "state `{name}` can never be reached from the initial state `{initial}`"
                    ),
                );
                self.push(d);
            }
            let state = &data.states[index];
            let transitions = &state.transitions;
            if state.kind != Some(StateKind::Final)
                && !transitions.is_empty()
                && transitions
                    .iter()
                    .all(|t| t.condition.as_deref().is_some_and(|c| !c.trim().is_empty()))
            {
                let d = source.diagnostic(
                    Severity::Warning,
                    &format!("{pointer}/transitions"),
                    format!("state `{name}` has no transition without a condition: a run fails with NoTransition when none matches"),
                );
                self.push(d);
            }
            if let Some(execution) = &state.execution
                && !EXECUTION_TYPES.contains(&execution.kind.as_str())
            {
                let d = source.diagnostic(
                    Severity::Error,
                    &format!("{pointer}/execution/type"),
                    format!(
                        "unknown execution type `{}` (expected {})",
                        execution.kind,
                        EXECUTION_TYPES.join(", ")
                    ),
                );
                self.push(d);
            }
        }
        let final_reachable = machine
            .states
            .iter()
            .enumerate()
            .any(|(index, state)| state.is_final && reachable[index]);
        if !final_reachable {
            let d = source.diagnostic(
                Severity::Warning,
                "/data/states",
                "no final state can be reached: every run ends at its step limit or fails",
            );
            self.push(d);
        }
        if let Some(class) = data.hooks.as_ref().and_then(|h| h.class.as_deref())
            && !HOOK_CLASSES.contains(&class)
            && !self.hook_classes.contains(class)
        {
            let d = source.diagnostic(
                    Severity::Warning,
                    "/data/hooks/class",
                    format!("hook class `{class}` is not built in: the program running this machine must register it"),
                );
            self.push(d);
        }
        if let (Some(hooks), Some(check)) = (data.hooks.as_ref(), self.hook_args)
            && let Err(reason) = check(hooks)
        {
            let d = source.diagnostic(Severity::Error, "/data/hooks/args", reason);
            self.push(d);
        }
    }

    /// Follows the machine, agent and profile files a machine names.
    fn machine_references(&mut self, source: &Source, config: &MachineConfig) {
        let dir = dir_of(&source.file);
        let data = &config.data;
        for reference in data.machines.values() {
            // An unreadable one is reported where it is named, by the loader's check.
            if let MachineRef::Path(path) = reference
                && dir.join(path).is_file()
            {
                self.file(&dir.join(path), Some("flatmachine"));
            }
        }
        for (name, reference) in &data.agents {
            let pointer = format!("/data/agents/{}", escape(name));
            let path = match reference {
                AgentRef::Path(path) => Some(path),
                AgentRef::Typed {
                    kind,
                    reference: Some(path),
                    ..
                } if kind == AgentRef::DEFAULT_TYPE => Some(path),
                AgentRef::Typed { kind, .. } if kind != AgentRef::DEFAULT_TYPE => {
                    let d = source.diagnostic(
                        Severity::Warning,
                        &pointer,
                        format!("agent `{name}` is served by the `{kind}` adapter, which the program running this machine must register"),
                    );
                    self.push(d);
                    None
                }
                _ => None,
            };
            let Some(path) = path else { continue };
            let file = dir.join(path);
            if file.is_file() {
                self.file(&file, Some("flatagent"));
            } else {
                let d = source.diagnostic(
                    Severity::Error,
                    &pointer,
                    format!(
                        "agent `{name}` refers to `{path}` ({}), which does not exist",
                        super::shown(&file)
                    ),
                );
                self.push(d);
            }
        }
        let profiles = dir.join("profiles.yml");
        if profiles.is_file() {
            self.file(&profiles, Some("flatprofiles"));
        }
    }

    pub(super) fn agent(&mut self, source: &Source) {
        let (config, warnings) = match AgentConfig::from_value(source.value.clone(), &source.file) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.config_error(source, &error);
                return;
            }
        };
        for warning in warnings {
            let d = source.diagnostic(
                Severity::Warning,
                &pointer_of(&warning.location),
                warning.message,
            );
            self.push(d);
        }
        if let Some(output) = &config.data.output {
            for (field, definition) in output {
                self.output_field(
                    source,
                    &format!("/data/output/{}", escape(field)),
                    definition,
                );
            }
        }
        if let Some(tools) = &config.data.tools
            && let Err(error) = flatmachines_core::llm::ToolDefinition::check_all(tools)
        {
            let d = source.diagnostic(
                Severity::Error,
                &format!("/data/tools/{}", error.index),
                format!("this tool {}", error.message),
            );
            self.push(d);
        }
        if let Some(mcp) = &config.data.mcp {
            self.mcp(source, mcp);
        }
        let dir = dir_of(&source.file);
        let profiles_file = dir.join("profiles.yml");
        let profile = match &config.data.model {
            Some(ModelSpec::Profile(name)) => Some(name.clone()),
            Some(ModelSpec::Config(model)) => model.profile.clone(),
            None => None,
        };
        if let Some(profile) = profile {
            let pointer = match &config.data.model {
                Some(ModelSpec::Profile(_)) => "/data/model",
                _ => "/data/model/profile",
            };
            self.profile_exists(source, &profiles_file, &profile, pointer);
        }
        if profiles_file.is_file() {
            self.file(&profiles_file, Some("flatprofiles"));
        }
    }

    /// An agent's `mcp:`: each server definition usable, each filter pattern well formed and
    /// naming a declared server; the programs and URLs are recorded for the report.
    fn mcp(&mut self, source: &Source, mcp: &flatmachines_core::config::McpConfig) {
        use flatmachines_core::config::{McpTransport, ToolFilter};

        for (name, server) in &mcp.servers {
            let pointer = format!("/data/mcp/servers/{}", escape(name));
            match server.transport() {
                Err(message) => {
                    let d = source.diagnostic(
                        Severity::Error,
                        &pointer,
                        format!("MCP server `{name}`: {message}"),
                    );
                    self.push(d);
                }
                Ok(transport) => {
                    let (starts, calls) = match transport {
                        McpTransport::Stdio { command } => {
                            let line = std::iter::once(command)
                                .chain(server.args.iter().map(String::as_str))
                                .collect::<Vec<_>>()
                                .join(" ");
                            (Some(line), None)
                        }
                        McpTransport::Http { url } => (None, Some(url.to_owned())),
                    };
                    if let Some(cwd) = &server.cwd {
                        let dir = dir_of(&source.file).join(cwd);
                        if !dir.is_dir() {
                            let d = source.diagnostic(
                                Severity::Warning,
                                &format!("{pointer}/cwd"),
                                format!(
                                    "MCP server `{name}` is started in `{cwd}` ({}), which is not a directory",
                                    super::shown(&dir)
                                ),
                            );
                            self.push(d);
                        }
                    }
                    let used = super::ToolServerUse {
                        file: source.file.clone(),
                        server: name.clone(),
                        starts,
                        calls,
                    };
                    if !self.report.tool_servers.contains(&used) {
                        self.report.tool_servers.push(used);
                    }
                }
            }
        }
        let Some(filter) = &mcp.tool_filter else {
            return;
        };
        for (list, patterns) in [("allow", &filter.allow), ("deny", &filter.deny)] {
            for (index, pattern) in patterns.iter().flatten().enumerate() {
                let servers = mcp.servers.keys().map(String::as_str);
                if let Err(message) = ToolFilter::check_pattern(pattern, servers) {
                    let d = source.diagnostic(
                        Severity::Error,
                        &format!("/data/mcp/tool_filter/{list}/{index}"),
                        message,
                    );
                    self.push(d);
                }
            }
        }
    }

    fn profile_exists(
        &mut self,
        source: &Source,
        profiles_file: &Path,
        profile: &str,
        pointer: &str,
    ) {
        if !profiles_file.is_file() {
            let d = source.diagnostic(
                Severity::Warning,
                pointer,
                format!("profile `{profile}` is looked up in a profiles.yml next to the agent or its machine; there is none next to this agent"),
            );
            self.push(d);
            return;
        }
        let Ok(text) = std::fs::read_to_string(profiles_file) else {
            return;
        };
        let Ok((profiles, _)) = ProfilesConfig::parse(
            &text,
            profiles_file,
            flatmachines_core::config::Format::from_path(profiles_file),
        ) else {
            return;
        };
        if !profiles.data.model_profiles.contains_key(profile) {
            let d = source.diagnostic(
                Severity::Error,
                pointer,
                format!(
                    "profile `{profile}` is not in {} (it has: {})",
                    super::shown(profiles_file),
                    profiles
                        .data
                        .model_profiles
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            self.push(d);
        }
    }

    fn output_field(&mut self, source: &Source, pointer: &str, field: &OutputFieldDef) {
        if !OUTPUT_TYPES.contains(&field.kind.as_str()) {
            let d = source.diagnostic(
                Severity::Error,
                &format!("{pointer}/type"),
                format!(
                    "unknown output type `{}` (expected {})",
                    field.kind,
                    OUTPUT_TYPES.join(", ")
                ),
            );
            self.push(d);
        }
        if let Some(items) = &field.items {
            self.output_field(source, &format!("{pointer}/items"), items);
        }
        if let Some(properties) = &field.properties {
            for (name, property) in properties {
                self.output_field(
                    source,
                    &format!("{pointer}/properties/{}", escape(name)),
                    property,
                );
            }
        }
    }

    pub(super) fn profiles(&mut self, source: &Source) {
        if let Err(error) = ProfilesConfig::from_value(source.value.clone(), &source.file) {
            self.config_error(source, &error);
        }
    }
}
