//! [`CommandHooks`]: hook events exchanged as JSON lines with a long-lived subprocess.
//!
//! ```yaml
//! hooks:
//!   class: command
//!   args:
//!     command: [python3, hooks.py]   # the program and its arguments (no shell)
//!     timeout: 10                     # seconds per event (default 10)
//!     cwd: .                          # working directory (default: the config's directory)
//!     env: [HOOKS_TOKEN, {HOOKS_MODE: strict}]  # passed through, and set (see below)
//!     fatal: true                     # a failed exchange fails the state (default: true)
//!     events: [state_enter, error]    # the events sent (default: all)
//! ```
//!
//! The protocol: for each event the runtime writes one line to the process's stdin, a JSON
//! object with an `id` (1, 2, 3, …) and the event's payload, and reads one line from its
//! stdout, a JSON object with the overrides (`{}` for none) and optionally the same `id`.
//! Events are sent one at a time. The process is started at the first event and lives until
//! the hooks are dropped, when its stdin is closed: it should then exit. Anything it writes to
//! stderr is logged. See `docs/hooks.md`.
//!
//! The process does not inherit the runtime's environment, which holds API keys: it gets
//! `PATH`, `HOME`, `USER`, `LOGNAME`, `SHELL`, `LANG`, every `LC_*`, `TZ`, `TMPDIR`, `TERM`,
//! `PWD` and every `FLATMACHINES_*` variable that is set, the variables `env:` lists by name,
//! and those `env:` sets (`env:` is a list of names, a mapping of names to values, or a list of
//! both). It runs in its own process group, and when it is stopped (a timeout, a bad reply,
//! an abandoned exchange, the hooks dropped) the whole group is killed, so what it started in
//! the background does not outlive it.

mod launch;
mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::Mutex;

use flatmachines_core::JsonMap;

use crate::args::{Args, SetupError};
use crate::error::DeliveryError;
use crate::event::HookEvent;
use crate::sink::{DeliveryPolicy, EventHooks, EventSink};

use launch::{EnvArgs, Launch};
use process::{ExchangeError, Live};

/// Machine hooks answered by a subprocess.
pub type CommandHooks = EventHooks<CommandProcess>;

/// A command hook's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// The program and its arguments. A program given as a relative path with a `/`
    /// (`./hooks.sh`) is found from `cwd`; a bare name is looked up on `PATH`.
    pub command: Vec<String>,
    /// The working directory (default: this process's).
    pub cwd: Option<PathBuf>,
    /// Variables set in the process's environment (over any passed one).
    pub env: BTreeMap<String, String>,
    /// Variables passed through from this process's environment when set, besides the ones
    /// every hook gets (`PATH`, `HOME`, `LC_*`, `FLATMACHINES_*`, …; see the module docs).
    pub pass_env: Vec<String>,
    /// How long the process may take to answer one event.
    pub timeout: Duration,
    /// Whether a failure fails the state, and which events are sent.
    pub policy: DeliveryPolicy,
}

impl CommandConfig {
    /// The default time to answer one event.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Runs `command` with the defaults: 10 s per event, failures fatal.
    pub fn new(command: Vec<String>) -> Self {
        CommandConfig {
            command,
            cwd: None,
            env: BTreeMap::new(),
            pass_env: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            policy: DeliveryPolicy::FATAL,
        }
    }

    /// Reads YAML `args`: `command` (required), `timeout`, `cwd`, `env`, `fatal`, `events`.
    /// `config_dir`, the directory of the config naming the hook, is the default working
    /// directory and what a relative `cwd` starts from. `env` is a list of variable names to
    /// pass through (`[HOOKS_TOKEN]`), a mapping of names to values to set
    /// (`{HOOKS_MODE: strict}`), or a list of both; a name that is not `[A-Za-z_][A-Za-z0-9_]*`
    /// is refused with [`SetupError::BadVariableName`].
    pub fn from_args(args: &JsonMap, config_dir: Option<&Path>) -> Result<Self, SetupError> {
        const KNOWN: &[&str] = &["command", "timeout", "cwd", "env", "fatal", "events"];
        let args = Args::new("command", args, KNOWN)?;
        let command = args.string_list("command")?.ok_or(SetupError::Missing {
            class: "command",
            field: "command",
            expected: "the program and its arguments, such as [python3, hooks.py]",
        })?;
        let cwd = match (args.string("cwd")?, config_dir) {
            (Some(cwd), Some(dir)) => Some(dir.join(cwd)),
            (Some(cwd), None) => Some(PathBuf::from(cwd)),
            (None, dir) => dir.map(Path::to_path_buf),
        };
        let env = launch::read_env(&args)?;
        Ok(CommandConfig {
            command,
            cwd,
            env: env.set,
            pass_env: env.pass,
            timeout: args.seconds("timeout", Self::DEFAULT_TIMEOUT)?,
            policy: DeliveryPolicy {
                fatal: args.flag("fatal", true)?,
                events: args.events()?,
            },
        })
    }
}

impl CommandHooks {
    /// Hooks answered by the process `config` describes (started at the first event).
    pub fn new(config: CommandConfig) -> Self {
        let policy = config.policy;
        EventHooks::with_sink(CommandProcess::new(config), policy)
    }

    /// Hooks from YAML `args` (see [`CommandConfig::from_args`]).
    pub fn from_args(args: &JsonMap, config_dir: Option<&Path>) -> Result<Self, SetupError> {
        Ok(Self::new(CommandConfig::from_args(args, config_dir)?))
    }
}

/// The sink speaking with one subprocess.
#[derive(Debug)]
pub struct CommandProcess {
    launch: Launch,
    shown: String,
    timeout: Duration,
    next_id: AtomicU64,
    /// The running process; `None` before the first event and after a failure (the next event
    /// starts a new one). The lock also keeps exchanges one at a time.
    live: Mutex<Option<Live>>,
}

/// One request line: the id, then the event's payload.
#[derive(Serialize)]
struct Request<'a> {
    id: u64,
    #[serde(flatten)]
    event: &'a HookEvent<'a>,
}

impl CommandProcess {
    /// The sink for `config`; nothing starts until the first event.
    pub fn new(config: CommandConfig) -> Self {
        // Scripts given inline (`python3 -c …`) span lines; a log line should not.
        let shown = format!(
            "command `{}`",
            crate::error::clip(&config.command.join(" ").replace('\n', "\\n"), 80)
        );
        let mut parts = config.command.into_iter();
        let program = PathBuf::from(parts.next().unwrap_or_default());
        // `Command` leaves it unspecified whether a relative program path is taken from the
        // parent's directory or the child's; make it the child's, like the shell would.
        let program = match &config.cwd {
            Some(cwd) if program.is_relative() && program.components().count() > 1 => {
                cwd.join(program)
            }
            _ => program,
        };
        CommandProcess {
            launch: Launch {
                program,
                args: parts.collect(),
                cwd: config.cwd,
                env: EnvArgs {
                    pass: config.pass_env,
                    set: config.env,
                },
            },
            shown,
            timeout: config.timeout,
            next_id: AtomicU64::new(1),
            live: Mutex::new(None),
        }
    }
}

#[async_trait]
impl EventSink for CommandProcess {
    async fn deliver(&self, event: &HookEvent<'_>) -> Result<Option<JsonMap>, DeliveryError> {
        let name = event.kind().name();
        let mut live = self.live.lock().await;
        // Numbered under the lock, so the process sees 1, 2, 3, … in order.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line =
            serde_json::to_vec(&Request { id, event }).map_err(|e| DeliveryError::Encode {
                event: name,
                message: e.to_string(),
            })?;
        line.push(b'\n');
        if let Some(process) = live.as_mut()
            && process.interrupted()
        {
            // An earlier exchange was abandoned half-way (its run was stopped): the process
            // may still answer it, so start afresh rather than read a stale reply.
            tracing::debug!(target: "flatmachines::hooks", hook = %self.shown, "restarting the hook process after an interrupted exchange");
            process.kill();
            *live = None;
        }
        let process = match live.as_mut() {
            Some(process) => process,
            None => live.insert(Live::spawn(&self.launch, &self.shown)?),
        };
        // Should this future be dropped before the reply (its run was stopped), the guard
        // kills the process group at once rather than leave it working for nobody.
        let guard = process.guard();
        let outcome = tokio::time::timeout(self.timeout, process.exchange(&line, id)).await;
        guard.disarm();
        let error = match outcome {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(ExchangeError::Ended)) => process.ended(&self.shown, name).await,
            Ok(Err(ExchangeError::Garbage(problem))) => {
                process.kill();
                DeliveryError::BadReply {
                    hook: self.shown.clone(),
                    event: name,
                    problem,
                }
            }
            Err(_elapsed) => {
                process.kill();
                DeliveryError::Timeout {
                    hook: self.shown.clone(),
                    event: name,
                    timeout: self.timeout,
                }
            }
        };
        // The next event starts a new process.
        *live = None;
        Err(error)
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}
