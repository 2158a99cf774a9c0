//! The `spec: flatmachine` document.

use std::path::Path;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::{
    ConfigError, ConfigWarning, Envelope, Format, describe, parse_envelope, parse_text,
    unknown_keys,
};
use crate::{AgentRef, JsonMap};

/// A parsed `spec: flatmachine` document.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// `spec_version`.
    pub spec_version: String,
    /// The machine.
    pub data: MachineData,
    /// Free-form metadata.
    pub metadata: JsonMap,
}

impl MachineConfig {
    /// The `spec` value of machine documents.
    pub const SPEC: &'static str = "flatmachine";

    /// Parses machine config text. `file` names the source in errors and warnings.
    pub fn parse(
        text: &str,
        file: &Path,
        format: Format,
    ) -> Result<(MachineConfig, Vec<ConfigWarning>), ConfigError> {
        Self::from_value(parse_text(text, file, format)?, file)
    }

    /// Reads a machine config from an already parsed document (an inline child machine).
    pub fn from_value(
        document: Value,
        file: &Path,
    ) -> Result<(MachineConfig, Vec<ConfigWarning>), ConfigError> {
        let mut warnings = Vec::new();
        if let Some(Value::Object(data)) = document.get("data") {
            refuse_unimplemented(data, file)?;
            unknown_keys(data, MachineData::FIELDS, file, "data", &mut warnings);
            if let Some(Value::Object(states)) = data.get("states") {
                for (name, state) in states {
                    if let Value::Object(state) = state {
                        let location = format!("data.states.{name}");
                        unknown_keys(
                            state,
                            StateDefinition::FIELDS,
                            file,
                            &location,
                            &mut warnings,
                        );
                    }
                }
            }
        }
        let envelope: Envelope<MachineData> = parse_envelope(document, file, Self::SPEC)?;
        warnings.extend(envelope.warnings);
        if envelope.data.states.is_empty() {
            return Err(ConfigError::NoStates {
                file: file.to_owned(),
            });
        }
        let config = MachineConfig {
            spec_version: envelope.spec_version,
            data: envelope.data,
            metadata: envelope.metadata,
        };
        Ok((config, warnings))
    }

    /// The machine's name: `data.name`, or `unnamed-machine` like the reference.
    pub fn name(&self) -> &str {
        self.data.name.as_deref().unwrap_or("unnamed-machine")
    }
}

/// Fields of later spec versions that change what a machine does, which this runtime does
/// not implement yet: `(where, field, version that introduced it, what it does)`. Ignoring one
/// would run a different machine than its author wrote (an approval gate skipped, hooks never
/// called), so a document using one is refused rather than warned about.
pub(crate) const UNIMPLEMENTED_FIELDS: &[(FieldSite, &str, &str, &str)] = &[
    (
        FieldSite::State,
        "wait_for",
        "1.2.0",
        "parks the execution until a signal arrives on a channel",
    ),
    (
        FieldSite::State,
        "hooks",
        "3.0.0",
        "attaches hooks to one state",
    ),
    (
        FieldSite::Machine,
        "lifecycle_hooks",
        "3.0.0",
        "attaches machine hooks by registry name, in place of `data.hooks`",
    ),
];

/// Where a field of [`UNIMPLEMENTED_FIELDS`] sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldSite {
    /// In `data`.
    Machine,
    /// In a state, `data.states.NAME`.
    State,
}

/// Refuses the first field of [`UNIMPLEMENTED_FIELDS`] that `data` uses.
fn refuse_unimplemented(data: &JsonMap, file: &Path) -> Result<(), ConfigError> {
    let refuse =
        |location: String, field: &str, version: &str, effect: &str| ConfigError::Unsupported {
            file: file.to_owned(),
            location,
            message: format!(
                "`{field}` (spec {version}) {effect}; this runtime does not implement it yet, and \
                 running the machine without it would skip what it asks for"
            ),
        };
    for (site, field, version, effect) in UNIMPLEMENTED_FIELDS {
        match site {
            FieldSite::Machine if data.contains_key(*field) => {
                return Err(refuse(format!("data.{field}"), field, version, effect));
            }
            FieldSite::State => {
                let Some(Value::Object(states)) = data.get("states") else {
                    continue;
                };
                for (name, state) in states {
                    if let Value::Object(state) = state
                        && state.contains_key(*field)
                    {
                        return Err(refuse(
                            format!("data.states.{name}.{field}"),
                            field,
                            version,
                            effect,
                        ));
                    }
                }
            }
            FieldSite::Machine => {}
        }
    }
    Ok(())
}

/// The `data` of a machine document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = require_states)]
pub struct MachineData {
    /// Machine name.
    #[serde(default)]
    pub name: Option<String>,
    /// `simple` (default) or `cel`.
    #[serde(default)]
    #[schemars(with = "Option<ExpressionEngineName>")]
    pub expression_engine: Option<String>,
    /// Initial context, rendered from `input` (templates).
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<JsonMap>")]
    pub context: JsonMap,
    /// Agents by name.
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<IndexMap<String, AgentRef>>")]
    pub agents: IndexMap<String, AgentRef>,
    /// Child machines by name.
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<IndexMap<String, MachineRef>>")]
    pub machines: IndexMap<String, MachineRef>,
    /// States, in declaration order.
    #[serde(default, deserialize_with = "states")]
    #[schemars(with = "IndexMap<String, Option<StateDefinition>>")]
    pub states: IndexMap<String, StateDefinition>,
    /// Settings (`max_steps`, `backends`, and any other key).
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<MachineSettings>")]
    pub settings: MachineSettings,
    /// Checkpointing.
    #[serde(default)]
    pub persistence: Option<PersistenceConfig>,
    /// Hooks to attach.
    #[serde(default)]
    pub hooks: Option<HooksConfig>,
}

impl MachineData {
    /// The fields the spec defines for `data`.
    pub const FIELDS: &'static [&'static str] = &[
        "name",
        "expression_engine",
        "context",
        "agents",
        "machines",
        "states",
        "settings",
        "persistence",
        "hooks",
    ];
}

/// `states` has a serde default (so a missing one gets the loader's message), yet a document
/// without states is not a machine: the schema requires the field, as the reference's does.
fn require_states(schema: &mut schemars::Schema) {
    let required = schema
        .ensure_object()
        .entry("required")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let Some(list) = required.as_array_mut()
        && !list.iter().any(|name| name == "states")
    {
        list.push("states".into());
    }
}

/// The expression engines a machine can name (for the schema; the field stays a string so an
/// unknown name gets the loader's message).
#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code, reason = "describes the schema only")]
enum ExpressionEngineName {
    Simple,
    Cel,
}

/// `type: initial` or `type: final`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// The entry state.
    Initial,
    /// An exit state; its `output` is the machine's output.
    Final,
}

/// How a multi-child state completes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Wait for every child; failed children become `{"_error", "_error_type"}` entries.
    #[default]
    Settled,
    /// Take the first child to finish; the rest finish in the background.
    Any,
}

/// One state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct StateDefinition {
    /// `initial`, `final`, or neither.
    #[serde(rename = "type", default)]
    pub kind: Option<StateKind>,
    /// Agent to call.
    #[serde(default)]
    pub agent: Option<String>,
    /// Child machine(s) to run and wait for.
    #[serde(default)]
    pub machine: Option<MachineTarget>,
    /// Hook action to run.
    #[serde(default)]
    pub action: Option<String>,
    /// How to call the agent.
    #[serde(default)]
    pub execution: Option<ExecutionConfig>,
    /// Where to go when the state fails.
    #[serde(default)]
    pub on_error: Option<OnError>,
    /// Input for the agent or machine (templates).
    #[serde(default)]
    pub input: Option<JsonMap>,
    /// Context updates from `output` (templates).
    #[serde(default)]
    pub output_to_context: Option<JsonMap>,
    /// A final state's output (templates).
    #[serde(default)]
    pub output: Option<JsonMap>,
    /// Ordered transitions.
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Vec<Transition>>")]
    pub transitions: Vec<Transition>,
    /// Runs the agent in a machine-driven tool loop: `true`, or its guardrails.
    #[serde(default)]
    pub tool_loop: Option<ToolLoopSetting>,
    /// Reserved by the spec; has no effect.
    #[serde(default)]
    pub sampling: Option<String>,
    /// A template yielding the list to fan out over.
    #[serde(default)]
    pub foreach: Option<String>,
    /// The item variable's name in `foreach` (default `item`).
    #[serde(rename = "as", default)]
    pub as_var: Option<String>,
    /// A template giving each `foreach` result's key; results form a list without it.
    #[serde(default)]
    pub key: Option<String>,
    /// `settled` (default) or `any`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Seconds to wait for children (0: no limit).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Machine(s) to start without waiting.
    #[serde(default)]
    pub launch: Option<OneOrMany>,
    /// Input for launched machines (templates).
    #[serde(default)]
    pub launch_input: Option<JsonMap>,
}

impl StateDefinition {
    /// The fields the spec defines for a state.
    pub const FIELDS: &'static [&'static str] = &[
        "type",
        "agent",
        "machine",
        "action",
        "execution",
        "on_error",
        "input",
        "output_to_context",
        "output",
        "transitions",
        "tool_loop",
        "sampling",
        "foreach",
        "as",
        "key",
        "mode",
        "timeout",
        "launch",
        "launch_input",
    ];

    /// Whether this is a final state.
    pub fn is_final(&self) -> bool {
        self.kind == Some(StateKind::Final)
    }
}

/// A state's `tool_loop`: `true` (no guardrails), `false` (no loop), or the guardrails.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ToolLoopSetting {
    /// `true` or `false`.
    Enabled(bool),
    /// The loop's guardrails (boxed: they are much larger than a flag).
    Options(Box<ToolLoopOptions>),
}

// By hand rather than `untagged`, so that a misspelt guardrail is named in the error instead
// of "did not match any variant".
impl<'de> Deserialize<'de> for ToolLoopSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(deserializer)? {
            Value::Bool(on) => Ok(ToolLoopSetting::Enabled(on)),
            value @ Value::Object(_) => ToolLoopOptions::deserialize(value)
                .map(|options| ToolLoopSetting::Options(Box::new(options)))
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected `true`, `false` or a mapping of guardrails, found {}",
                super::describe(&other)
            ))),
        }
    }
}

impl ToolLoopSetting {
    /// The guardrails, when the loop is on.
    pub fn options(&self) -> Option<ToolLoopOptions> {
        match self {
            ToolLoopSetting::Enabled(false) => None,
            ToolLoopSetting::Enabled(true) => Some(ToolLoopOptions::default()),
            ToolLoopSetting::Options(options) => Some((**options).clone()),
        }
    }
}

/// The guardrails of a tool loop. The numbers may be templates (`"{{ context.budget }}"`),
/// rendered when the loop starts; 0 or absent means no bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolLoopOptions {
    /// The most tool calls the loop makes; a turn asking for more ends it (`max_tool_calls`).
    #[serde(default)]
    pub max_tool_calls: Option<Guardrail>,
    /// The most model turns (`max_turns`).
    #[serde(default)]
    pub max_turns: Option<Guardrail>,
    /// Only these tools are offered and may be called.
    #[serde(default)]
    pub allowed_tools: Option<Vec<String>>,
    /// These tools are never offered, and calls to them are refused.
    #[serde(default)]
    pub denied_tools: Option<Vec<String>>,
    /// Seconds one tool call may take; a slower call is a tool error the model reads.
    #[serde(default)]
    pub tool_timeout: Option<Guardrail>,
    /// Seconds the whole loop may take, checked before each model turn (`timeout`).
    #[serde(default)]
    pub total_timeout: Option<Guardrail>,
    /// The most the loop's model turns may cost, checked before each turn (`cost_limit`).
    #[serde(default)]
    pub max_cost: Option<Guardrail>,
    /// Child machines (keys of `data.machines`) offered to the model as tools: a call runs
    /// the machine as a child with the call's arguments as its input, and its output is the
    /// result. Each may say what the model reads about it (this runtime's extension).
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<IndexMap<String, Option<MachineTool>>>")]
    pub machine_tools: IndexMap<String, Option<MachineTool>>,
}

/// How a child machine is offered as a tool (`tool_loop.machine_tools.NAME`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineTool {
    /// What the tool does, for the model (default: "Runs the machine `NAME`.").
    #[serde(default)]
    pub description: Option<String>,
    /// The JSON Schema of the machine's input, which the model's arguments must follow
    /// (default: any object).
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// A number, or a template rendering to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Guardrail {
    /// A number.
    Number(f64),
    /// A template rendered against the context when the loop starts.
    Template(String),
}

/// One transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Transition {
    /// Expression; no condition means "always".
    #[serde(default)]
    pub condition: Option<String>,
    /// Target state.
    pub to: String,
}

/// How a state calls its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionConfig {
    /// `default`, `retry`, `parallel`, `mdap_voting`, or a registered custom type.
    #[serde(rename = "type", default = "default_execution_type")]
    pub kind: String,
    /// Retry: seconds to wait before each retry.
    #[serde(default)]
    pub backoffs: Option<Vec<f64>>,
    /// Retry: random factor applied to each backoff (0.1 = ±10%).
    #[serde(default)]
    pub jitter: Option<f64>,
    /// Retry: treat an empty output as a failure.
    #[serde(default)]
    pub retry_on_empty: Option<bool>,
    /// Parallel: number of samples.
    #[serde(default)]
    pub n_samples: Option<u32>,
    /// Voting: lead needed to win.
    #[serde(default)]
    pub k_margin: Option<u32>,
    /// Voting: most samples to draw.
    #[serde(default)]
    pub max_candidates: Option<u32>,
    /// Voting: responses longer than this many (estimated) tokens are red-flagged.
    #[serde(default)]
    pub max_response_tokens: Option<u64>,
}

fn default_execution_type() -> String {
    "default".to_owned()
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            kind: default_execution_type(),
            backoffs: None,
            jitter: None,
            retry_on_empty: None,
            n_samples: None,
            k_margin: None,
            max_candidates: None,
            max_response_tokens: None,
        }
    }
}

/// `on_error`: one recovery state, or one per error type (with `default`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum OnError {
    /// Every error goes to this state.
    State(String),
    /// Error type name → state; the `default` key catches the rest.
    ByType(IndexMap<String, String>),
}

impl TryFrom<Value> for OnError {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match value {
            Value::String(state) => Ok(OnError::State(state)),
            Value::Object(map) => map
                .into_iter()
                .map(|(error_type, state)| match state {
                    Value::String(state) => Ok((error_type, state)),
                    other => Err(format!(
                        "`{error_type}` must name a state, found {}",
                        describe(&other)
                    )),
                })
                .collect::<Result<_, _>>()
                .map(OnError::ByType),
            other => Err(format!(
                "expected a state name or a mapping of error types to states, found {}",
                describe(&other)
            )),
        }
    }
}

impl From<OnError> for Value {
    fn from(on_error: OnError) -> Self {
        match on_error {
            OnError::State(state) => Value::String(state),
            OnError::ByType(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ),
        }
    }
}

/// A name, or a list of names (`launch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct OneOrMany(pub Vec<String>);

impl TryFrom<Value> for OneOrMany {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        let expected = "expected a machine name or a list of machine names";
        match value {
            Value::String(name) => Ok(OneOrMany(vec![name])),
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(name) => Ok(name),
                    other => Err(format!(
                        "{expected}, found {} in the list",
                        describe(&other)
                    )),
                })
                .collect::<Result<_, _>>()
                .map(OneOrMany),
            other => Err(format!("{expected}, found {}", describe(&other))),
        }
    }
}

impl From<OneOrMany> for Value {
    fn from(names: OneOrMany) -> Self {
        Value::Array(names.0.into_iter().map(Value::String).collect())
    }
}

/// `machine:` — one child, or several run in parallel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum MachineTarget {
    /// `machine: child`.
    Single(String),
    /// `machine: [a, b]` or `machine: [{name: a, input: {…}}, …]`.
    List(Vec<MachineEntry>),
}

/// One entry of a `machine:` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MachineEntry {
    /// The machine's name in `machines:`.
    pub name: String,
    /// Input for this machine only (templates); the state's `input` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<JsonMap>,
}

impl MachineTarget {
    /// The machine names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let slice: &[MachineEntry] = match self {
            MachineTarget::Single(_) => &[],
            MachineTarget::List(entries) => entries,
        };
        let single = match self {
            MachineTarget::Single(name) => Some(name.as_str()),
            MachineTarget::List(_) => None,
        };
        single
            .into_iter()
            .chain(slice.iter().map(|e| e.name.as_str()))
    }
}

impl TryFrom<Value> for MachineTarget {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        let expected = "expected a machine name, a list of names, or a list of {name, input}";
        match value {
            Value::String(name) => Ok(MachineTarget::Single(name)),
            Value::Array(items) => {
                let mut entries = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    let entry = match item {
                        Value::String(name) => MachineEntry { name, input: None },
                        Value::Object(mut map) => {
                            let name = match map.remove("name") {
                                Some(Value::String(name)) => name,
                                _ => return Err(format!("entry {index} needs a `name` string")),
                            };
                            let input = match map.remove("input") {
                                None | Some(Value::Null) => None,
                                Some(Value::Object(input)) => Some(input),
                                Some(other) => {
                                    return Err(format!(
                                        "entry {index}: `input` must be a mapping, found {}",
                                        describe(&other)
                                    ));
                                }
                            };
                            MachineEntry { name, input }
                        }
                        other => {
                            return Err(format!(
                                "{expected}; entry {index} is {}",
                                describe(&other)
                            ));
                        }
                    };
                    entries.push(entry);
                }
                if entries.is_empty() {
                    return Err("the machine list is empty".to_owned());
                }
                Ok(MachineTarget::List(entries))
            }
            other => Err(format!("{expected}, found {}", describe(&other))),
        }
    }
}

impl From<MachineTarget> for Value {
    fn from(target: MachineTarget) -> Self {
        match target {
            MachineTarget::Single(name) => Value::String(name),
            MachineTarget::List(entries) => serde_json::to_value(entries).unwrap_or(Value::Null),
        }
    }
}

/// A `machines:` entry: a file path or an inline machine document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum MachineRef {
    /// A path, relative to the referencing config's directory.
    Path(String),
    /// A whole `spec: flatmachine` document.
    Inline(Box<Value>),
}

impl TryFrom<Value> for MachineRef {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match value {
            Value::String(path) => Ok(MachineRef::Path(path)),
            Value::Object(mut map) => {
                if map.contains_key("spec") {
                    return Ok(MachineRef::Inline(Box::new(Value::Object(map))));
                }
                if let Some(Value::String(path)) = map.remove("path") {
                    return Ok(MachineRef::Path(path));
                }
                if let Some(inline) = map.remove("inline") {
                    return Ok(MachineRef::Inline(Box::new(inline)));
                }
                Err("expected a path, an inline `spec: flatmachine` document, `{path}` or `{inline}`".to_owned())
            }
            other => Err(format!(
                "expected a path or an inline machine document, found {}",
                describe(&other)
            )),
        }
    }
}

impl From<MachineRef> for Value {
    fn from(reference: MachineRef) -> Self {
        match reference {
            MachineRef::Path(path) => Value::String(path),
            MachineRef::Inline(document) => *document,
        }
    }
}

/// `persistence:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PersistenceConfig {
    /// Whether to checkpoint at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Backend name: `memory` (default), `local`, or any other a build provides.
    #[serde(default = "memory")]
    pub backend: String,
    /// Events to checkpoint (default: all but `launch`).
    #[serde(default)]
    pub checkpoint_on: Option<Vec<String>>,
    /// Backend-specific options.
    #[serde(flatten)]
    pub extra: JsonMap,
}

fn yes() -> bool {
    true
}

fn memory() -> String {
    "memory".to_owned()
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            enabled: true,
            backend: memory(),
            checkpoint_on: None,
            extra: JsonMap::new(),
        }
    }
}

/// `settings:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MachineSettings {
    /// Step limit of the machine.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Reserved by the spec.
    #[serde(default)]
    pub parallel_fallback: Option<String>,
    /// Which backend families to use.
    #[serde(default)]
    pub backends: Option<BackendConfig>,
    /// Every other setting, kept for hooks and adapters.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// `settings.backends:` — backend family per runtime interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackendConfig {
    /// Checkpoints (default `memory`).
    #[serde(default)]
    pub persistence: Option<String>,
    /// Execution lock (default `none`).
    #[serde(default)]
    pub locking: Option<String>,
    /// Results (default `memory`).
    #[serde(default)]
    pub results: Option<String>,
    /// Worker registration (default `memory`).
    #[serde(default)]
    pub registration: Option<String>,
    /// Work pools (default `memory`).
    #[serde(default)]
    pub work: Option<String>,
    /// Database file for the sqlite backends.
    #[serde(default)]
    pub sqlite_path: Option<String>,
    /// Other backend options.
    #[serde(flatten)]
    pub extra: JsonMap,
}

/// `hooks:` — resolved by `class` through a registry of hook types.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HooksConfig {
    /// A Python file in the reference; informational here.
    #[serde(default)]
    pub file: Option<String>,
    /// A Python module in the reference; informational here.
    #[serde(default)]
    pub module: Option<String>,
    /// The registered hook type to instantiate.
    #[serde(default)]
    pub class: Option<String>,
    /// Arguments for the hook type.
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<JsonMap>")]
    pub args: JsonMap,
}

fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn states<'de, D>(deserializer: D) -> Result<IndexMap<String, StateDefinition>, D::Error>
where
    D: Deserializer<'de>,
{
    let states: Option<IndexMap<String, Option<StateDefinition>>> =
        Option::deserialize(deserializer)?;
    Ok(states
        .unwrap_or_default()
        .into_iter()
        .map(|(name, state)| (name, state.unwrap_or_default()))
        .collect())
}

/// Schemas of the fields read through `TryFrom<Value>`, which derive cannot see.
mod schemas {
    use std::borrow::Cow;

    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

    use super::{MachineEntry, MachineRef, MachineTarget, OnError, OneOrMany};

    impl JsonSchema for OnError {
        fn schema_name() -> Cow<'static, str> {
            "OnError".into()
        }

        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "A recovery state for every error, or error type names (and `default`) mapped to states.",
                "anyOf": [
                    {"type": "string"},
                    {"type": "object", "additionalProperties": {"type": "string"}}
                ]
            })
        }
    }

    impl JsonSchema for OneOrMany {
        fn schema_name() -> Cow<'static, str> {
            "MachineNames".into()
        }

        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "A machine name or a list of machine names.",
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}}
                ]
            })
        }
    }

    impl JsonSchema for MachineTarget {
        fn schema_name() -> Cow<'static, str> {
            "MachineTarget".into()
        }

        fn json_schema(generator: &mut SchemaGenerator) -> Schema {
            let entry = generator.subschema_for::<MachineEntry>();
            json_schema!({
                "description": "One machine, or several run in parallel (names or {name, input}).",
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "minItems": 1, "items": {"anyOf": [{"type": "string"}, entry]}}
                ]
            })
        }
    }

    impl JsonSchema for MachineRef {
        fn schema_name() -> Cow<'static, str> {
            "MachineRef".into()
        }

        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "A path to a machine file, an inline `spec: flatmachine` document, `{path}` or `{inline}`.",
                "anyOf": [
                    {"type": "string"},
                    {"type": "object", "required": ["spec"]},
                    {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}},
                    {"type": "object", "required": ["inline"], "properties": {"inline": {"type": "object"}}}
                ]
            })
        }
    }
}
