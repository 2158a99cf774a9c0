//! The machine corpus: every rule of the engine's semantics as a small YAML machine, run
//! here with its output pinned, and compared with the Python reference's output where the
//! case says the two agree.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use flatmachines_engine::{Machine, RunOptions, RunStatus};

struct Case {
    machine: Machine,
    input: serde_json::Map<String, Value>,
    max_steps: Option<u64>,
    reference: String,
}

fn load(path: &Path) -> Case {
    let machine = Machine::from_file(path).unwrap_or_else(|e| panic!("{e}"));
    let test = machine
        .config()
        .metadata
        .get("test")
        .cloned()
        .unwrap_or(Value::Null);
    let input = match test.get("input") {
        Some(Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    Case {
        input,
        max_steps: test.get("max_steps").and_then(Value::as_u64),
        reference: test
            .get("reference")
            .and_then(Value::as_str)
            .unwrap_or("skip")
            .to_owned(),
        machine,
    }
}

/// The outcome of a case as pinned in its snapshot.
fn run(case: &Case) -> Value {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let options = RunOptions {
        execution_id: Some("corpus-run".to_owned()),
        max_steps: case.max_steps,
        parent_execution_id: None,
        ..Default::default()
    };
    let outcome =
        runtime.block_on(common::test_runtime().run(&case.machine, case.input.clone(), options));
    match outcome {
        Ok(outcome) => {
            let status = match outcome.status {
                RunStatus::Completed => json!("completed"),
                RunStatus::StepLimit { limit, state } => {
                    json!({"step_limit": limit, "next_state": state})
                }
                other => json!(format!("{other:?}")),
            };
            json!({
                "status": status,
                "output": outcome.output,
                "steps": outcome.steps,
                "total_api_calls": outcome.total_api_calls,
                "total_cost": outcome.total_cost,
            })
        }
        Err(error) => json!({"error": error.to_string()}),
    }
}

#[test]
fn corpus_outputs() {
    insta::glob!("corpus/*.yml", |path| {
        let case = load(path);
        insta::assert_yaml_snapshot!(run(&case));
    });
}

/// `corpus/reference_outputs.json` holds what the Python reference (flatmachines 1.0.0)
/// returned for each case; `corpus/run_reference.py` regenerates it. Cases marked
/// `reference: same` must match it, and cases marked `differs` must not (each such case is a
/// divergence listed in docs/divergences.md).
#[test]
fn corpus_agrees_with_the_reference() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let text = std::fs::read_to_string(dir.join("reference_outputs.json"))
        .expect("tests/corpus/reference_outputs.json");
    let reference: BTreeMap<String, Value> = serde_json::from_str(&text).expect("valid JSON");
    let mut checked = 0;
    for (file, expected) in &reference {
        let case = load(&dir.join(file));
        let ours = run(&case);
        let reference_failed = expected.get("error").is_some();
        let same = if reference_failed {
            ours.get("error").is_some()
        } else {
            ours.get("output") == expected.get("output")
        };
        match case.reference.as_str() {
            "same" => assert!(same, "{file}: ours {ours} vs reference {expected}"),
            "differs" => assert!(
                !same,
                "{file} is marked `differs` but matches the reference"
            ),
            other => panic!("{file}: unexpected reference mark `{other}`"),
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} cases were compared");
}
