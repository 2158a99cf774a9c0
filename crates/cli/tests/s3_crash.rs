//! `--store s3://…` survives SIGKILL: the CLI is killed mid-run, resumed with `--resume`,
//! killed again, and finally finishes with the output of an uninterrupted run.
//!
//! The store is `FLATMACHINES_TEST_S3_URL` (default the local emulator `cargo xtask test`
//! starts on 127.0.0.1:5000), under a prefix of its own that is deleted afterwards. Without a
//! server the test is skipped, except under `CI=true`, where that fails.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flatmachines::backends::s3::{S3Backend, S3Config, S3Error, S3ErrorKind};
use flatmachines::core::PersistenceBackend as _;

const DEFAULT_URL: &str = "s3://flatmachines-test?endpoint=http://127.0.0.1:5000&region=us-east-1";
const KILLS: usize = 3;
/// How long one run may take to show progress before the test gives up on it.
const PROGRESS_WINDOW: Duration = Duration::from_secs(60);

/// Counts to `input.limit`, one child run per step: dozens of S3 writes per step.
const MACHINE: &str = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: s3-crash
  machines:
    increment:
      spec: flatmachine
      data:
        name: increment
        context: {n: "{{ input.n }}"}
        states:
          done: {type: final, output: {n: "{{ context.n + 1 }}"}}
  context:
    n: 0
    limit: "{{ input.limit }}"
    trail: ""
  states:
    step:
      type: initial
      machine: increment
      input: {n: "{{ context.n }}"}
      output_to_context:
        n: "{{ output.n }}"
        trail: "{{ context.trail }}.{{ output.n }}"
      transitions:
        - condition: "context.n >= context.limit"
          to: done
        - to: step
    done:
      type: final
      output: {n: "{{ context.n }}", trail: "{{ context.trail }}"}
"#;
const INPUT: &str = r#"{"limit": 80}"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// An emulator on loopback takes any credentials: dummy ones when the environment has none.
fn dummy_credentials(config: &S3Config) -> bool {
    let endpoint = config
        .endpoint()
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .unwrap_or_default();
    endpoint.contains("://127.") || endpoint.contains("://localhost")
}

/// The test's store, or `None` (skip) when the server is not usable outside CI.
fn store() -> Option<(S3Config, bool)> {
    let url = std::env::var("FLATMACHINES_TEST_S3_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let base = S3Config::from_url(&url).expect("FLATMACHINES_TEST_S3_URL parses");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("{}cli-crash-{}-{nanos}", base.prefix(), std::process::id());
    let config = base
        .with_prefix(&prefix)
        .expect("a prefix")
        .with_connect_timeout(Duration::from_secs(2));
    let dummy = dummy_credentials(&config) && std::env::var("AWS_ACCESS_KEY_ID").is_err();
    let backend = backend(&config, dummy);
    let usable = runtime().block_on(async {
        match backend.check().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let missing = matches!(&e, flatmachines::core::Error::Backend { source, .. }
                    if source.downcast_ref::<S3Error>().is_some_and(|s| s.kind() == S3ErrorKind::NoSuchBucket));
                if missing && dummy_credentials(&config) {
                    backend.create_bucket().await
                } else {
                    Err(e)
                }
            }
        }
    });
    if let Err(e) = usable {
        assert!(
            !is_ci(),
            "the S3 test store {url} is not usable under CI: {e}"
        );
        eprintln!("skipped: the S3 test store {url} is not usable: {e}");
        return None;
    }
    Some((config, dummy))
}

fn backend(config: &S3Config, dummy: bool) -> S3Backend {
    let config = config.clone();
    S3Backend::new(if dummy {
        config.with_credentials("test", "test")
    } else {
        config
    })
}

fn command(dir: &Path, store: Option<(&S3Config, bool)>, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flatmachines"));
    command
        .arg("run")
        .arg(dir.join("machine.yml"))
        .args(args)
        .current_dir(dir)
        .env_remove("FLATMACHINES_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((config, dummy)) = store {
        command.args(["--store", &config.url()]);
        if dummy {
            command
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test");
        }
    }
    command
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("the CLI ends")
}

/// The `latest` pointer of execution `crash`, as text.
fn pointer(backend: &S3Backend) -> Option<String> {
    runtime()
        .block_on(backend.load("crash/latest"))
        .expect("the pointer loads")
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn a_killed_run_on_s3_resumes_to_the_uninterrupted_output() {
    let Some((config, dummy)) = store() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("machine.yml"), MACHINE).unwrap();
    let straight = finish(
        command(dir.path(), None, &["--input", INPUT])
            .spawn()
            .unwrap(),
    );
    assert!(
        straight.status.success(),
        "{}",
        String::from_utf8_lossy(&straight.stderr)
    );

    let watcher = backend(&config, dummy);
    let _cleanup = Cleanup(watcher.clone());
    let store = Some((&config, dummy));
    let mut child = command(
        dir.path(),
        store,
        &["--input", INPUT, "--execution-id", "crash"],
    )
    .spawn()
    .unwrap();
    let mut kills = 0;
    let mut last_pointer: Option<String> = None;
    while kills < KILLS {
        // Kill once the run has checkpointed past where the last kill left it.
        let deadline = Instant::now() + PROGRESS_WINDOW;
        let now = loop {
            assert!(
                Instant::now() < deadline,
                "no progress within {PROGRESS_WINDOW:?}"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before kill {}: {}",
                kills + 1,
                String::from_utf8_lossy(&finish(child).stderr)
            );
            match pointer(&watcher) {
                Some(now) if Some(&now) != last_pointer.as_ref() => break now,
                _ => sleep(Duration::from_millis(50)),
            }
        };
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        kills += 1;
        let after = pointer(&watcher).expect("a pointer after the kill");
        assert!(
            !after.ends_with("_machine_end.json"),
            "kill {kills} came after the end ({now})"
        );
        last_pointer = Some(after);
        child = command(dir.path(), store, &["--resume", "crash"])
            .spawn()
            .unwrap();
    }
    let output = finish(child);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&straight.stdout),
        "{kills} kills"
    );
    let end = pointer(&watcher).unwrap();
    assert!(end.ends_with("_machine_end.json"), "{end}");
}

/// Deletes the test's objects, whether it passed or not.
struct Cleanup(S3Backend);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = runtime().block_on(self.0.delete_prefix(""));
    }
}
