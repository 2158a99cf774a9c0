//! The `flatmachines` binary: outputs on stdout, one clear line on stderr, exit codes 0/1/2.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn flatmachines(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flatmachines"))
        .args(args)
        .current_dir(repo())
        .env_remove("FLATMACHINES_LOG")
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exits with `code`, says one `error:` line on stderr, and prints nothing on stdout.
fn assert_fails(output: &Output, code: i32) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert!(stdout(output).is_empty(), "stdout: {}", stdout(output));
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_owned()
}

#[test]
fn fanout_benchmark_machine_prints_its_output() {
    let output = flatmachines(&["run", "bench/fanout.yml", "--input", r#"{"xs":[0,1,2]}"#]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "{\"n\": 3, \"first\": {\"doubled\": 0}}\n");
}

#[test]
fn the_examples_run_offline() {
    let runs = [
        vec![
            "run",
            "examples/loop/machine.yml",
            "--input",
            r#"{"n": 27}"#,
        ],
        vec![
            "run",
            "examples/fanout/machine.yml",
            "--input-file",
            "examples/fanout/input.json",
        ],
        vec![
            "run",
            "examples/recovery/machine.yml",
            "--input-file",
            "examples/recovery/input.json",
            "--pretty",
        ],
        vec![
            "run",
            "examples/triage/machine.yml",
            "--input-file",
            "examples/triage/input.json",
        ],
    ];
    let mut outputs = Vec::new();
    for args in runs {
        let output = flatmachines(&args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        outputs.push(format!(
            "$ flatmachines {}\n{}",
            args.join(" "),
            stdout(&output)
        ));
    }
    insta::assert_snapshot!(outputs.join("\n"));
}

#[test]
fn input_comes_from_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flatmachines"))
        .args(["run", "examples/loop/machine.yml", "--input-file", "-"])
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"n": 6}"#)
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "{\"steps\": 8, \"peak\": 16}\n");
}

#[test]
fn usage_and_config_errors_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "spec: flatmachine\ndata:\n  states:\n    a: {transitions: [{to: b}]}\n",
    )
    .unwrap();
    let bad = bad.to_string_lossy().into_owned();
    let bad_cel = dir.path().join("bad_cel.yml");
    std::fs::write(
        &bad_cel,
        "spec: flatmachine\ndata:\n  expression_engine: cel\n  states:\n    a: {transitions: [{condition: 'context.xs.all(x, x >)', to: b}]}\n    b: {type: final}\n",
    )
    .unwrap();
    let bad_cel = bad_cel.to_string_lossy().into_owned();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("missing file", vec!["run", "no/such/machine.yml"]),
        ("unknown state", vec!["run", &bad]),
        ("CEL syntax error", vec!["run", &bad_cel]),
        (
            "input is not JSON",
            vec!["run", "examples/loop/machine.yml", "--input", "{n: 1"],
        ),
        (
            "input is not an object",
            vec!["run", "examples/loop/machine.yml", "--input", "[1]"],
        ),
        (
            "unavailable store",
            vec![
                "run",
                "examples/loop/machine.yml",
                "--store",
                "etcd://127.0.0.1:2379",
            ],
        ),
        (
            "not a store URL",
            vec![
                "run",
                "examples/loop/machine.yml",
                "--store",
                ".checkpoints",
            ],
        ),
        (
            "resume in memory",
            vec!["run", "examples/loop/machine.yml", "--resume", "nobody"],
        ),
        (
            "bad execution id",
            vec!["run", "examples/loop/machine.yml", "--execution-id", "../x"],
        ),
    ];
    let mut lines = Vec::new();
    for (name, args) in cases {
        let line = assert_fails(&flatmachines(&args), 2);
        let line = line
            .replace(&bad_cel, "<tmp>/bad_cel.yml")
            .replace(&bad, "<tmp>/bad.yml");
        lines.push(format!("{name}: {line}"));
    }
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn failed_runs_exit_1_with_one_line() {
    let step_limit = assert_fails(
        &flatmachines(&[
            "run",
            "bench/loop.yml",
            "--input",
            r#"{"target": "x", "payload": {}}"#,
            "--max-steps",
            "25",
            "--execution-id",
            "limited",
        ]),
        1,
    );
    assert_eq!(
        step_limit,
        "error: machine `loop-bench` stopped at the step limit of 25 steps before state `ping` (execution limited); raise --max-steps or settings.max_steps and run it again (its checkpoints were in memory, so it cannot be resumed; use --store file://DIR to make runs resumable)"
    );
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing.yml");
    std::fs::write(
        &failing,
        "spec: flatmachine\ndata:\n  name: failing\n  context: {xs: \"{{ input.xs }}\"}\n  machines: {c: {spec: flatmachine, data: {states: {s: {type: final}}}}}\n  states:\n    start: {type: initial, foreach: \"{{ context.xs }}\", machine: c, transitions: [{to: done}]}\n    done: {type: final}\n",
    )
    .unwrap();
    let line = assert_fails(
        &flatmachines(&["run", &failing.to_string_lossy(), "--input", r#"{"xs": 5}"#]),
        1,
    );
    assert_eq!(
        line,
        "error: machine `failing` failed in state `start` (InvalidValue): `foreach` of state `start` must yield a list, got a number: 5"
    );
}

#[test]
fn help_lists_the_run_command() {
    let output = flatmachines(&["--help"]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("run"));
    let output = flatmachines(&["run", "--help"]);
    assert!(stdout(&output).contains("--max-steps"));
    let output = flatmachines(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}

fn flatmachines_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flatmachines"))
        .args(args)
        .current_dir(dir)
        .env_remove("FLATMACHINES_LOG")
        .env_remove("RUST_LOG")
        .env_remove("FLATMACHINES_STORE")
        .output()
        .expect("the binary runs")
}

#[test]
fn a_stopped_run_resumes_from_a_file_store_and_checkpoints_are_managed() {
    let dir = tempfile::tempdir().unwrap();
    let machine = repo().join("bench/loop.yml");
    let machine = machine.to_string_lossy();
    let store = format!("file://{}", dir.path().join("store").display());
    let input = r#"{"target": "x", "payload": {}}"#;
    let stopped = flatmachines_in(
        dir.path(),
        &[
            "run",
            &machine,
            "--input",
            input,
            "--store",
            &store,
            "--execution-id",
            "loop-1",
            "--max-steps",
            "6",
        ],
    );
    assert_eq!(stopped.status.code(), Some(1), "{}", stderr(&stopped));

    let listed = flatmachines_in(
        dir.path(),
        &["checkpoints", "list", "--store", &store, "--json"],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    let row: serde_json::Value = serde_json::from_str(stdout(&listed).trim()).unwrap();
    assert_eq!(row["execution_id"], "loop-1");
    assert_eq!(row["event"], "state_exit");
    assert_eq!(row["step"], 6);

    let shown = flatmachines_in(
        dir.path(),
        &["checkpoints", "show", "loop-1", "--store", &store],
    );
    let snapshot: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(snapshot["machine_name"], "loop-bench");

    // Resuming with a higher limit goes on from step 6; the store keeps the same execution.
    let resumed = flatmachines_in(
        dir.path(),
        &[
            "run",
            &machine,
            "--resume",
            "loop-1",
            "--store",
            &store,
            "--max-steps",
            "9",
        ],
    );
    assert!(
        stderr(&resumed).contains("step limit of 9 steps"),
        "{}",
        stderr(&resumed)
    );

    let pruned = flatmachines_in(
        dir.path(),
        &["checkpoints", "prune", "--store", &store, "--keep", "2"],
    );
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let keys = flatmachines_in(
        dir.path(),
        &["checkpoints", "show", "loop-1", "--keys", "--store", &store],
    );
    assert_eq!(
        stdout(&keys).lines().collect::<Vec<_>>(),
        [
            "loop-1/latest",
            "loop-1/step_000009_execute.json",
            "loop-1/step_000009_state_exit.json"
        ]
    );
    // Nothing was written into the working directory.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, ["store"]);

    let usage = flatmachines_in(dir.path(), &["checkpoints", "prune", "--store", &store]);
    assert_eq!(
        assert_fails(&usage, 2),
        "error: prune needs --keep N and/or --finished-before DATE"
    );
    let unknown = flatmachines_in(
        dir.path(),
        &["checkpoints", "show", "nobody", "--store", &store],
    );
    assert!(assert_fails(&unknown, 2).contains("no checkpoints for execution `nobody`"));
}

#[test]
fn local_persistence_in_the_config_writes_the_reference_layout_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let machine = repo().join("bench/loop_local.yml");
    let run = flatmachines_in(
        dir.path(),
        &[
            "run",
            &machine.to_string_lossy(),
            "--input",
            r#"{"target": "x", "payload": {}}"#,
            "--execution-id",
            "here",
            "--max-steps",
            "3",
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let pointer = std::fs::read_to_string(dir.path().join(".checkpoints/here/latest")).unwrap();
    assert_eq!(pointer, "here/step_000003_state_exit.json");
    assert!(dir.path().join(".locks/here.lock").exists());
}

#[test]
fn oversized_snapshots_are_reported_with_their_largest_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yml");
    std::fs::write(
        &path,
        "spec: flatmachine\ndata:\n  name: big\n  persistence: {enabled: true, backend: memory, warn_snapshot_bytes: 2000}\n  context:\n    blob: \"{{ input.blob }}\"\n    small: 1\n  states:\n    s: {type: final}\n",
    )
    .unwrap();
    let blob = "x".repeat(5000);
    let output = flatmachines_in(
        dir.path(),
        &[
            "run",
            &path.to_string_lossy(),
            "--input",
            &format!(r#"{{"blob": "{blob}"}}"#),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert_eq!(
        err.matches("warning size").count(),
        1,
        "warned once per execution: {err}"
    );
    assert!(
        err.contains("the largest context keys are `blob` (5002 bytes), `small` (1 bytes)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_held_lock_means_the_execution_runs_elsewhere() {
    use flatmachines::core::ExecutionLock;
    let dir = tempfile::tempdir().unwrap();
    let lock =
        flatmachines::backends::local::LocalFileLock::new(dir.path().join(".locks")).unwrap();
    assert!(lock.acquire("busy").await.unwrap());
    let store = format!("file://{}", dir.path().display());
    let output = flatmachines_in(
        dir.path(),
        &[
            "run",
            &repo().join("examples/loop/machine.yml").to_string_lossy(),
            "--input",
            r#"{"n": 3}"#,
            "--store",
            &store,
            "--execution-id",
            "busy",
        ],
    );
    assert_eq!(
        assert_fails(&output, 1),
        "error: execution `busy` is running elsewhere (its lock is held)"
    );
    lock.release("busy").await.unwrap();
    let output = flatmachines_in(
        dir.path(),
        &[
            "run",
            &repo().join("examples/loop/machine.yml").to_string_lossy(),
            "--input",
            r#"{"n": 3}"#,
            "--store",
            &store,
            "--execution-id",
            "busy",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

/// Makes a directory immutable (root ignores permissions, not this), and undoes it on drop.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let done = Command::new("chattr").arg("+i").arg(path).status().ok()?;
        done.success().then(|| Immutable(path.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_checkpoint_directory_fails_the_run_and_keeps_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let machine = repo().join("bench/loop.yml");
    let machine = machine.to_string_lossy();
    let store = format!("file://{}", dir.path().join("store").display());
    let input = r#"{"target": "x", "payload": {}}"#;
    let first = flatmachines_in(
        dir.path(),
        &[
            "run",
            &machine,
            "--input",
            input,
            "--store",
            &store,
            "--execution-id",
            "ro",
            "--max-steps",
            "2",
        ],
    );
    assert_eq!(first.status.code(), Some(1));
    let execution = dir.path().join("store/ro");
    let before: Vec<(String, Vec<u8>)> = {
        let mut files: Vec<_> = std::fs::read_dir(&execution)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let Some(_guard) = Immutable::set(&execution) else {
        eprintln!("chattr is not available here; cannot make the directory read-only for root");
        return;
    };
    let resumed = flatmachines_in(
        dir.path(),
        &[
            "run",
            &machine,
            "--resume",
            "ro",
            "--store",
            &store,
            "--max-steps",
            "5",
        ],
    );
    let line = assert_fails(&resumed, 1);
    assert!(
        line.contains("(BackendError)") && line.contains("cannot write checkpoint file"),
        "{line}"
    );
    assert!(line.contains(&execution.display().to_string()), "{line}");
    let mut after: Vec<_> = std::fs::read_dir(&execution)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    after.sort();
    assert_eq!(before, after, "nothing stored was changed");
}

#[test]
fn graph_prints_mermaid_and_dot() {
    let mermaid = flatmachines(&["graph", "examples/recovery/machine.yml"]);
    assert!(mermaid.status.success(), "{}", stderr(&mermaid));
    let text = stdout(&mermaid);
    assert!(text.starts_with("stateDiagram-v2\n"), "{text}");
    assert!(
        text.contains("load_settings --> use_default_settings: on_error TemplateError"),
        "{text}"
    );
    let dot = flatmachines(&["graph", "examples/recovery/machine.yml", "--format", "dot"]);
    assert!(
        stdout(&dot).starts_with("digraph \"order-import\" {"),
        "{}",
        stdout(&dot)
    );
    let missing = flatmachines(&["graph", "no/such.yml"]);
    assert_eq!(missing.status.code(), Some(2));
}

/// `validate` refuses hook args a run would refuse when it builds the hooks: a webhook that
/// would post the context somewhere other than an `http(s)` server, a bad `env:` name.
#[test]
fn validate_refuses_hook_args_a_run_would_refuse() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let machine = |hooks: &str| {
        format!(
            "spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  name: hooked\n  hooks:\n{hooks}\n  states:\n    start: {{type: initial, transitions: [{{to: done}}]}}\n    done: {{type: final, output: {{}}}}\n"
        )
    };
    let cases = [
        (
            "file.yml",
            "    class: webhook\n    args: {endpoint: \"file:///etc/passwd\"}",
            "scheme `file`",
        ),
        (
            "env.yml",
            "    class: command\n    args: {command: [python3, hooks.py], env: [\"NOT A NAME\"]}",
            "env[0]",
        ),
    ];
    for (file, hooks, expected) in cases {
        std::fs::write(dir.path().join(file), machine(hooks)).expect("write the machine");
        let output = flatmachines_in(dir.path(), &["validate", file]);
        let text = stdout(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{file}: {text}{}",
            stderr(&output)
        );
        assert!(text.contains("error"), "{file}: {text}");
        assert!(text.contains(expected), "{file}: {text}");
    }
    // An https endpoint passes.
    std::fs::write(
        dir.path().join("ok.yml"),
        machine("    class: webhook\n    args: {endpoint: \"https://hooks.example.com/in\"}"),
    )
    .expect("write the machine");
    let output = flatmachines_in(dir.path(), &["validate", "ok.yml"]);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
}

/// A broken agent reference fails its state when it is reached, as in the reference, so
/// `on_error` routes it by the reference's type names: flatmachines 1.0.0 (with flatagents
/// 1.0.0) recovers both machines the same way, with `FileNotFoundError` and `ValueError` as
/// `last_error_type` where ours are `FileNotFound` and `UnknownAgent` (docs/errors.md).
/// `run --strict` and `validate` refuse them.
#[test]
fn broken_agent_references_fail_when_reached_unless_strict() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let machine = |agents: &str, agent: &str, error_type: &str| {
        format!(
            "spec: flatmachine\nspec_version: \"1.0.0\"\ndata:\n  name: broken\n{agents}  states:\n    start: {{type: initial, transitions: [{{to: ask}}]}}\n    ask:\n      agent: {agent}\n      on_error: {{{error_type}: recovered, default: other}}\n      transitions: [{{to: done}}]\n    recovered: {{type: final, output: {{recovered: true, error_type: \"{{{{ context.last_error_type }}}}\"}}}}\n    other: {{type: final, output: {{recovered: false, error_type: \"{{{{ context.last_error_type }}}}\"}}}}\n    done: {{type: final, output: {{recovered: false}}}}\n"
        )
    };
    let cases = [
        (
            "missing_file.yml",
            machine(
                "  agents:\n    broken: ./nonexistent.yml\n",
                "broken",
                "FileNotFoundError",
            ),
            "FileNotFound",
            "nonexistent.yml",
        ),
        (
            "undeclared.yml",
            machine("", "ghost", "ValueError"),
            "UnknownAgent",
            "ghost",
        ),
    ];
    for (file, text, error_type, named) in cases {
        std::fs::write(dir.path().join(file), text).expect("write the machine");
        let output = flatmachines_in(dir.path(), &["run", file]);
        let err = stderr(&output);
        assert!(output.status.success(), "{file}: {err}");
        let result: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
        assert_eq!(
            result,
            serde_json::json!({"recovered": true, "error_type": error_type}),
            "{file}"
        );
        let warning = err.lines().find(|line| line.contains(named));
        assert!(
            warning.is_some_and(|line| line.contains("WARN") && line.contains("when")),
            "{file}: the load warns, naming `{named}`: {err}"
        );

        // Refused before the run: the load's warning, then one error line.
        let output = flatmachines_in(dir.path(), &["run", "--strict", file]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{file}: {err}");
        assert!(stdout(&output).is_empty(), "{file}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains(named),
            "{file}: {err}"
        );

        let output = flatmachines_in(dir.path(), &["validate", file]);
        let report = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{file}: {report}");
        assert!(
            report.contains("error") && report.contains(named),
            "{file}: {report}"
        );
    }
}

/// `checkpoints list` and `show` only read: a missing store is an error and is not created.
/// `prune` also removes what saves cut short by a kill left behind.
#[test]
fn checkpoint_commands_read_without_creating_and_prune_sweeps_interrupted_saves() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("nowhere");
    let url = format!("file://{}", missing.display());
    for args in [
        vec!["checkpoints", "list", "--store", &url],
        vec!["checkpoints", "show", "x", "--store", &url],
    ] {
        let line = assert_fails(&flatmachines_in(dir.path(), &args), 2);
        assert!(line.contains("nowhere"), "{line}");
        assert!(!missing.exists(), "{args:?} created the store");
    }

    let store = dir.path().join("store");
    std::fs::create_dir_all(store.join("exec")).expect("create the store");
    let stale = store.join("exec/.latest.4242.0.tmp");
    let file = std::fs::File::create(&stale).expect("write a temporary file");
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .expect("age it");
    let fresh = store.join("exec/.latest.4242.1.tmp");
    std::fs::File::create(&fresh).expect("write a temporary file");
    let url = format!("file://{}", store.display());
    let pruned = flatmachines_in(
        dir.path(),
        &["checkpoints", "prune", "--store", &url, "--keep", "1"],
    );
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(
        stdout(&pruned).contains(".latest.4242.0.tmp"),
        "{}",
        stdout(&pruned)
    );
    assert!(
        stderr(&pruned).contains("1 temporary file(s)"),
        "{}",
        stderr(&pruned)
    );
    assert!(!stale.exists());
    assert!(
        fresh.exists(),
        "a temporary file of a save that may be running stays"
    );
}

/// A field of a later spec version that would change what the machine does, and that this
/// runtime lacks, stops the run before anything happens: exit 2 and one line naming the field
/// and its version, never a run that skips the gate.
#[test]
fn unimplemented_control_flow_fields_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let machine = dir.path().join("gate.yml");
    std::fs::write(
        &machine,
        "spec: flatmachine\nspec_version: \"1.2.0\"\ndata:\n  states:\n    start:\n      type: initial\n      wait_for: \"approval/{{ context.id }}\"\n      transitions: [{to: done}]\n    done:\n      type: final\n      output: {approved: true}\n",
    )
    .unwrap();
    let output = flatmachines(&["run", machine.to_str().unwrap()]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {err}");
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("error:")
            && err.contains("gate.yml")
            && err.contains("`wait_for` (spec 1.2.0) parks the execution"),
        "{err}"
    );
}
