//! Generated nested and repeated YAML and templates finish within the documented bounds:
//! each either loads and renders, with output no larger than `template_bytes`, or is refused
//! with the error of the bound it reached. Never a panic, never a run without end.
//!
//! The inputs are hostile by design, so the properties run in a child process (this test
//! binary again) under `prlimit` (2 GiB of address space, 120 s of CPU) and a kill after
//! 300 s: should a bound ever stop holding, the child dies, not the machine.

mod common;

use proptest::prelude::*;
use serde_json::{Value, json};

use flatmachines_core::config::ConfigError;
use flatmachines_core::{Limit, Limits};
use flatmachines_engine::{Machine, RunError, RunOptions, Runtime};

/// The test that runs the properties; the wrapper below starts it.
const INNER: &str = "generated_inputs_finish_within_the_bounds";

#[test]
fn generated_inputs_run_in_a_bounded_child_process() {
    common::run_bounded_child(INNER);
}

/// Small bounds, so that generated inputs reach them quickly.
fn limits() -> Limits {
    let mut limits = Limits::new();
    for (limit, value) in [
        (Limit::TemplateFuel, 200_000),
        (Limit::TemplateBytes, 64 * 1024),
        (Limit::ConfigNodes, 50_000),
        (Limit::ConfigDepth, 64),
    ] {
        limits.set(limit, value).expect("a valid bound");
    }
    limits
}

/// A machine whose context holds `anchors` (lines of `key: value`) and `blob` (flow YAML)
/// and whose final output renders `template`.
fn machine(anchors: &str, blob: &str, template: &str) -> String {
    let anchors: String = anchors
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    format!(
        "spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  name: generated\n  context:\n{anchors}    blob: {blob}\n  states:\n    start:\n      type: initial\n      transitions: [{{to: done}}]\n    done:\n      type: final\n      output:\n        r: {template}\n",
        template = serde_json::to_string(template).expect("a string encodes"),
    )
}

/// `depth` nested flow lists, as one scalar-free line.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// `levels` anchors, each a list holding `fan` aliases of the one before.
fn repeated(levels: usize, fan: usize) -> (String, String) {
    let mut anchors = String::from("a0: &a0 [1, 2, 3, 4]\n");
    for level in 1..=levels {
        let items = vec![format!("*a{}", level - 1); fan].join(", ");
        anchors.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    (anchors, format!("*a{levels}"))
}

enum Ending {
    Output(Value),
    Limit(String),
}

fn run(yaml: &str) -> Ending {
    let limits = limits();
    let machine = match Machine::from_yaml_within(yaml, ".", &limits) {
        Ok(machine) => machine,
        Err(ConfigError::Limit { limit, .. }) => return Ending::Limit(limit.name().to_owned()),
        // The fixed bound on template expressions (vendor/minijinja/PATCHES.md).
        Err(other) if other.to_string().contains("maximum expression nesting") => {
            return Ending::Limit(other.to_string());
        }
        Err(other) => panic!("neither loaded nor refused on a bound: {other}\n{yaml}"),
    };
    let runtime = Runtime::builder().build();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match tokio.block_on(runtime.run(&machine, Default::default(), RunOptions::default())) {
        Ok(outcome) => Ending::Output(outcome.output),
        Err(RunError::Failed { error, .. }) if error.message.contains("limit `") => {
            Ending::Limit(error.message)
        }
        Err(other) => panic!("neither ran nor stopped at a bound: {other}\n{yaml}"),
    }
}

fn rendered_bytes(output: &Value) -> usize {
    output.to_string().len()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    #[ignore = "run by generated_inputs_run_in_a_bounded_child_process, under prlimit"]
    fn generated_inputs_finish_within_the_bounds(
        depth in 1usize..400,
        levels in 0usize..8,
        fan in 1usize..16,
        doublings in 0usize..40,
        loops in proptest::collection::vec(1u64..2000, 1..5),
        terms in 1usize..3000,
    ) {
        // Nesting: refused exactly past `config_depth` (64; the document, `data` and
        // `context` are three levels above the lists).
        let ending = run(&machine("", &nested(depth), "ok"));
        match ending {
            Ending::Output(output) => prop_assert!(depth + 3 <= 64, "depth {depth} loaded: {output}"),
            Ending::Limit(name) => {
                prop_assert!(depth + 3 > 64, "depth {depth} refused");
                prop_assert_eq!(name, "config_depth");
            }
        }

        // Repetition: refused once the aliases expand past `config_nodes` (50 000). Anchor
        // `a{l}` expands to `1 + fan * size(a{l-1})` nodes; every anchor and the blob count.
        let (anchors, blob) = repeated(levels, fan);
        let mut size = 5u128;
        let mut nodes = size;
        for _ in 0..levels {
            size = 1 + fan as u128 * size;
            nodes += size;
        }
        nodes += size;
        match run(&machine(&anchors, &blob, "{{ context.blob | length }}")) {
            Ending::Output(output) => prop_assert!(nodes <= 50_000, "{nodes} nodes loaded: {output}"),
            Ending::Limit(name) => {
                // The rest of the machine is a few dozen nodes more.
                prop_assert!(nodes > 49_900, "{nodes} nodes refused by {name}");
                prop_assert_eq!(name, "config_nodes");
            }
        }

        // A string doubled in a loop: refused past `template_bytes` or `template_fuel`.
        let doubling = format!(
            "{{% set ns = namespace(s='ab') %}}{{% for i in range({doublings}) %}}{{% set ns.s = ns.s ~ ns.s %}}{{% endfor %}}{{{{ ns.s }}}}"
        );
        match run(&machine("", "0", &doubling)) {
            Ending::Output(output) => {
                prop_assert!(rendered_bytes(&output) <= 64 * 1024 + 64);
                prop_assert_eq!(output["r"].as_str().map(str::len), Some(2usize << doublings));
            }
            Ending::Limit(message) => prop_assert!(doublings >= 10, "{doublings} doublings: {message}"),
        }

        // Nested loops: refused once their work passes `template_fuel` (200 000).
        let mut nested_loops = String::new();
        for (index, count) in loops.iter().enumerate() {
            nested_loops.push_str(&format!("{{% for i{index} in range({count}) %}}"));
        }
        nested_loops.push('.');
        for _ in &loops {
            nested_loops.push_str("{% endfor %}");
        }
        let iterations: u64 = loops.iter().product();
        match run(&machine("", "0", &nested_loops)) {
            Ending::Output(output) => {
                prop_assert!(iterations <= 200_000, "{iterations} iterations rendered");
                prop_assert!(rendered_bytes(&output) <= 64 * 1024 + 64);
            }
            Ending::Limit(message) => prop_assert!(
                iterations > 1_000,
                "{iterations} iterations refused: {message}"
            ),
        }

        // A long operator chain: loads and renders (no stack overflow), or is refused.
        let chain = format!("{{{{ {} }}}}", vec!["1"; terms].join(" + "));
        match run(&machine("", "0", &chain)) {
            Ending::Output(output) => prop_assert_eq!(&output["r"], &json!(terms)),
            Ending::Limit(message) => prop_assert!(terms > 400, "{terms} terms: {message}"),
        }
    }
}
