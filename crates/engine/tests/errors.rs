//! Bad configs and failing runs each get one clear message: checked at load time where they
//! can be, before anything runs.

mod common;

use std::path::Path;

use serde_json::json;

use flatmachines_engine::{Machine, RunOptions, Runtime};

fn load_error(yaml: &str, dir: &Path) -> String {
    match Machine::from_yaml(yaml, dir) {
        Ok(_) => panic!("expected a load error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn prepare_error(yaml: &str, runtime: &Runtime) -> String {
    let machine = Machine::from_yaml(yaml, ".").unwrap_or_else(|e| panic!("{e}"));
    match runtime.prepare(&machine) {
        Ok(_) => panic!("expected a prepare error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "spec: flatmachine\nspec_version: \"1.0.0\"\n";

#[test]
fn load_time_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken_child.yml"),
        format!("{HEAD}data:\n  states:\n    a: {{transitions: [{{to: nowhere}}]}}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ok_child.yml"),
        format!("{HEAD}data:\n  states:\n    s: {{type: final}}\n"),
    )
    .unwrap();
    let cases: Vec<(&str, String)> = vec![
        (
            "malformed YAML",
            "spec: flatmachine\ndata:\n  states: {a: [}\n".into(),
        ),
        (
            "wrong spec",
            "spec: flatagent\nspec_version: \"1.0.0\"\ndata: {}\n".into(),
        ),
        ("no states", format!("{HEAD}data:\n  name: empty\n")),
        (
            "two initial states",
            format!(
                "{HEAD}data:\n  states:\n    a: {{type: initial, transitions: [{{to: b}}]}}\n    b: {{type: initial}}\n"
            ),
        ),
        (
            "transition to an unknown state",
            format!(
                "{HEAD}data:\n  states:\n    start: {{transitions: [{{to: revew}}]}}\n    review: {{type: final}}\n"
            ),
        ),
        (
            "on_error to an unknown state",
            format!(
                "{HEAD}data:\n  states:\n    start: {{on_error: {{Timeout: retry}}, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
        ),
        (
            "unknown machine reference",
            format!(
                "{HEAD}data:\n  machines: {{worker: ./ok_child.yml}}\n  states:\n    start: {{machine: workers, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
        ),
        (
            "unknown launch reference",
            format!(
                "{HEAD}data:\n  states:\n    start: {{launch: [audit], transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
        ),
        (
            "missing child file",
            format!(
                "{HEAD}data:\n  machines: {{child: ./missing.yml}}\n  states:\n    s: {{type: final}}\n"
            ),
        ),
        (
            "child with an error",
            format!(
                "{HEAD}data:\n  machines: {{child: ./broken_child.yml}}\n  states:\n    s: {{type: final}}\n"
            ),
        ),
        (
            "template syntax error",
            format!(
                "{HEAD}data:\n  states:\n    start:\n      machine: c\n      input: {{x: \"{{{{ context.x \"}}\n      transitions: [{{to: done}}]\n    done: {{type: final}}\n  machines: {{c: ./ok_child.yml}}\n"
            ),
        ),
        (
            "template syntax error in the context",
            format!(
                "{HEAD}data:\n  context: {{n: \"{{% if %}}\"}}\n  states:\n    s: {{type: final}}\n"
            ),
        ),
        (
            "expression syntax error",
            format!(
                "{HEAD}data:\n  states:\n    start: {{transitions: [{{condition: \"context.score >= \", to: done}}]}}\n    done: {{type: final}}\n"
            ),
        ),
        (
            "expression reads an unknown variable",
            format!(
                "{HEAD}data:\n  states:\n    start: {{transitions: [{{condition: \"score >= 8\", to: done}}]}}\n    done: {{type: final}}\n"
            ),
        ),
        (
            "foreach without a machine",
            format!(
                "{HEAD}data:\n  states:\n    start: {{foreach: \"{{{{ context.xs }}}}\", transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
        ),
        (
            "negative timeout",
            format!(
                "{HEAD}data:\n  machines: {{c: ./ok_child.yml}}\n  states:\n    s: {{type: final, machine: c, timeout: -1}}\n"
            ),
        ),
        (
            "unknown engine",
            format!("{HEAD}data:\n  expression_engine: lua\n  states:\n    s: {{type: final}}\n"),
        ),
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|(name, yaml)| format!("{name}:\n  {}", load_error(yaml, dir.path())))
        .collect();
    insta::assert_snapshot!(rendered.join("\n"));
}

/// An undeclared agent loads with a warning naming it, as the reference loads it; a strict
/// runtime refuses it with the load-time error of before, and a lenient one fails the state
/// when it is reached, with a type `on_error` routes.
#[test]
fn undeclared_agents_warn_at_load_and_fail_when_reached_unless_strict() {
    let yaml = format!(
        "{HEAD}data:\n  agents: {{writer: ./writer.yml}}\n  context: {{go: '{{{{ input.go }}}}'}}\n  states:\n    start: {{type: initial, transitions: [{{condition: 'context.go', to: ask}}, {{to: done}}]}}\n    ask: {{agent: writr, transitions: [{{to: done}}]}}\n    done: {{type: final, output: {{ok: true}}}}\n"
    );
    let machine = Machine::from_yaml(&yaml, ".").unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = machine.warnings().iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(warnings.join("\n"), @"<inline>.yml: `data.states.ask.agent`: agent `writr` is not declared under `data.agents` (did you mean `writer`?); the state fails with `UnknownAgent` when it is reached (`run --strict` refuses the machine)");

    let strict = Runtime::builder().strict_references(true).build();
    insta::assert_snapshot!(prepare_error(&yaml, &strict), @"<inline>.yml: state `ask` uses agent `writr`, which is not declared under `data.agents` (did you mean `writer`?)");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let lenient = Runtime::default();
    // Not reached: the run never needs the agent.
    let outcome = runtime
        .block_on(
            lenient.run(
                &machine,
                json!({"go": false})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                RunOptions::default(),
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.output, json!({"ok": true}));
    // Reached: the state fails with `UnknownAgent`, naming the agent.
    let error = runtime
        .block_on(lenient.run(
            &machine,
            json!({"go": true}).as_object().cloned().unwrap_or_default(),
            RunOptions::default(),
        ))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("(UnknownAgent)") && error.contains("`writr`"),
        "{error}"
    );
}

#[test]
fn prepare_time_errors() {
    let runtime = Runtime::default();
    let cases = [
        (
            "flatagent with no adapter",
            format!(
                "{HEAD}data:\n  agents: {{writer: ./writer.yml}}\n  states:\n    start: {{agent: writer, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
        ),
        (
            "custom agent type with no adapter",
            format!(
                "{HEAD}data:\n  agents: {{coder: {{type: smolagents, ref: pkg.agent}}}}\n  states:\n    start: {{agent: coder, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
        ),
        (
            "unknown hook class",
            format!(
                "{HEAD}data:\n  hooks: {{file: ./hooks.py, class: MyHooks}}\n  states:\n    s: {{type: final}}\n"
            ),
        ),
        (
            "hooks without a class",
            format!(
                "{HEAD}data:\n  hooks: {{module: pkg.hooks}}\n  states:\n    s: {{type: final}}\n"
            ),
        ),
        (
            "unavailable persistence backend",
            format!(
                "{HEAD}data:\n  persistence: {{enabled: true, backend: local}}\n  states:\n    s: {{type: final}}\n"
            ),
        ),
        (
            "a child asks for an unavailable backend",
            format!(
                "{HEAD}data:\n  machines:\n    c: {{spec: flatmachine, data: {{persistence: {{backend: sqlite}}, states: {{s: {{type: final}}}}}}}}\n  states:\n    s: {{type: final, machine: c}}\n"
            ),
        ),
        (
            "unavailable result backend",
            format!(
                "{HEAD}data:\n  settings: {{backends: {{results: redis}}}}\n  states:\n    s: {{type: final}}\n"
            ),
        ),
        (
            "unknown execution type",
            format!(
                "{HEAD}data:\n  agents: {{echo: {{type: test}}}}\n  states:\n    start: {{agent: echo, execution: {{type: majority}}, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
        ),
        (
            "bad retry options",
            format!(
                "{HEAD}data:\n  agents: {{echo: {{type: test}}}}\n  states:\n    start: {{agent: echo, execution: {{type: retry, jitter: 3}}, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
        ),
    ];
    let runtime_with_agents = common::test_runtime();
    let rendered: Vec<String> = cases
        .iter()
        .map(|(name, yaml)| {
            let rt = if name.contains("execution") || name.contains("retry") {
                &runtime_with_agents
            } else {
                &runtime
            };
            format!("{name}:\n  {}", prepare_error(yaml, rt))
        })
        .collect();
    insta::assert_snapshot!(rendered.join("\n"));
}

#[tokio::test]
async fn run_time_errors() {
    let runtime = common::test_runtime();
    let cases = [
        (
            "foreach over a non-list",
            format!(
                "{HEAD}data:\n  name: fan\n  context: {{xs: \"{{{{ input.xs }}}}\"}}\n  machines:\n    c: {{spec: flatmachine, data: {{states: {{s: {{type: final}}}}}}}}\n  states:\n    start: {{foreach: \"{{{{ context.xs }}}}\", machine: c, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
            json!({"xs": "not a list"}),
        ),
        (
            "undefined value in a template",
            format!(
                "{HEAD}data:\n  name: t\n  states:\n    start: {{type: final, output: {{x: \"{{{{ context.a.b }}}}\"}}}}\n"
            ),
            json!({}),
        ),
        (
            "failing agent",
            format!(
                "{HEAD}data:\n  name: a\n  agents: {{fail: {{type: test}}}}\n  states:\n    start: {{agent: fail, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
            json!({}),
        ),
        (
            "hook chose an unknown state",
            format!(
                "{HEAD}data:\n  name: h\n  hooks: {{class: TestHooks, args: {{redirect_from: start, redirect_to: nowhere}}}}\n  states:\n    start: {{transitions: [{{to: done}}]}}\n    done: {{type: final}}\n"
            ),
            json!({}),
        ),
    ];
    let mut rendered = Vec::new();
    for (name, yaml, input) in cases {
        let machine = Machine::from_yaml(&yaml, ".").unwrap_or_else(|e| panic!("{e}"));
        let error = runtime
            .run(&machine, common::object(input), RunOptions::default())
            .await
            .expect_err(name);
        rendered.push(format!("{name}:\n  {error}"));
    }
    insta::assert_snapshot!(rendered.join("\n"));
}

#[tokio::test]
async fn bad_execution_ids_are_rejected() {
    let machine = Machine::from_yaml(
        &format!("{HEAD}data:\n  states:\n    s: {{type: final}}\n"),
        ".",
    )
    .unwrap();
    for id in ["../escape", "a/b", ""] {
        let options = RunOptions {
            execution_id: Some(id.to_owned()),
            max_steps: None,
            parent_execution_id: None,
            ..Default::default()
        };
        let error = Runtime::default()
            .run(&machine, Default::default(), options)
            .await
            .expect_err(id);
        assert!(
            error.to_string().starts_with("invalid input: execution id"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn cel_conditions_choose_transitions_and_their_errors_fail_the_run() {
    let yaml = format!(
        "{HEAD}data:\n  expression_engine: cel\n  context: {{xs: '{{{{ input.xs }}}}'}}\n  states:\n    start:\n      type: initial\n      transitions:\n        - condition: \"context.xs.all(x, x > 0) && context.xs.map(x, x * 2)[0] == 4\"\n          to: positive\n        - condition: \"context.xs[0] / 0 > 1\"\n          to: positive\n        - to: other\n    positive: {{type: final, output: {{kind: positive}}}}\n    other: {{type: final, output: {{kind: other}}}}\n"
    );
    let machine = Machine::from_yaml(&yaml, ".").unwrap_or_else(|e| panic!("{e}"));
    let runtime = Runtime::default();
    let input =
        |xs: serde_json::Value| json!({ "xs": xs }).as_object().cloned().unwrap_or_default();
    let outcome = runtime
        .run(&machine, input(json!([2, 3])), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.output, json!({"kind": "positive"}));
    let failed = runtime
        .run(&machine, input(json!([-1])), RunOptions::default())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(failed.contains("ExpressionError"), "{failed}");
    assert!(
        failed.to_lowercase().contains("division by zero"),
        "{failed}"
    );
}
