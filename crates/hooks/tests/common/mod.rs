//! Helpers shared by the integration tests: a runtime with the hook classes, machines from
//! YAML, and captured logs.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use flatmachines_core::{JsonMap, MachineHooks};
use flatmachines_engine::{Machine, RunError, RunOptions, RunOutcome, Runtime, RuntimeBuilder};
use flatmachines_hooks::{CommandHooks, WebhookHooks};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A runtime builder knowing the `webhook` and `command` hook classes, as the facade's.
pub fn builder() -> RuntimeBuilder {
    Runtime::builder()
        .hook_type("webhook", |args, _| {
            WebhookHooks::from_args(args)
                .map(|hooks| Arc::new(hooks) as Arc<dyn MachineHooks>)
                .map_err(|e| e.to_string())
        })
        .hook_type("command", |args, registry| {
            CommandHooks::from_args(args, registry.config_dir())
                .map(|hooks| Arc::new(hooks) as Arc<dyn MachineHooks>)
                .map_err(|e| e.to_string())
        })
}

/// A JSON object from a `json!` value.
pub fn object(value: Value) -> JsonMap {
    value.as_object().cloned().unwrap_or_default()
}

/// Runs the machine in `yaml` (whose relative paths start from `dir`) with `input`.
pub async fn run_yaml(
    runtime: &Runtime,
    yaml: &str,
    dir: &Path,
    input: Value,
) -> Result<RunOutcome, RunError> {
    let machine = Machine::from_yaml(yaml, dir).expect("the test machine loads");
    runtime
        .run(&machine, object(input), RunOptions::default())
        .await
}

/// Everything logged while it is held, at every level, on the current thread.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures the logs of this thread until the guard is dropped. Tests using it run on a
    /// current-thread runtime, so every task of the run logs here.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (logs, guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}
