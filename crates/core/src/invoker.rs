//! Starting child machines somewhere else (a queue, a subprocess, another host).

use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::Value;

use crate::{JsonMap, Result};

/// One child machine to start.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct InvokeRequest {
    /// The child's name in the parent's `machines:` map.
    pub machine: String,
    /// The child's execution id, chosen by the parent. Its output goes to
    /// `flatagents://{execution_id}/result`.
    pub execution_id: String,
    /// The parent's execution id.
    pub parent_execution_id: Option<String>,
    /// The rendered input.
    pub input: JsonMap,
    /// The child's config file, when it has one of its own; `None` for a machine written
    /// inline in its parent's `machines:` map.
    pub config_file: Option<PathBuf>,
    /// The names of the machines above the child, the outermost first: a runner in another
    /// process continues the `machine_depth` count from here.
    pub machine_chain: Vec<String>,
}

impl InvokeRequest {
    /// A request to start `machine` as execution `execution_id` with `input`.
    pub fn new(
        machine: impl Into<String>,
        execution_id: impl Into<String>,
        input: JsonMap,
    ) -> Self {
        InvokeRequest {
            machine: machine.into(),
            execution_id: execution_id.into(),
            parent_execution_id: None,
            input,
            config_file: None,
            machine_chain: Vec::new(),
        }
    }
}

/// Starts child machines for `machine:`, `foreach` and `launch` states.
///
/// The engine runs children in-process unless an invoker is configured. With one, every child
/// start goes through [`MachineInvoker::launch`], and a blocking state then reads the child's
/// output from the [`ResultBackend`](crate::ResultBackend).
///
/// # Contract
///
/// 1. `launch` returns once the child is durably started (enqueued, spawned); it does not wait
///    for the child to finish.
/// 2. The child writes its output — or `{"_error", "_error_type"}` when it fails — to
///    `flatagents://{execution_id}/result` on the result backend the parent reads.
/// 3. Launching the same execution id twice must not run the child twice.
#[async_trait]
pub trait MachineInvoker: Send + Sync + Debug {
    /// Starts the child and returns without waiting for it.
    async fn launch(&self, request: InvokeRequest) -> Result<()>;

    /// Starts the child and waits for its output. The default launches it and blocks on the
    /// result backend; implementations with a direct return path may override it.
    async fn invoke(
        &self,
        request: InvokeRequest,
        results: &dyn crate::ResultBackend,
        timeout: Option<std::time::Duration>,
    ) -> Result<Value> {
        let uri = crate::result_uri(&request.execution_id, "result");
        self.launch(request).await?;
        let value = results
            .read(&uri, crate::ReadOptions::blocking(timeout))
            .await?;
        Ok(value.unwrap_or(Value::Null))
    }
}
