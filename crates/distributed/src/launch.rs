//! Starting machines as separate `flatmachines run` processes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::process::{Child, Command};

use flatmachines_core::{
    InvokeRequest, JsonMap, MachineInvoker, ReadOptions, ResultBackend, result_uri,
};

/// The environment variable naming the `flatmachines` executable to start.
const PROGRAM_ENV: &str = "FLATMACHINES_BIN";

/// How long after a child process exits its result may still be on its way.
const RESULT_GRACE: Duration = Duration::from_millis(500);

/// A machine could not be started as a process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The machine file does not exist.
    #[error("cannot launch `{}`: no such machine file", path.display())]
    MachineNotFound {
        /// The path, resolved.
        path: PathBuf,
    },
    /// The process could not be started.
    #[error("cannot start `{}` for machine `{}`: {source} (set {PROGRAM_ENV} to the flatmachines executable)", program.display(), machine.display())]
    Spawn {
        /// The executable.
        program: PathBuf,
        /// The machine file.
        machine: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The child's log file could not be created.
    #[error("cannot create the log file `{}`: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A child machine defined inline cannot run in another process.
    #[error(
        "child machine `{machine}` is written inline in its parent; to run it in its own process, move it to its own file and name that file under `machines:`"
    )]
    Inline {
        /// The child's name under `machines:`.
        machine: String,
    },
}

/// One machine to start in its own process.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LaunchRequest {
    /// The machine file; relative paths resolve against the launcher's base directory.
    pub machine: PathBuf,
    /// The input.
    pub input: JsonMap,
    /// The execution id (default: a new UUID).
    pub execution_id: Option<String>,
    /// The parent execution, for lineage and so the child publishes its result.
    pub parent_id: Option<String>,
    /// The names of the machines above it, outermost first (`--machine-chain`), so the
    /// `machine_depth` limit counts across processes.
    pub machine_chain: Vec<String>,
}

impl LaunchRequest {
    /// A request to run `machine` with `input` under a new execution id.
    pub fn new(machine: impl Into<PathBuf>, input: JsonMap) -> Self {
        LaunchRequest {
            machine: machine.into(),
            input,
            execution_id: None,
            parent_id: None,
            machine_chain: Vec::new(),
        }
    }
}

/// Starts machines as detached `flatmachines run` processes (their own process group, so a
/// signal to the launcher's group does not reach them), passing the store URL so they share
/// the launcher's backends.
#[derive(Debug, Clone)]
pub struct Launcher {
    program: PathBuf,
    base_dir: Option<PathBuf>,
    store: Option<String>,
    log_dir: Option<PathBuf>,
}

impl Default for Launcher {
    fn default() -> Self {
        Launcher::new()
    }
}

impl Launcher {
    /// A launcher of `$FLATMACHINES_BIN`, else of this executable when it is `flatmachines`,
    /// else of `flatmachines` on the `PATH`.
    pub fn new() -> Self {
        Launcher {
            program: default_program(),
            base_dir: None,
            store: None,
            log_dir: None,
        }
    }

    /// Starts `program` instead.
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Resolves relative machine paths against `dir` (the launching machine's directory).
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Passes `--store url` to every process.
    pub fn store(mut self, url: impl Into<String>) -> Self {
        self.store = Some(url.into());
        self
    }

    /// Writes each process's stdout and stderr to `{dir}/{execution_id}.log` (default: both
    /// are discarded).
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// The store URL the processes get.
    pub fn store_url(&self) -> Option<&str> {
        self.store.as_deref()
    }

    fn resolve(&self, machine: &Path) -> PathBuf {
        match &self.base_dir {
            Some(dir) if machine.is_relative() => dir.join(machine),
            _ => machine.to_path_buf(),
        }
    }

    /// Starts the machine and returns its execution id without waiting for it. The process
    /// is reaped in the background when it exits.
    pub async fn launch(&self, request: &LaunchRequest) -> Result<String, LaunchError> {
        let (execution_id, child) = self.spawn(request)?;
        tokio::spawn(reap(child, execution_id.clone()));
        Ok(execution_id)
    }

    fn spawn(&self, request: &LaunchRequest) -> Result<(String, Child), LaunchError> {
        let machine = self.resolve(&request.machine);
        if !machine.is_file() {
            return Err(LaunchError::MachineNotFound { path: machine });
        }
        let execution_id = request
            .execution_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut command = Command::new(&self.program);
        command
            .arg("run")
            .arg(&machine)
            .arg("--input")
            .arg(Value::Object(request.input.clone()).to_string())
            .arg("--execution-id")
            .arg(&execution_id);
        if let Some(parent) = &request.parent_id {
            command.arg("--parent-id").arg(parent);
        }
        if !request.machine_chain.is_empty() {
            command
                .arg("--machine-chain")
                .arg(Value::from(request.machine_chain.clone()).to_string());
        }
        if let Some(store) = &self.store {
            command.arg("--store").arg(store);
        }
        // The working directory is inherited, so relative store URLs (`sqlite://jobs.db`)
        // name the same database in the child; the machine's own references resolve
        // against its file.
        let (stdout, stderr) = self.outputs(&execution_id)?;
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(false);
        // Its own process group: a Ctrl-C or a signal to the launcher's group does not
        // reach it.
        #[cfg(unix)]
        command.process_group(0);
        let child = command.spawn().map_err(|source| LaunchError::Spawn {
            program: self.program.clone(),
            machine: machine.clone(),
            source,
        })?;
        tracing::debug!(machine = %machine.display(), execution_id = %execution_id, pid = ?child.id(), "launched a machine process");
        Ok((execution_id, child))
    }

    fn outputs(&self, execution_id: &str) -> Result<(Stdio, Stdio), LaunchError> {
        let Some(dir) = &self.log_dir else {
            return Ok((Stdio::null(), Stdio::null()));
        };
        let path = dir.join(format!("{execution_id}.log"));
        let log_error = |source| LaunchError::Log {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(log_error)?;
        let file = std::fs::File::create(&path).map_err(log_error)?;
        let copy = file.try_clone().map_err(log_error)?;
        Ok((Stdio::from(file), Stdio::from(copy)))
    }
}

async fn reap(mut child: Child, execution_id: String) {
    match child.wait().await {
        Ok(status) if status.success() => {}
        Ok(status) => {
            tracing::warn!(execution_id = %execution_id, %status, "a launched machine process failed")
        }
        Err(e) => {
            tracing::warn!(execution_id = %execution_id, error = %e, "cannot wait for a launched machine process")
        }
    }
}

fn default_program() -> PathBuf {
    if let Some(program) = std::env::var_os(PROGRAM_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(program);
    }
    std::env::current_exe()
        .ok()
        .filter(|exe| exe.file_stem().is_some_and(|stem| stem == "flatmachines"))
        .unwrap_or_else(|| PathBuf::from("flatmachines"))
}

/// Runs a parent's child machines (`machine:`, `foreach`, `launch` states) as separate
/// `flatmachines run` processes. Each child gets its execution id and the parent's, writes its
/// output to `flatagents://{id}/result` on the result backend both share, and the parent
/// reads it there.
///
/// A blocking child that exits without writing a result fails the state with the process's
/// exit status instead of leaving the parent waiting. A child whose result is already stored
/// (a resumed parent launching it again) is not started twice. Children written inline in
/// their parent cannot be started this way: move them to their own files.
#[derive(Clone)]
pub struct SubprocessInvoker {
    launcher: Launcher,
    results: Arc<dyn ResultBackend>,
}

impl fmt::Debug for SubprocessInvoker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubprocessInvoker")
            .field("launcher", &self.launcher)
            .finish_non_exhaustive()
    }
}

impl SubprocessInvoker {
    /// Launches through `launcher`; `results` must be the backend the children write to (a
    /// shared one: SQLite, Redis or PostgreSQL, named by the launcher's store URL).
    pub fn new(launcher: Launcher, results: Arc<dyn ResultBackend>) -> Self {
        SubprocessInvoker { launcher, results }
    }

    fn launch_request(request: &InvokeRequest) -> Result<LaunchRequest, LaunchError> {
        let file = request
            .config_file
            .clone()
            .ok_or_else(|| LaunchError::Inline {
                machine: request.machine.clone(),
            })?;
        let mut launch = LaunchRequest::new(file, request.input.clone());
        launch.execution_id = Some(request.execution_id.clone());
        launch.parent_id.clone_from(&request.parent_execution_id);
        launch.machine_chain.clone_from(&request.machine_chain);
        Ok(launch)
    }

    async fn stored(&self, execution_id: &str) -> flatmachines_core::Result<Option<Value>> {
        let uri = result_uri(execution_id, "result");
        self.results.read(&uri, ReadOptions::now()).await
    }
}

fn launch_error(error: LaunchError) -> flatmachines_core::Error {
    flatmachines_core::Error::backend("subprocess", error)
}

#[async_trait]
impl MachineInvoker for SubprocessInvoker {
    async fn launch(&self, request: InvokeRequest) -> flatmachines_core::Result<()> {
        if self.stored(&request.execution_id).await?.is_some() {
            return Ok(());
        }
        let launch = Self::launch_request(&request).map_err(launch_error)?;
        self.launcher.launch(&launch).await.map_err(launch_error)?;
        Ok(())
    }

    async fn invoke(
        &self,
        request: InvokeRequest,
        results: &dyn ResultBackend,
        timeout: Option<Duration>,
    ) -> flatmachines_core::Result<Value> {
        let uri = result_uri(&request.execution_id, "result");
        if let Some(value) = results.read(&uri, ReadOptions::now()).await? {
            return Ok(value);
        }
        let launch = Self::launch_request(&request).map_err(launch_error)?;
        let (execution_id, mut child) = self.launcher.spawn(&launch).map_err(launch_error)?;
        let waiting = results.read(&uri, ReadOptions::blocking(timeout));
        tokio::pin!(waiting);
        tokio::select! {
            value = &mut waiting => {
                // The child may still be exiting; reap it without holding the parent up.
                tokio::spawn(reap(child, execution_id));
                Ok(value?.unwrap_or(Value::Null))
            }
            status = child.wait() => {
                let status = status.map_err(|e| flatmachines_core::Error::backend("subprocess", e))?;
                let grace = results.read(&uri, ReadOptions::blocking(Some(RESULT_GRACE))).await;
                match grace {
                    Ok(Some(value)) => Ok(value),
                    Ok(None) | Err(flatmachines_core::Error::Timeout { .. }) => Err(flatmachines_core::Error::backend(
                        "subprocess",
                        format!(
                            "child machine `{}` (execution {}) exited with {status} without writing its result to {uri}",
                            request.machine, request.execution_id
                        ),
                    )),
                    Err(e) => Err(e),
                }
            }
        }
    }
}
