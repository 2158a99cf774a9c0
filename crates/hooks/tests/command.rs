//! Command hooks: the Python and shell examples, the protocol's payloads, a fan-out sharing
//! one process, and deliberately broken hooks (a hang, bad JSON, an early exit, a missing
//! program, a crash in the middle of a run).

mod common;

use std::path::Path;

use serde_json::{Value, json};

use common::{Logs, builder, object, repo, run_yaml};
use flatmachines_engine::{Machine, RunOptions};

fn example(name: &str) -> Machine {
    Machine::from_file(repo().join("examples/hooks").join(name)).expect("the example loads")
}

#[tokio::test]
async fn the_python_example_decides_the_order_workflow() {
    let runtime = builder().build();
    let machine = example("machine.yml");
    let input: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/hooks/input.json")).expect("input"),
    )
    .expect("json");
    let declined = runtime
        .run(&machine, object(input), RunOptions::default())
        .await
        .expect("the run completes");
    assert_eq!(
        declined.output,
        json!({
            "order": "A-17",
            "trail": ["start", "charge", "manual_review", "gift_wrap", "done"],
            "charged": false,
            "review_reason": "hook `on_action` failed for action `charge_card`: command `python3 hooks.py` reported: RuntimeError: card of order A-17 was declined",
            "audited_by": "hooks.py",
        })
    );
    let paid = runtime
        .run(
            &machine,
            object(json!({"order": {"id": "B-2", "card": "ok"}})),
            RunOptions::default(),
        )
        .await
        .expect("the run completes");
    assert_eq!(
        paid.output,
        json!({
            "order": "B-2",
            "trail": ["start", "charge", "ship", "done"],
            "charged": true,
            "review_reason": "",
            "audited_by": "hooks.py",
        })
    );
}

#[tokio::test]
async fn the_shell_example_handles_its_action_and_logs_an_audit_trail() {
    let runtime = builder().build();
    let (logs, guard) = Logs::capture();
    let outcome = runtime
        .run(
            &example("shell.yml"),
            object(json!({"who": "ops"})),
            RunOptions::default(),
        )
        .await
        .expect("the run completes");
    drop(guard);
    assert_eq!(outcome.output, json!({"notified": "ops"}));
    let logs = logs.text();
    for line in [
        "audit: entering start",
        "audit: notifying",
        "audit: entering done",
    ] {
        assert!(logs.contains(line), "{line} in {logs}");
    }
    assert!(!logs.contains("was not handled by any hook"), "{logs}");
}

fn recorder_machine(log: &Path) -> String {
    format!(
        r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: recorded
  hooks:
    class: command
    args:
      command: [python3, "{recorder}", "{log}"]
  context:
    n: "{{{{ input.n }}}}"
  states:
    start:
      type: initial
      action: tick
      transitions: [{{to: done}}]
    done:
      type: final
      output: {{entered: "{{{{ context.entered }}}}"}}
"#,
        recorder = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/recorder.py")
            .display(),
        log = log.display(),
    )
}

#[tokio::test]
async fn requests_are_json_lines_with_ids_and_the_reference_payloads() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let log = dir.path().join("requests.jsonl");
    let runtime = builder().build();
    let outcome = run_yaml(
        &runtime,
        &recorder_machine(&log),
        dir.path(),
        json!({"n": 5}),
    )
    .await
    .expect("the run completes");
    assert_eq!(outcome.output, json!({"entered": 2}));
    let requests: Vec<Value> = std::fs::read_to_string(&log)
        .expect("the hook wrote its log")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each request is one JSON line"))
        .collect();
    insta::assert_json_snapshot!("command_requests", requests);
}

#[tokio::test]
async fn children_of_a_fan_out_share_one_hook_process() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let log = dir.path().join("requests.jsonl");
    let child = recorder_machine(&log).replace("name: recorded", "name: child");
    std::fs::write(dir.path().join("child.yml"), child).expect("write");
    let parent = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: parent
  machines: {child: ./child.yml}
  context: {items: "{{ input.items }}"}
  states:
    start:
      type: initial
      foreach: "{{ context.items }}"
      as: item
      machine: child
      input: {n: "{{ item }}"}
      output_to_context: {results: "{{ output }}"}
      transitions: [{to: done}]
    done:
      type: final
      output: {results: "{{ context.results }}"}
"#;
    let runtime = builder().build();
    let outcome = run_yaml(
        &runtime,
        parent,
        dir.path(),
        json!({"items": [1, 2, 3, 4, 5, 6]}),
    )
    .await
    .expect("the run completes");
    assert_eq!(
        outcome.output["results"],
        Value::Array(vec![json!({"entered": 2}); 6])
    );
    let requests = std::fs::read_to_string(&log).expect("log");
    let ids: Vec<u64> = requests
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("json")["id"]
                .as_u64()
                .expect("id")
        })
        .collect();
    // One process answered every child's events, one at a time: its ids are 1, 2, 3, ….
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    assert_eq!(ids.len(), 6 * 8);
}

/// A machine whose hook runs `script` with `python3 -c`. Its timeout is generous, so only a
/// hook that hangs meets it, however slowly a loaded machine starts Python; the hung hook's test shortens it.
fn broken(script: &str, extra: &str) -> String {
    format!(
        r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: broken
  hooks:
    class: command
    args:
      command: [python3, -c, {script}]
      timeout: 30{extra}
  states:
    start:
      type: initial
      transitions: [{{to: done}}]
    done:
      type: final
      output: {{ok: true}}
"#,
        script = serde_json::to_string(script).expect("a JSON string is a YAML string"),
    )
}

async fn failure(yaml: &str) -> String {
    let runtime = builder().build();
    run_yaml(&runtime, yaml, &repo(), json!({}))
        .await
        .expect_err("the broken hook fails the run")
        .to_string()
}

#[tokio::test]
async fn a_hung_hook_times_out_and_does_not_hang_the_run() {
    let script = "import sys, time\nfor line in sys.stdin:\n    time.sleep(60)";
    let message = failure(&broken(script, "").replace("timeout: 30", "timeout: 1.5")).await;
    assert!(message.contains("HookError"), "{message}");
    assert!(
        message.contains("hook `on_machine_start` failed: command `python3 -c import sys, time"),
        "{message}"
    );
    assert!(
        message.ends_with("did not answer `machine_start` within 1.5s"),
        "{message}"
    );
}

#[tokio::test]
async fn a_hook_printing_something_else_than_json_is_refused() {
    let script = "import sys\nfor line in sys.stdin:\n    print('hello from the hook', flush=True)";
    let message = failure(&broken(script, "")).await;
    assert!(
        message.contains("answered `machine_start` with a line that is not JSON (expected value at line 1 column 1): `hello from the hook`"),
        "{message}"
    );

    let script = "import sys\nfor line in sys.stdin:\n    print('{\"id\": 999}', flush=True)";
    let message = failure(&broken(script, "")).await;
    assert!(
        message.ends_with("answered `machine_start` with a reply to request 999, while the reply to request 1 was awaited"),
        "{message}"
    );
}

#[tokio::test]
async fn a_hook_that_exits_early_is_reported_with_its_status_and_stderr() {
    let script = "import sys\nsys.stderr.write('hooks: cannot read settings.toml\\n')\nsys.exit(3)";
    let message = failure(&broken(script, "")).await;
    assert!(
        message.contains("exited (exit status: 3) before answering `machine_start`; the end of its stderr:\nhooks: cannot read settings.toml"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_program_is_named() {
    let yaml = broken("", "").replace(
        "command: [python3, -c, \"\"]",
        "command: [flatmachines-no-such-hook-program]",
    );
    let message = failure(&yaml).await;
    assert!(
        message.contains("command `flatmachines-no-such-hook-program` could not be started: No such file or directory"),
        "{message}"
    );
}

#[tokio::test]
async fn a_lenient_hook_that_crashes_is_logged_restarted_and_the_run_goes_on() {
    // Answers two events, then dies; a new process takes the next event.
    let script = "import sys, json\nfor n, line in enumerate(sys.stdin):\n    if n == 2:\n        sys.exit(4)\n    print(json.dumps({'id': json.loads(line)['id']}), flush=True)";
    let runtime = builder().build();
    let (logs, guard) = Logs::capture();
    let outcome = run_yaml(
        &runtime,
        &broken(script, "\n      fatal: false"),
        &repo(),
        json!({}),
    )
    .await
    .expect("a lenient hook does not stop the run");
    drop(guard);
    assert_eq!(outcome.output, json!({"ok": true}));
    let logs = logs.text();
    // Events 1-2 (machine_start, state_enter) reach the first process and the third
    // (state_exit) ends it; a second process takes transition and state_enter, and ends at
    // the next state_exit; a third answers machine_end.
    assert_eq!(
        logs.matches("exited (exit status: 4) before answering `state_exit`; it wrote nothing to stderr; the run goes on").count(),
        2,
        "{logs}"
    );
}
