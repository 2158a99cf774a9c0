//! A machine as the executor runs it: compiled once from its config.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use flatmachines_core::config::{ExecutionConfig, MachineConfig, Mode};
use flatmachines_core::{CheckpointEvent, ConfigWarning};
use flatmachines_expr::Expression;

use crate::template::{Template, TemplateEngine, TemplateTree};

/// Index of a machine in its [`MachineSet`].
pub(crate) type MachineId = usize;

/// A machine and every machine it references, compiled, sharing one template environment.
#[derive(Debug)]
pub(crate) struct MachineSet {
    /// The machines; index 0 is the one that was loaded.
    pub(crate) machines: Vec<MachineDef>,
    pub(crate) templates: TemplateEngine,
    pub(crate) warnings: Vec<ConfigWarning>,
    /// The bounds the set runs with: the caller's, then the root machine's settings.
    pub(crate) limits: flatmachines_core::Limits,
}

/// One compiled machine.
#[derive(Debug)]
pub(crate) struct MachineDef {
    pub(crate) name: String,
    /// The file it came from (for inline machines, the parent's file).
    pub(crate) file: PathBuf,
    /// Where its relative references resolve.
    pub(crate) config_dir: PathBuf,
    /// Its own config file, canonical; `None` for machines given as a document or inline.
    pub(crate) source_file: Option<PathBuf>,
    pub(crate) config: MachineConfig,
    /// The machines under `machines:`, by name.
    pub(crate) children: IndexMap<String, MachineId>,
    /// The initial context, rendered from `input`.
    pub(crate) context: TemplateTree,
    pub(crate) states: Vec<StateDef>,
    pub(crate) initial: usize,
    /// `settings.max_steps`.
    pub(crate) max_steps: Option<u64>,
    pub(crate) checkpoints: CheckpointPolicy,
}

impl MachineDef {
    pub(crate) fn state_index(&self, name: &str) -> Option<usize> {
        self.config.data.states.get_index_of(name)
    }
}

/// Which checkpoints a machine writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointPolicy {
    pub(crate) enabled: bool,
    events: u8,
    /// Snapshots larger than this are reported (once per execution).
    pub(crate) warn_bytes: Option<usize>,
    /// `persistence.keep_snapshots`: how many of its newest snapshots an execution keeps.
    pub(crate) keep: Option<u64>,
}

impl CheckpointPolicy {
    /// The snapshot size reported when `persistence.warn_snapshot_bytes` is not set.
    pub(crate) const DEFAULT_WARN_BYTES: usize = 1024 * 1024;

    pub(crate) fn new(
        enabled: bool,
        events: impl IntoIterator<Item = CheckpointEvent>,
        warn_bytes: Option<usize>,
    ) -> Self {
        let events = events
            .into_iter()
            .fold(0u8, |bits, event| bits | Self::bit(event));
        CheckpointPolicy {
            enabled,
            events,
            warn_bytes,
            keep: None,
        }
    }

    pub(crate) fn keeping(self, keep: Option<u64>) -> Self {
        CheckpointPolicy { keep, ..self }
    }

    fn bit(event: CheckpointEvent) -> u8 {
        1 << (event as u8)
    }

    /// Whether `event` is checkpointed. The outbox (`launch`), the agent's answer
    /// (`agent_result`) and the tool loop's journal (`tool_call`) always are when persistence
    /// is on: they are what make launches exactly-once and keep a resume from calling the
    /// agent or a tool again.
    pub(crate) fn wants(self, event: CheckpointEvent) -> bool {
        self.enabled
            && (matches!(
                event,
                CheckpointEvent::Launch | CheckpointEvent::AgentResult | CheckpointEvent::ToolCall
            ) || self.events & Self::bit(event) != 0)
    }
}

/// One compiled state.
#[derive(Debug)]
pub(crate) struct StateDef {
    pub(crate) name: String,
    pub(crate) is_final: bool,
    pub(crate) action: Option<String>,
    pub(crate) launch: Option<Launch>,
    pub(crate) children: Option<Children>,
    pub(crate) agent: Option<AgentCall>,
    pub(crate) output_to_context: Vec<(String, TemplateTree)>,
    /// A final state's output.
    pub(crate) output: Option<TemplateTree>,
    pub(crate) transitions: Vec<TransitionDef>,
    pub(crate) on_error: Option<OnErrorDef>,
}

/// `launch` + `launch_input`.
#[derive(Debug)]
pub(crate) struct Launch {
    pub(crate) machines: Vec<(String, MachineId)>,
    pub(crate) input: TemplateTree,
}

/// A child machine to run: its name in `machines:` and its id.
#[derive(Debug, Clone)]
pub(crate) struct ChildRef {
    pub(crate) name: String,
    pub(crate) id: MachineId,
}

/// The blocking child work of a state.
#[derive(Debug)]
pub(crate) enum Children {
    /// `machine: child`.
    Single {
        child: ChildRef,
        input: TemplateTree,
        timeout: Option<Duration>,
    },
    /// `machine: [a, b]`, each with its own input tree.
    List {
        entries: Vec<(ChildRef, TemplateTree)>,
        mode: Mode,
        timeout: Option<Duration>,
    },
    /// `foreach` + `machine`.
    Foreach {
        /// A template, or a bare path (`context.xs`) as the reference allows.
        items: TemplateTree,
        as_var: String,
        key: Option<TemplateTree>,
        child: ChildRef,
        input: TemplateTree,
        mode: Mode,
        timeout: Option<Duration>,
    },
}

/// `agent` + `input` + `execution` + `tool_loop`.
#[derive(Debug)]
pub(crate) struct AgentCall {
    pub(crate) name: String,
    /// The agent is not under `data.agents`: the state fails when it is reached, as in the
    /// reference, or binding refuses the machine when strict.
    pub(crate) undeclared: bool,
    pub(crate) input: TemplateTree,
    pub(crate) execution: ExecutionConfig,
    pub(crate) tool_loop: Option<ToolLoopDef>,
}

/// A compiled `tool_loop`: its guardrails (rendered when the loop starts) and tool lists.
#[derive(Debug, Default)]
pub(crate) struct ToolLoopDef {
    pub(crate) max_tool_calls: Option<GuardrailDef>,
    pub(crate) max_turns: Option<GuardrailDef>,
    pub(crate) tool_timeout: Option<GuardrailDef>,
    pub(crate) total_timeout: Option<GuardrailDef>,
    pub(crate) max_cost: Option<GuardrailDef>,
    /// Only these tools, when given.
    pub(crate) allowed_tools: Option<Vec<String>>,
    pub(crate) denied_tools: Vec<String>,
    /// Child machines offered as tools, named as the model calls them.
    pub(crate) machine_tools: Vec<MachineToolDef>,
}

/// A child machine offered to a tool loop's model as a tool.
#[derive(Debug)]
pub(crate) struct MachineToolDef {
    pub(crate) child: ChildRef,
    pub(crate) definition: flatmachines_core::llm::ToolDefinition,
}

impl ToolLoopDef {
    /// The child machine offered as tool `name`, if any.
    pub(crate) fn machine_tool(&self, name: &str) -> Option<&MachineToolDef> {
        self.machine_tools
            .iter()
            .find(|tool| tool.child.name == name)
    }

    /// Whether the lists let the loop offer and call `tool`.
    pub(crate) fn permits(&self, tool: &str) -> bool {
        !self.denied_tools.iter().any(|t| t == tool)
            && self
                .allowed_tools
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|t| t == tool))
    }
}

/// A guardrail: a number, or a template rendering to one.
#[derive(Debug)]
pub(crate) enum GuardrailDef {
    Number(f64),
    Template { source: String, template: Template },
}

/// One compiled transition.
#[derive(Debug)]
pub(crate) struct TransitionDef {
    pub(crate) condition: Option<Expression>,
    pub(crate) to: usize,
}

/// A compiled `on_error`.
#[derive(Debug)]
pub(crate) enum OnErrorDef {
    Always(usize),
    ByType {
        routes: Vec<(String, usize)>,
        default: Option<usize>,
    },
}

impl OnErrorDef {
    /// The recovery state for `error_type`: its own entry, then the reference's name for it,
    /// then `default`.
    pub(crate) fn route(&self, error_type: &str) -> Option<usize> {
        match self {
            OnErrorDef::Always(state) => Some(*state),
            OnErrorDef::ByType { routes, default } => {
                let find = |name: &str| routes.iter().find(|(t, _)| t == name).map(|(_, s)| *s);
                find(error_type)
                    .or_else(|| crate::error_types::reference_alias(error_type).and_then(find))
                    .or(*default)
            }
        }
    }
}
