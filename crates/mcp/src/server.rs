//! One MCP server, connected: started as a child process (stdio) or reached at a URL
//! (streamable HTTP), initialized, its tools listed, then called.
//!
//! Every wait is bounded by the server's `timeout`. A stdio server leads its own process
//! group, and the whole group is killed when the server is stopped or dropped, so that what it
//! started (`npx` starts `node`) does not outlive the run.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, JsonObject,
    MetaObject, RequestMetaObject, Tool,
};
use rmcp::service::{Peer, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use flatmachines_core::ToolCallId;
use flatmachines_core::config::{McpServer, McpTransport};

/// How long a server gets when none is configured (`timeout`), per wait.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How many of its last stderr lines a server's errors quote.
const STDERR_TAIL_LINES: usize = 20;
/// Stderr lines are cut at this length.
const MAX_STDERR_LINE: usize = 4 * 1024;
/// How long a failed server's stderr is still read, so that its last words make the message.
const STDERR_SETTLE: Duration = Duration::from_millis(300);
/// How long a stopped server gets to exit after its input closes, before its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The `_meta` key carrying a call's stable id (`execution/step/turn/index`).
pub const CALL_ID_META_KEY: &str = "io.github.flatmachines/call_id";

/// A connected server.
pub(crate) struct Server {
    pub(crate) name: String,
    pub(crate) tools: Vec<Tool>,
    peer: Peer<RoleClient>,
    service: tokio::sync::Mutex<Option<RunningService<RoleClient, ClientConfig>>>,
    process: Option<Process>,
    timeout: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("tools", &self.tools.len())
            .field("pid", &self.process.as_ref().and_then(|p| p.group))
            .finish_non_exhaustive()
    }
}

/// What a call could not do, as the model will read it.
pub(crate) type CallFailure = String;

impl Server {
    /// Starts (stdio) or reaches (HTTP) server `name`, initializes it and lists its tools.
    /// The error says what failed, with the tail of the server's stderr.
    pub(crate) async fn start(
        name: &str,
        definition: &McpServer,
        base_dir: &Path,
        max_message_bytes: usize,
    ) -> Result<Server, String> {
        let transport = definition.transport()?;
        let timeout = definition
            .timeout
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .unwrap_or(DEFAULT_TIMEOUT);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("flatmachines", env!("CARGO_PKG_VERSION")),
        );
        let (service, process) = match transport {
            McpTransport::Stdio { command } => {
                let (mut child, tail, reader) = spawn(command, definition, base_dir)?;
                let streams = (child.stdout.take(), child.stdin.take());
                let process = Process::watch(child, tail, reader);
                let (Some(stdout), Some(stdin)) = streams else {
                    return Err("its standard streams could not be opened".to_owned());
                };
                let transport = AsyncRwTransport::<RoleClient, _, _>::new_client(stdout, stdin)
                    .with_max_line_length(max_message_bytes);
                match tokio::time::timeout(timeout, info.serve(transport)).await {
                    Ok(Ok(service)) => (service, Some(process)),
                    Ok(Err(e)) => return Err(process.explain(format!("{e}")).await),
                    Err(_) => {
                        return Err(process
                            .explain(format!(
                                "it did not answer `initialize` within {}",
                                seconds(timeout)
                            ))
                            .await);
                    }
                }
            }
            McpTransport::Http { url } => {
                install_crypto_provider();
                let mut headers = HashMap::new();
                for (key, value) in &definition.headers {
                    let key = HeaderName::try_from(key.as_str())
                        .map_err(|e| format!("header `{key}` is not a valid name: {e}"))?;
                    let value = HeaderValue::try_from(value.as_str())
                        .map_err(|e| format!("header `{key}` has an invalid value: {e}"))?;
                    headers.insert(key, value);
                }
                let config = StreamableHttpClientTransportConfig::with_uri(url)
                    .custom_headers(headers)
                    .max_json_response_size(max_message_bytes)
                    .max_sse_event_size(max_message_bytes);
                let transport = StreamableHttpClientTransport::from_config(config);
                match tokio::time::timeout(timeout, info.serve(transport)).await {
                    Ok(Ok(service)) => (service, None),
                    Ok(Err(e)) => return Err(format!("cannot initialize it at {url}: {e}")),
                    Err(_) => {
                        return Err(format!(
                            "{url} did not answer `initialize` within {}",
                            seconds(timeout)
                        ));
                    }
                }
            }
        };
        let peer = service.peer().clone();
        let tools = match tokio::time::timeout(timeout, peer.list_all_tools()).await {
            Ok(Ok(tools)) => tools,
            Ok(Err(e)) => {
                let message = format!("`tools/list` failed: {e}");
                return Err(explain(process.as_ref(), message).await);
            }
            Err(_) => {
                let message = format!("`tools/list` took longer than {}", seconds(timeout));
                return Err(explain(process.as_ref(), message).await);
            }
        };
        Ok(Server {
            name: name.to_owned(),
            tools,
            peer,
            service: tokio::sync::Mutex::new(Some(service)),
            process,
            timeout,
        })
    }

    /// Calls tool `tool` with `arguments`, passing `id` in `_meta`. `Ok` is the result's JSON
    /// form; `Err` says why there is none.
    pub(crate) async fn call(
        &self,
        tool: &str,
        arguments: JsonObject,
        id: &ToolCallId,
    ) -> Result<Value, CallFailure> {
        let mut meta = MetaObject::default();
        meta.0
            .insert(CALL_ID_META_KEY.to_owned(), Value::from(id.key()));
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = Some(arguments);
        params.meta = Some(RequestMetaObject(meta));
        let call = tokio::time::timeout(self.timeout, self.peer.call_tool(params));
        // A process that dies mid-call ends the call at once, rather than at the timeout.
        let exited = async {
            match &self.process {
                Some(process) => process.exited().await,
                None => std::future::pending().await,
            }
        };
        let answer = tokio::select! {
            answer = call => answer,
            () = exited => {
                return Err(explain(self.process.as_ref(), "the server exited during the call".to_owned()).await);
            }
        };
        let result = match answer {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                let message = match e {
                    rmcp::ServiceError::McpError(error) => {
                        format!("the server answered an error: {}", error.message)
                    }
                    rmcp::ServiceError::TransportClosed => {
                        "the server has closed the connection (it exited or failed)".to_owned()
                    }
                    other => other.to_string(),
                };
                return Err(explain(self.process.as_ref(), message).await);
            }
            Err(_) => {
                let message = format!(
                    "the server did not answer within {} (its `timeout`)",
                    seconds(self.timeout)
                );
                // It is still running: what it has written to stderr so far, without a wait.
                return Err(match &self.process {
                    Some(process) => process.describe(message),
                    None => message,
                });
            }
        };
        serde_json::to_value(&result).map_err(|e| format!("its result cannot be read: {e}"))
    }

    /// Stops the server: ends the session, then gives a child process a moment to exit
    /// before its group is killed.
    pub(crate) async fn stop(&self) {
        if let Some(service) = self.service.lock().await.take() {
            let _ = tokio::time::timeout(EXIT_GRACE, service.cancel()).await;
        }
        if let Some(process) = &self.process {
            process.stop().await;
        }
    }
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

async fn explain(process: Option<&Process>, message: String) -> String {
    match process {
        Some(process) => process.explain(message).await,
        None => message,
    }
}

/// The reqwest transport is built without a TLS provider of its own (see Cargo.toml).
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one first; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

type StderrTail = Arc<Mutex<VecDeque<String>>>;

/// Starts `command`, its stderr collected.
fn spawn(
    command: &str,
    definition: &McpServer,
    base_dir: &Path,
) -> Result<(Child, StderrTail, Option<JoinHandle<()>>), String> {
    let mut process = tokio::process::Command::new(command);
    process
        .args(&definition.args)
        .envs(&definition.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = &definition.cwd {
        process.current_dir(base_dir.join(cwd));
    }
    #[cfg(unix)]
    process.process_group(0);
    let mut child = process.spawn().map_err(|e| {
        let place = definition
            .cwd
            .as_ref()
            .map(|cwd| format!(" in {}", base_dir.join(cwd).display()))
            .unwrap_or_default();
        format!("cannot start `{command}`{place}: {e}")
    })?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let reader = child
        .stderr
        .take()
        .map(|stderr| tokio::spawn(collect_stderr(stderr, Arc::clone(&tail))));
    Ok((child, tail, reader))
}

/// A server's child process, waited for by a task of its own.
struct Process {
    /// The process group the child leads (its pid).
    group: Option<u32>,
    /// How the process exited, once it has.
    exit: watch::Receiver<Option<String>>,
    tail: StderrTail,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl Process {
    /// Hands `child` to a task that waits for it. If the runtime stops first, the task drops
    /// the child, which kills it (`kill_on_drop`).
    fn watch(mut child: Child, tail: StderrTail, reader: Option<JoinHandle<()>>) -> Process {
        let (sender, exit) = watch::channel(None);
        let group = child.id();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("cannot be waited for: {e}"),
            };
            // What it started in its group must not outlive it. Its pid was just reaped, and
            // Linux does not hand out a pid that is still some process's group id, so this
            // reaches the orphans if any are left, and no one else.
            kill_group(group);
            let _ = sender.send(Some(status));
        });
        Process {
            group,
            exit,
            tail,
            reader: Mutex::new(reader),
        }
    }

    /// Resolves when the process has exited.
    async fn exited(&self) {
        let mut exit = self.exit.clone();
        if exit.wait_for(Option::is_some).await.is_err() {
            // The waiting task is gone (the runtime is stopping): nothing will tell.
            std::future::pending::<()>().await;
        }
    }

    /// `message`, with whether the process has exited and the tail of its stderr.
    async fn explain(&self, message: String) -> String {
        let reader = self
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(reader) = reader {
            // A process that exited closes stderr, and the reader ends; one still running
            // gets a moment, then is not waited for.
            let _ = tokio::time::timeout(STDERR_SETTLE, reader).await;
        }
        // Its stderr closes just before it exits.
        let _ = tokio::time::timeout(STDERR_SETTLE, self.exited()).await;
        self.describe(message)
    }

    /// `message`, with whether the process has exited and the tail of its stderr as read so
    /// far.
    fn describe(&self, message: String) -> String {
        let status = self.exit.borrow().clone();
        let mut text = message;
        if let Some(status) = status {
            text.push_str(&format!(" (the process exited: {status})"));
        }
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        if !tail.is_empty() {
            text.push_str("; its stderr ends with:\n");
            text.push_str(&tail.iter().cloned().collect::<Vec<_>>().join("\n"));
        }
        text
    }

    async fn stop(&self) {
        // The session's end closed its input; a server that does not exit then is killed.
        let _ = tokio::time::timeout(EXIT_GRACE, self.exited()).await;
        kill_group(self.group);
        let _ = tokio::time::timeout(EXIT_GRACE, self.exited()).await;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Once it has exited and been reaped, its pid may be reused: leave it alone then.
        if self.exit.borrow().is_none() {
            kill_group(self.group);
        }
    }
}

async fn collect_stderr(stderr: ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let mut text = String::from_utf8_lossy(&line).trim_end().to_owned();
                if text.len() > MAX_STDERR_LINE {
                    let mut end = MAX_STDERR_LINE;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.truncate(end);
                    text.push('…');
                }
                tracing::debug!(target: "flatmachines::mcp", "server stderr: {text}");
                let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text);
            }
        }
    }
}

/// Sends `SIGKILL` to the process group `group` leads. A group already gone is no error.
#[cfg(unix)]
fn kill_group(group: Option<u32>) {
    use rustix::process::{Pid, Signal, kill_process_group};

    // `kill(-1)` would signal every process we may signal; a server's group is never 0 or 1.
    let Some(pid) = group
        .and_then(|group| i32::try_from(group).ok())
        .filter(|group| *group > 1)
        .and_then(Pid::from_raw)
    else {
        return;
    };
    match kill_process_group(pid, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => {
            tracing::debug!(target: "flatmachines::mcp", group = pid.as_raw_nonzero().get(), error = %e, "cannot kill an MCP server's process group");
        }
    }
}

/// Without process groups, only the server itself is killed (by its `Child`).
#[cfg(not(unix))]
fn kill_group(_group: Option<u32>) {}
