//! Pictures of machines: Mermaid and Graphviz text of the states, transitions with their
//! conditions, error routes, and the child machines each state runs.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use flatmachines_core::config::{MachineTarget, OnError, StateDefinition};

use crate::machine::Machine;

/// The output format of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// A Mermaid `stateDiagram-v2`, for Markdown renderers.
    Mermaid,
    /// A Graphviz `digraph`, for `dot -Tsvg`.
    Dot,
}

/// What a state does, in one short line per part.
fn work(state: &StateDefinition) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(action) = &state.action {
        parts.push(format!("action: {action}"));
    }
    if let Some(launch) = &state.launch {
        parts.push(format!("launch: {}", launch.0.join(", ")));
    }
    match (&state.foreach, &state.machine) {
        (Some(items), Some(MachineTarget::Single(child))) => {
            let mode = state
                .mode
                .map(|m| format!(" ({m:?})").to_lowercase())
                .unwrap_or_default();
            parts.push(format!("foreach {} → {child}{mode}", plain(items)));
        }
        (_, Some(target)) => {
            let names: Vec<&str> = target.names().collect();
            let mode = match (target, state.mode) {
                (MachineTarget::List(_), Some(mode)) => format!(" ({mode:?})").to_lowercase(),
                _ => String::new(),
            };
            parts.push(format!("machine: {}{mode}", names.join(", ")));
        }
        _ => {}
    }
    if let Some(agent) = &state.agent {
        let strategy = state
            .execution
            .as_ref()
            .filter(|e| e.kind != "default")
            .map(|e| format!(" ({})", e.kind))
            .unwrap_or_default();
        parts.push(format!("agent: {agent}{strategy}"));
    }
    parts
}

/// A template shown without its braces: `{{ context.items }}` → `context.items`.
fn plain(template: &str) -> String {
    template
        .replace("{{", "")
        .replace("}}", "")
        .trim()
        .to_owned()
}

/// Error routes out of a state: (error type or `*`, target).
fn error_routes(state: &StateDefinition) -> Vec<(String, String)> {
    match &state.on_error {
        None => Vec::new(),
        Some(OnError::State(target)) => vec![("error".to_owned(), target.clone())],
        Some(OnError::ByType(map)) => map
            .iter()
            .map(|(error_type, target)| (error_type.clone(), target.clone()))
            .collect(),
    }
}

/// Renders `machine` in `format`.
pub fn render(machine: &Machine, format: GraphFormat) -> String {
    match format {
        GraphFormat::Mermaid => mermaid(machine),
        GraphFormat::Dot => dot(machine),
    }
}

fn mermaid_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A distinct Mermaid id for every state: names that differ only in characters Mermaid ids
/// cannot hold (`a-b`, `a_b`, `a b`) would otherwise merge into one node. The first keeps
/// the plain id; later ones get the first free `_2`, `_3`, … suffix.
fn mermaid_ids<'a>(names: impl IntoIterator<Item = &'a String>) -> HashMap<&'a str, String> {
    let mut used = HashSet::new();
    let mut ids = HashMap::new();
    for name in names {
        let base = mermaid_id(name);
        let mut id = base.clone();
        let mut n = 2;
        while used.contains(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        used.insert(id.clone());
        ids.insert(name.as_str(), id);
    }
    ids
}

fn mermaid_text(text: &str) -> String {
    text.replace('"', "'")
        .replace(':', "∶")
        .replace(['\n', '\r'], " ")
}

fn mermaid(machine: &Machine) -> String {
    let definition = &machine.set.machines[0];
    let states = &definition.config.data.states;
    let ids = mermaid_ids(states.keys());
    let id_of = |name: &str| ids.get(name).cloned().unwrap_or_else(|| mermaid_id(name));
    let mut out = String::from("stateDiagram-v2\n");
    let _ = writeln!(out, "    %% {}", mermaid_text(&definition.name));
    for (name, state) in states {
        let id = id_of(name);
        let mut label = vec![name.clone()];
        label.extend(work(state));
        let _ = writeln!(out, "    {id}: {}", mermaid_text(&label.join(" — ")));
    }
    let initial = states.get_index(definition.initial).map(|(n, _)| n);
    if let Some(initial) = initial {
        let _ = writeln!(out, "    [*] --> {}", id_of(initial));
    }
    for (name, state) in states {
        let from = id_of(name);
        for transition in &state.transitions {
            let to = id_of(&transition.to);
            match transition
                .condition
                .as_deref()
                .filter(|c| !c.trim().is_empty())
            {
                Some(condition) => {
                    let _ = writeln!(out, "    {from} --> {to}: {}", mermaid_text(condition));
                }
                None => {
                    let _ = writeln!(out, "    {from} --> {to}");
                }
            }
        }
        for (error_type, target) in error_routes(state) {
            let _ = writeln!(
                out,
                "    {from} --> {}: on_error {}",
                id_of(&target),
                mermaid_text(&error_type)
            );
        }
        if state.is_final() {
            let _ = writeln!(out, "    {from} --> [*]");
        }
    }
    out
}

fn dot_text(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(['\n', '\r'], " ")
}

fn dot(machine: &Machine) -> String {
    let definition = &machine.set.machines[0];
    let states = &definition.config.data.states;
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_text(&definition.name));
    out.push_str("    rankdir=LR;\n    node [shape=box, style=rounded, fontname=\"Helvetica\"];\n    edge [fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("    __start [shape=point, width=0.15];\n");
    for (index, (name, state)) in states.iter().enumerate() {
        let mut label = vec![name.clone()];
        label.extend(work(state));
        let label = label
            .iter()
            .map(|l| dot_text(l))
            .collect::<Vec<_>>()
            .join("\\n");
        let shape = if state.is_final() {
            ", peripheries=2"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "    \"{}\" [label=\"{label}\"{shape}];",
            dot_text(name)
        );
        if index == definition.initial {
            let _ = writeln!(out, "    __start -> \"{}\";", dot_text(name));
        }
    }
    for (name, state) in states {
        for transition in &state.transitions {
            let label = transition
                .condition
                .as_deref()
                .filter(|c| !c.trim().is_empty())
                .map(|c| format!(" [label=\"{}\"]", dot_text(c)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    \"{}\" -> \"{}\"{label};",
                dot_text(name),
                dot_text(&transition.to)
            );
        }
        for (error_type, target) in error_routes(state) {
            let _ = writeln!(
                out,
                "    \"{}\" -> \"{}\" [label=\"on_error {}\", style=dashed, color=firebrick];",
                dot_text(name),
                dot_text(&target),
                dot_text(&error_type)
            );
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE: &str = r#"
spec: flatmachine
data:
  name: "review \"loop\""
  agents: {critic: ./critic.yml}
  machines: {child: ./c.yml}
  states:
    start:
      type: initial
      foreach: "{{ context.items }}"
      machine: child
      mode: any
      on_error: {Timeout: recover, default: failed}
      transitions: [{to: review}]
    review:
      agent: critic
      execution: {type: retry}
      transitions:
        - condition: "context.score >= 8 and context.name == \"x\""
          to: done
        - to: review
    recover: {launch: [child], transitions: [{to: done}]}
    failed: {type: final}
    done: {type: final}
"#;

    fn machine() -> Machine {
        let dir = std::env::temp_dir().join(format!("fm-graph-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(
            dir.join("c.yml"),
            "spec: flatmachine\ndata: {states: {s: {type: final}}}\n",
        );
        Machine::from_yaml(MACHINE, &dir).unwrap()
    }

    #[test]
    fn mermaid_shows_states_conditions_errors_and_children() {
        insta::assert_snapshot!(render(&machine(), GraphFormat::Mermaid));
    }

    #[test]
    fn dot_shows_states_conditions_errors_and_children() {
        insta::assert_snapshot!(render(&machine(), GraphFormat::Dot));
    }

    #[test]
    fn states_differing_only_in_punctuation_stay_distinct_in_mermaid() {
        let yaml = r#"
spec: flatmachine
data:
  states:
    "a-b": {type: initial, transitions: [{to: "a b"}]}
    "a b": {transitions: [{to: a_b}]}
    a_b: {transitions: [{to: a_b_2}]}
    a_b_2: {type: final}
"#;
        let machine = Machine::from_yaml(yaml, ".").unwrap();
        let text = render(&machine, GraphFormat::Mermaid);
        // Four nodes, four ids, and the edges between the right ones.
        for line in [
            "    a_b: a-b",
            "    a_b_2: a b",
            "    a_b_3: a_b",
            "    a_b_2_2: a_b_2",
            "    [*] --> a_b",
            "    a_b --> a_b_2",
            "    a_b_2 --> a_b_3",
            "    a_b_3 --> a_b_2_2",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }
}
