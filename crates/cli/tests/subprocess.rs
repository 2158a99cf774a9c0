//! Child machines as separate processes: `run --launch subprocess` starts each child as a
//! detached `flatmachines run --execution-id … --parent-id …`, and the child's output comes
//! back through the store's result backend.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use flatmachines::backends::open_store;
use flatmachines::core::{ReadOptions, result_uri};

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_flatmachines")
}

fn flatmachines(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("flatmachines runs")
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write a fixture");
}

const CHILD: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: double
  context:
    x: "{{ input.x }}"
    pid: 0
  states:
    start:
      type: initial
      transitions:
        - condition: "context.x < 0"
          to: refuse
        - to: done
    refuse:
      type: final
      output:
        y: "{{ 'refused: negative input' | fromjson }}"
    done:
      type: final
      output:
        y: "{{ context.x * 2 }}"
"#;

const PARENT: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: parent
  machines:
    double: ./double.yml
  context:
    x: "{{ input.x }}"
  states:
    start:
      type: initial
      machine: double
      input:
        x: "{{ context.x }}"
      output_to_context:
        y: "{{ output.y }}"
      transitions: [{to: many}]
    many:
      foreach: "{{ [1, 2, 3] }}"
      as: item
      machine: double
      input:
        x: "{{ item }}"
      output_to_context:
        ys: "{{ output | map(attribute='y') | list }}"
      transitions: [{to: fire}]
    fire:
      launch: double
      launch_input:
        x: 100
      transitions: [{to: bad}]
    bad:
      machine: double
      input:
        x: -1
      on_error: recovered
      transitions: [{to: done}]
    recovered:
      transitions: [{to: done}]
    done:
      type: final
      output:
        y: "{{ context.y }}"
        ys: "{{ context.ys }}"
        error: "{{ context.last_error | default('') }}"
"#;

fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    write(dir.path(), "double.yml", CHILD);
    write(dir.path(), "parent.yml", PARENT);
    dir
}

#[test]
fn children_run_as_processes_and_return_through_the_shared_store() {
    let dir = fixtures();
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let out = flatmachines(
        dir.path(),
        &[
            "run",
            "parent.yml",
            "--store",
            &store,
            "--launch",
            "subprocess",
            "--input",
            r#"{"x": 21}"#,
            "--execution-id",
            "parent-1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let output: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(output["y"], 42);
    assert_eq!(output["ys"], json!([2, 4, 6]));
    let error = output["error"].as_str().expect("the failed child's error");
    assert!(error.contains("refuse.output.y"), "{error}");

    // The children were executions of their own, checkpointed in the shared store with the
    // parent's id, and left their results there — the launched one too, which the parent
    // did not wait for (the run waits for launched children before it ends, as the
    // reference does, so its result is there by now).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let opened = open_store(&store).expect("the store");
    let results = opened.results.expect("sqlite has results");
    let keys = rt
        .block_on(opened.persistence.list(""))
        .expect("list checkpoints");
    let children: Vec<&String> = keys
        .iter()
        .filter(|k| k.ends_with("/latest") && !k.starts_with("parent-1/"))
        .collect();
    assert_eq!(children.len(), 6, "six child executions: {keys:?}");
    let mut launched = 0;
    for pointer in children {
        let id = pointer.trim_end_matches("/latest");
        let snapshot_key = keys
            .iter()
            .find(|k| k.starts_with(&format!("{id}/")) && !k.ends_with("/latest"))
            .expect("a snapshot of each child");
        let snapshot: Value = serde_json::from_slice(
            &rt.block_on(opened.persistence.load(snapshot_key))
                .expect("load")
                .expect("a snapshot"),
        )
        .expect("JSON snapshot");
        assert_eq!(snapshot["parent_execution_id"], "parent-1", "{id}");
        let result = rt
            .block_on(results.read(&result_uri(id, "result"), ReadOptions::now()))
            .expect("read")
            .expect("each child left its result");
        assert!(
            result.get("y").is_some() || result.get("_error").is_some(),
            "{result}"
        );
        launched += usize::from(result == json!({"y": 200}));
    }
    assert_eq!(
        launched, 1,
        "the launched child ran once and published its result"
    );
}

#[test]
fn a_run_with_a_parent_publishes_its_result_and_error() {
    let dir = fixtures();
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let ok = flatmachines(
        dir.path(),
        &[
            "run",
            "double.yml",
            "--store",
            &store,
            "--input",
            r#"{"x": 4}"#,
            "--execution-id",
            "child-ok",
            "--parent-id",
            "someone",
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let failed = flatmachines(
        dir.path(),
        &[
            "run",
            "double.yml",
            "--store",
            &store,
            "--input",
            r#"{"x": -4}"#,
            "--execution-id",
            "child-bad",
            "--parent-id",
            "someone",
        ],
    );
    assert_eq!(failed.status.code(), Some(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let results = open_store(&store).expect("store").results.expect("results");
    let read = |id: &str| {
        rt.block_on(results.read(&result_uri(id, "result"), ReadOptions::now()))
            .expect("read")
            .expect("a result")
    };
    assert_eq!(read("child-ok"), json!({"y": 8}));
    let error = read("child-bad");
    assert!(
        error["_error"]
            .as_str()
            .is_some_and(|e| e.contains("refuse.output.y")),
        "{error}"
    );
    assert_eq!(error["_error_type"], "TemplateError", "{error}");
}

#[test]
fn launching_subprocesses_needs_a_shared_store_and_file_children() {
    let dir = fixtures();
    let no_store = flatmachines(
        dir.path(),
        &[
            "run",
            "parent.yml",
            "--launch",
            "subprocess",
            "--input",
            r#"{"x": 1}"#,
        ],
    );
    assert_eq!(no_store.status.code(), Some(2));
    let message = String::from_utf8_lossy(&no_store.stderr);
    assert!(
        message.contains("--launch subprocess needs --store"),
        "{message}"
    );

    let memory = flatmachines(
        dir.path(),
        &[
            "run",
            "parent.yml",
            "--store",
            "memory://",
            "--launch",
            "subprocess",
            "--input",
            r#"{"x": 1}"#,
        ],
    );
    assert_eq!(memory.status.code(), Some(2));
    let message = String::from_utf8_lossy(&memory.stderr);
    assert!(message.contains("other processes can read"), "{message}");

    write(
        dir.path(),
        "inline.yml",
        r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: inline-parent
  machines:
    inner:
      spec: flatmachine
      spec_version: "1.0.0"
      data:
        name: inner
        states:
          done: {type: final, output: {ok: true}}
  states:
    start:
      type: initial
      machine: inner
      transitions: [{to: done}]
    done:
      type: final
"#,
    );
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let inline = flatmachines(
        dir.path(),
        &[
            "run",
            "inline.yml",
            "--store",
            &store,
            "--launch",
            "subprocess",
        ],
    );
    assert_eq!(inline.status.code(), Some(1));
    let message = String::from_utf8_lossy(&inline.stderr);
    assert!(
        message.contains("`inner` is written inline in its parent"),
        "{message}"
    );
}
