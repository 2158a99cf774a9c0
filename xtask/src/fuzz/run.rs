//! Running one case on each side, each under a bound of memory and time.
//!
//! Ours: one `flatmachines run` process per case, under `prlimit` and a wall-clock kill. The
//! reference: one long-lived Python driver per job (a fresh interpreter per case would cost
//! half a second each), itself under `prlimit`, with an asyncio timeout per case and a
//! wall-clock kill that restarts it when a case hangs outside the event loop.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The address space each side may use, in bytes.
const MEMORY_LIMIT: u64 = 2 << 30;
/// How long one case may take on either side.
pub(super) const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a side did with a case.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Outcome {
    /// It reached a final state with this output.
    Output(Value),
    /// It stopped at its step limit; the reference still returns an output then.
    StepLimit(Option<Value>),
    /// Ours: a non-final state matched no transition.
    NoTransition,
    /// The run failed, with the error's type (where known) and message.
    Failed { kind: String, message: String },
    /// Ours: the machine was refused before it ran (exit 2).
    Refused(String),
    /// The side ran out of time or memory, or crashed.
    Lost(String),
}

/// Runs the case file `path` with `flatmachines run`.
pub(super) fn ours(binary: &Path, path: &Path, input: &Value, max_steps: u64) -> Outcome {
    let mut command = bounded(binary);
    command
        .arg("run")
        .arg(path)
        .arg("--input")
        .arg(input.to_string())
        .arg("--max-steps")
        .arg(max_steps.to_string())
        .arg("-q")
        .current_dir(path.parent().unwrap_or(Path::new(".")));
    let output = match wait_bounded(command) {
        Ok(output) => output,
        Err(lost) => return Outcome::Lost(lost),
    };
    let stderr = output.stderr.trim().to_owned();
    match output.code {
        Some(0) => match serde_json::from_str(output.stdout.trim()) {
            Ok(value) => Outcome::Output(value),
            Err(e) => Outcome::Lost(format!("output is not JSON ({e}): {}", output.stdout)),
        },
        Some(1) if stderr.contains("step limit") => Outcome::StepLimit(None),
        Some(1) if stderr.contains("(NoTransition)") => Outcome::NoTransition,
        Some(1) => Outcome::Failed {
            kind: error_kind(&stderr),
            message: stderr,
        },
        Some(2) => Outcome::Refused(stderr),
        code => Outcome::Lost(format!("exit {code:?}: {stderr}")),
    }
}

/// The error type in `error: machine `m` failed in state `s` (Type): …`, or "" for another
/// message.
fn error_kind(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("failed in state `")?;
            let (_, rest) = rest.split_once("` (")?;
            let (kind, _) = rest.split_once("): ")?;
            Some(kind.to_owned())
        })
        .unwrap_or_default()
}

fn bounded(program: &Path) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--as={MEMORY_LIMIT}"))
        .arg(format!("--cpu={}", CASE_TIMEOUT.as_secs() * 2))
        .arg("--")
        .arg(program);
    command
}

struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `command` to its end, killing it at [`CASE_TIMEOUT`].
fn wait_bounded(mut command: Command) -> Result<Finished, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > CASE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {} s", CASE_TIMEOUT.as_secs()));
            }
            Ok(None) => thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    };
    Ok(Finished {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// A running reference driver.
pub(super) struct Reference {
    python: PathBuf,
    script: PathBuf,
    dir: PathBuf,
    process: Option<(Child, ChildStdin, mpsc::Receiver<String>)>,
}

impl Reference {
    pub(super) fn new(python: &Path, script: &Path, dir: &Path) -> Reference {
        Reference {
            python: python.to_owned(),
            script: script.to_owned(),
            dir: dir.to_owned(),
            process: None,
        }
    }

    fn start(&mut self) -> Result<(), String> {
        let mut command = bounded(&self.python);
        let mut child = command
            .arg(&self.script)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the reference driver: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (send, receive) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        self.process = Some((child, stdin, receive));
        Ok(())
    }

    fn stop(&mut self) {
        if let Some((mut child, stdin, _)) = self.process.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the case file `path` on the reference.
    pub(super) fn run(&mut self, path: &Path, input: &Value, max_steps: u64) -> Outcome {
        if self.process.is_none()
            && let Err(e) = self.start()
        {
            return Outcome::Lost(e);
        }
        let request = json!({
            "path": path,
            "input": input,
            "max_steps": max_steps,
            "timeout": CASE_TIMEOUT.as_secs_f64() * 0.8,
        });
        let answer = match &mut self.process {
            Some((_, stdin, receive)) => writeln!(stdin, "{request}")
                .map_err(|e| format!("the reference driver stopped reading: {e}"))
                .and_then(|()| {
                    receive.recv_timeout(CASE_TIMEOUT).map_err(|_| {
                        "the reference driver did not answer in time or died".to_owned()
                    })
                }),
            None => Err("no reference driver".to_owned()),
        };
        match answer {
            Ok(line) => answer_outcome(&line),
            Err(lost) => {
                self.stop();
                Outcome::Lost(lost)
            }
        }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer_outcome(line: &str) -> Outcome {
    let Ok(answer) = serde_json::from_str::<Value>(line) else {
        return Outcome::Lost(format!("the reference driver answered `{line}`"));
    };
    if let Some(kind) = answer.get("error").and_then(Value::as_str) {
        if kind == "Timeout" {
            return Outcome::Lost("the reference ran out of time".to_owned());
        }
        return Outcome::Failed {
            kind: kind.to_owned(),
            message: answer["message"].as_str().unwrap_or_default().to_owned(),
        };
    }
    let output = answer.get("output").cloned().unwrap_or(Value::Null);
    if answer["step_limit"] == json!(true) {
        Outcome::StepLimit(Some(output))
    } else {
        Outcome::Output(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_type_is_read_from_the_cli_message() {
        let stderr =
            "warning: x\nerror: machine `m` failed in state `s` (TemplateError): cannot (render)";
        assert_eq!(error_kind(stderr), "TemplateError");
        assert_eq!(error_kind("error: m.yml: bad"), "");
    }

    #[test]
    fn reference_answers_become_outcomes() {
        assert_eq!(
            answer_outcome(r#"{"output": {"a": 1}, "step_limit": false}"#),
            Outcome::Output(json!({"a": 1}))
        );
        assert_eq!(
            answer_outcome(r#"{"output": {}, "step_limit": true}"#),
            Outcome::StepLimit(Some(json!({})))
        );
        assert_eq!(
            answer_outcome(r#"{"error": "TypeError", "message": "m"}"#),
            Outcome::Failed {
                kind: "TypeError".into(),
                message: "m".into()
            }
        );
        assert!(matches!(answer_outcome("not json"), Outcome::Lost(_)));
    }
}
