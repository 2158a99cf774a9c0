//! Crash recovery with real processes: the CLI is SIGKILLed at random moments and resumed
//! until it finishes. The output must equal an uninterrupted run's, and no child may run twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAX_KILLS: usize = 30;
const KILL_WINDOW: Duration = Duration::from_secs(60);
const INPUT: &str = r#"{"limit": 12}"#;

fn machine() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crash/machine.yml")
}

fn command(store: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flatmachines"));
    command
        .arg("run")
        .arg(machine())
        .args(["--store", &format!("file://{}", store.display())])
        .args(args)
        .current_dir(store)
        .env_remove("FLATMACHINES_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn start(store: &Path) -> Child {
    // The pointer commits a checkpoint: without one the run starts over.
    let resume = store.join("crash/latest").exists();
    let args: Vec<&str> = if resume {
        vec!["--resume", "crash"]
    } else {
        vec!["--input", INPUT, "--execution-id", "crash"]
    };
    command(store, &args).spawn().expect("the CLI starts")
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("the CLI ends")
}

/// What each committed child execution looks like: its `machine_start` and `machine_end`
/// snapshots as committed (the latter once its pointer names it).
type Seen = HashMap<String, (Vec<u8>, Option<Vec<u8>>)>;

/// Records the committed children, and checks that none was started again from scratch or
/// finished a second time since the last look.
fn audit(store: &Path, seen: &mut Seen) {
    let Ok(entries) = std::fs::read_dir(store) else {
        return;
    };
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        if id == "crash" || id.starts_with('.') || !entry.path().join("latest").exists() {
            continue;
        }
        let Ok(started) = std::fs::read(entry.path().join("step_000000_machine_start.json")) else {
            continue;
        };
        // Only what the pointer names is committed: a snapshot written just before a kill,
        // without its pointer, is rightly written again.
        let ended = std::fs::read_to_string(entry.path().join("latest"))
            .ok()
            .filter(|key| key.ends_with("_machine_end.json"))
            .and_then(|key| std::fs::read(store.join(key.trim())).ok());
        match seen.get(&id) {
            Some((first_start, first_end)) => {
                assert_eq!(
                    first_start, &started,
                    "child {id} was started again from scratch"
                );
                if let (Some(first_end), Some(end)) = (first_end, &ended) {
                    assert_eq!(first_end, end, "child {id} finished twice");
                }
                if first_end.is_none() {
                    seen.insert(id, (started, ended));
                }
            }
            None => {
                seen.insert(id, (started, ended));
            }
        }
    }
}

/// Child executions with a `machine_end` snapshot, and those without.
fn children(store: &Path) -> (usize, Vec<String>) {
    let mut ended = 0;
    let mut unfinished = Vec::new();
    for entry in std::fs::read_dir(store).unwrap().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        if id.starts_with('.')
            || !entry.file_type().unwrap().is_dir()
            || id == "crash"
            || id == "straight"
        {
            continue;
        }
        let has_end = std::fs::read_dir(entry.path()).unwrap().flatten().any(|f| {
            f.file_name()
                .to_string_lossy()
                .ends_with("_machine_end.json")
        });
        if has_end {
            ended += 1;
        } else {
            unfinished.push(id);
        }
    }
    (ended, unfinished)
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_output_and_run_no_child_twice() {
    let straight_store = tempfile::tempdir().unwrap();
    let straight = finish(
        command(
            straight_store.path(),
            &["--input", INPUT, "--execution-id", "straight"],
        )
        .spawn()
        .unwrap(),
    );
    assert!(
        straight.status.success(),
        "{}",
        String::from_utf8_lossy(&straight.stderr)
    );
    let (expected_children, unfinished) = children(straight_store.path());
    assert!(unfinished.is_empty(), "{unfinished:?}");

    let store = tempfile::tempdir().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut random = seed;
    let mut next = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let deadline = Instant::now() + KILL_WINDOW;
    let mut seen = Seen::new();
    let mut kills = 0;
    let output = loop {
        let mut child = start(store.path());
        if kills < MAX_KILLS && Instant::now() < deadline {
            sleep(Duration::from_millis(5 + next() % 60));
            if child.try_wait().expect("poll").is_none() {
                child.kill().expect("SIGKILL");
                let _ = child.wait();
                kills += 1;
                audit(store.path(), &mut seen);
                continue;
            }
        }
        let output = finish(child);
        assert!(
            output.status.success(),
            "seed {seed}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        break output;
    };
    audit(store.path(), &mut seen);
    assert!(kills > 0, "seed {seed}: no run was killed");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&straight.stdout),
        "seed {seed}: {kills} kills"
    );
    // Every child launched or run ended exactly once: as many as in the uninterrupted run,
    // none unfinished, and (by the audits) none restarted or ended twice.
    let (ended, unfinished) = children(store.path());
    assert!(
        unfinished.is_empty(),
        "seed {seed}: unfinished children {unfinished:?}"
    );
    assert_eq!(ended, expected_children, "seed {seed}");
    eprintln!("seed {seed}: {kills} kills, {ended} children each ended once");
}
