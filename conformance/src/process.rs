//! Cross-process cases: a helper process that opens the same backend and does one task.
//!
//! A case that needs a second process (two processes contending for a lock, several claiming
//! from one pool) starts one through the [`ProcessLauncher`] given to
//! [`Capabilities::cross_process`](crate::Capabilities::cross_process). The launched program
//! must notice the [`HELPER_ENV`] variable, decode the [`HelperTask`] with
//! [`HelperTask::from_env`], open the backend named by its own configuration (a URL in another
//! variable, say) and call [`serve_helper`]. Test binaries usually re-execute themselves:
//!
//! ```no_run
//! use flatmachines_conformance::process::{HelperBackends, HelperTask, serve_helper};
//! # fn my_factories() -> HelperBackends { HelperBackends::default() }
//!
//! // First thing in `main` of a `harness = false` test (or in a dedicated `#[test]` that the
//! // launcher selects with `--exact NAME --nocapture`).
//! if let Some(task) = HelperTask::from_env() {
//!     let runtime = tokio::runtime::Runtime::new().unwrap();
//!     let served = task.and_then(|task| runtime.block_on(serve_helper(task, &my_factories())));
//!     std::process::exit(if served.is_ok() { 0 } else { 1 });
//! }
//! ```
//!
//! The helper talks on standard output in lines starting with [`MARK`] (anything else, such as
//! libtest's own output, is ignored) and waits on standard input, so the case decides when it
//! lets go. Every wait on either side is bounded, and a case kills its helpers when it fails.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{LockFactory, PersistenceFactory, WorkFactory};

/// The environment variable holding a helper's task, as JSON.
pub const HELPER_ENV: &str = "FLATMACHINES_CONFORMANCE_HELPER";

/// The start of every line a helper prints for the case that started it.
pub const MARK: &str = "@flatmachines-conformance-helper";

/// How long a helper waits for the case to let it go before giving up on its own, so an
/// abandoned helper cannot linger.
const HELPER_PATIENCE: Duration = Duration::from_secs(120);

/// How long a case waits for any one message of a helper.
pub(crate) const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start a process that serves [`HelperTask`]s against the same backend: a program,
/// its arguments and extra environment variables. The task is added as [`HELPER_ENV`].
///
/// Its `Debug` output names the variables but not their values, which may hold credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProcessLauncher {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl ProcessLauncher {
    /// Starts `program`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        ProcessLauncher {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Starts the running executable again, the usual choice for a test binary.
    pub fn current_exe() -> Result<Self, String> {
        std::env::current_exe()
            .map(Self::new)
            .map_err(|e| format!("cannot find the running executable: {e}"))
    }

    /// Adds an argument (for a libtest binary: `--exact`, the helper test's name,
    /// `--nocapture`).
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable, such as the URL of the backend to open.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn command(&self, task: &HelperTask) -> Result<Command, String> {
        let encoded = serde_json::to_string(task).map_err(|e| format!("encode task: {e}"))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(HELPER_ENV, encoded)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(command)
    }
}

impl std::fmt::Debug for ProcessLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.env.iter().map(|(name, _)| name).collect();
        f.debug_struct("ProcessLauncher")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &names)
            .finish()
    }
}

/// One thing a helper process does, in the namespace the case opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HelperTask {
    /// Acquire `key`, print `LOCKED` (or `REFUSED`), hold it until standard input closes,
    /// release it, print `DONE`.
    HoldLock {
        /// The namespace to open.
        namespace: String,
        /// The lock key.
        key: String,
    },
    /// Load `read` and print `LOADED <hex>` (or `MISSING`), save `write` with
    /// [`helper_value`], print `DONE`.
    Persist {
        /// The namespace to open.
        namespace: String,
        /// The key to load.
        read: String,
        /// The key to save.
        write: String,
    },
    /// Open `pool`, print `READY`, wait for a `GO` line, claim and complete items until the
    /// pool is empty printing `CLAIMED <id>` for each, then print `DONE`.
    ClaimAll {
        /// The namespace to open.
        namespace: String,
        /// The pool name.
        pool: String,
        /// The worker id to claim as.
        worker: String,
    },
}

impl HelperTask {
    /// The task this process was started for: `None` when [`HELPER_ENV`] is not set (this is
    /// not a helper), `Some(Err)` when it does not decode.
    pub fn from_env() -> Option<Result<HelperTask, String>> {
        let encoded = std::env::var_os(HELPER_ENV)?;
        let encoded = encoded.to_string_lossy();
        Some(
            serde_json::from_str(&encoded)
                .map_err(|e| format!("{HELPER_ENV} is not a helper task ({e}): {encoded}")),
        )
    }
}

/// The factories a helper opens its namespace with; a task whose factory is missing fails.
#[derive(Debug, Clone, Default)]
pub struct HelperBackends {
    /// For [`HelperTask::Persist`].
    pub persistence: Option<PersistenceFactory>,
    /// For [`HelperTask::HoldLock`].
    pub lock: Option<LockFactory>,
    /// For [`HelperTask::ClaimAll`].
    pub work: Option<WorkFactory>,
}

/// The value a [`HelperTask::Persist`] helper saves under `key`: every byte value, then the
/// key, so the reader can tell it came through unchanged.
pub fn helper_value(key: &str) -> Vec<u8> {
    let mut value: Vec<u8> = (0..=255).collect();
    value.extend_from_slice(key.as_bytes());
    value
}

/// Serves `task`, printing its messages on standard output. Run it in the helper process.
pub async fn serve_helper(task: HelperTask, backends: &HelperBackends) -> Result<(), String> {
    let served = serve(task, backends).await;
    if let Err(message) = &served {
        say("ERROR", &message.replace('\n', " "));
    }
    served
}

async fn serve(task: HelperTask, backends: &HelperBackends) -> Result<(), String> {
    let missing = |what: &str| format!("this helper has no {what} factory");
    match task {
        HelperTask::HoldLock { namespace, key } => {
            let factory = backends.lock.as_ref().ok_or_else(|| missing("lock"))?;
            let lock = factory.open(&namespace).await?;
            let acquired = lock.acquire(&key).await.map_err(|e| e.to_string())?;
            say(if acquired { "LOCKED" } else { "REFUSED" }, &key);
            if acquired {
                wait_for_stdin_eof().await;
                lock.release(&key).await.map_err(|e| e.to_string())?;
            }
        }
        HelperTask::Persist {
            namespace,
            read,
            write,
        } => {
            let factory = backends
                .persistence
                .as_ref()
                .ok_or_else(|| missing("persistence"))?;
            let store = factory.open(&namespace).await?;
            match store.load(&read).await.map_err(|e| e.to_string())? {
                Some(value) => say("LOADED", &hex(&value)),
                None => say("MISSING", &read),
            }
            let value = bytes::Bytes::from(helper_value(&write));
            store.save(&write, value).await.map_err(|e| e.to_string())?;
        }
        HelperTask::ClaimAll {
            namespace,
            pool,
            worker,
        } => {
            let factory = backends.work.as_ref().ok_or_else(|| missing("work"))?;
            let pool = factory.open(&namespace).await?.pool(&pool);
            say("READY", &worker);
            wait_for_go().await?;
            while let Some(item) = pool.claim(&worker).await.map_err(|e| e.to_string())? {
                say("CLAIMED", &item.id);
                pool.complete(&item.id, None)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    say("DONE", "");
    Ok(())
}

fn say(event: &str, payload: &str) {
    let mut out = std::io::stdout().lock();
    // A helper whose parent stopped listening has nobody left to tell.
    let _ = writeln!(out, "{MARK} {event} {payload}");
    let _ = out.flush();
}

/// Hex text of `bytes`, two lowercase digits per byte.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// Returns when standard input closes or [`HELPER_PATIENCE`] passes.
async fn wait_for_stdin_eof() {
    let read = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().lock().read_to_end(&mut sink);
    });
    let _ = tokio::time::timeout(HELPER_PATIENCE, read).await;
}

async fn wait_for_go() -> Result<(), String> {
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        line
    });
    match tokio::time::timeout(HELPER_PATIENCE, read).await {
        Ok(Ok(line)) if line.trim() == "GO" => Ok(()),
        _ => Err("the case never said GO".to_owned()),
    }
}

/// A running helper, seen from the case. Dropping it kills the process.
pub(crate) struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    messages: mpsc::UnboundedReceiver<(String, String)>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    what: String,
}

impl Helper {
    /// Starts a helper for `task`.
    pub(crate) fn spawn(launcher: &ProcessLauncher, task: &HelperTask) -> Result<Self, String> {
        let what = format!("helper process ({task:?})");
        let mut child = launcher
            .command(task)?
            .spawn()
            .map_err(|e| format!("cannot start the {what}: {e}"))?;
        let stdin = child.stdin.take();
        let (tx, messages) = mpsc::unbounded_channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // libtest may print `test name ... ` on the same line first.
                    let Some(at) = line.find(MARK) else { continue };
                    let rest = line[at + MARK.len()..].trim();
                    let (event, payload) = rest.split_once(' ').unwrap_or((rest, ""));
                    if tx.send((event.to_owned(), payload.to_owned())).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(pipe) = child.stderr.take() {
            let kept = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
                    // The last lines are the ones that explain a failure.
                    if kept.len() == 20 {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            });
        }
        Ok(Helper {
            child,
            stdin,
            messages,
            stderr,
            what,
        })
    }

    /// The next message: `(event, payload)`. An `ERROR` message, an exit or silence is a
    /// failure naming the helper and its last lines of standard error.
    pub(crate) async fn next(&mut self) -> Result<(String, String), String> {
        let received = tokio::time::timeout(MESSAGE_TIMEOUT, self.messages.recv()).await;
        match received {
            Ok(Some((event, payload))) if event == "ERROR" => {
                Err(self.failure(&format!("reported an error: {payload}")))
            }
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(self.failure("exited without saying more")),
            Err(_) => Err(self.failure(&format!("said nothing for {MESSAGE_TIMEOUT:?}"))),
        }
    }

    /// The next message, which must be `event`; returns its payload.
    pub(crate) async fn expect(&mut self, event: &str) -> Result<String, String> {
        let (got, payload) = self.next().await?;
        if got == event {
            Ok(payload)
        } else {
            Err(self.failure(&format!("said `{got} {payload}`, expected `{event}`")))
        }
    }

    /// Sends one line to the helper's standard input.
    pub(crate) fn send(&mut self, line: &str) -> Result<(), String> {
        let written = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{line}").and_then(|()| stdin.flush()),
            None => return Err(self.failure("has its stdin closed already")),
        };
        written.map_err(|e| self.failure(&format!("cannot be written to: {e}")))
    }

    /// Closes the helper's standard input: the signal to let go and finish.
    pub(crate) fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    fn failure(&self, what: &str) -> String {
        let stderr = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        let tail: Vec<&str> = stderr.iter().map(String::as_str).collect();
        format!(
            "the {} {what}; its last stderr lines:\n{}",
            self.what,
            tail.join("\n")
        )
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // A helper that already exited makes these fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_travel_as_json() {
        let task = HelperTask::ClaimAll {
            namespace: "ns".into(),
            pool: "jobs".into(),
            worker: "w1".into(),
        };
        let text = serde_json::to_string(&task).unwrap();
        assert_eq!(
            text,
            r#"{"task":"claim_all","namespace":"ns","pool":"jobs","worker":"w1"}"#
        );
        assert_eq!(serde_json::from_str::<HelperTask>(&text).unwrap(), task);
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(helper_value("k").len(), 257);
        let launcher = ProcessLauncher::new("bin").env("URL", "redis://:secret@host");
        let debug = format!("{launcher:?}");
        assert!(
            debug.contains("URL") && !debug.contains("secret"),
            "{debug}"
        );
    }
}
