//! `LoggingHooks`: every event as a `tracing` record.

use async_trait::async_trait;
use serde_json::Value;

use flatmachines_core::hooks::HookError;
use flatmachines_core::{Context, JsonMap, MachineHooks, StateError};

/// Logs machine start and end, state entry and exit, transitions and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggingHooks {
    level: tracing::Level,
}

impl Default for LoggingHooks {
    fn default() -> Self {
        LoggingHooks {
            level: tracing::Level::INFO,
        }
    }
}

impl LoggingHooks {
    /// Logs at `level`.
    pub fn new(level: tracing::Level) -> Self {
        LoggingHooks { level }
    }

    /// Reads `level` (`trace`, `debug`, `info` (default), `warn`, `error`, or a Python
    /// logging level number).
    pub fn from_args(args: &JsonMap) -> Result<Self, String> {
        let level = match args.get("level").or_else(|| args.get("log_level")) {
            None | Some(Value::Null) => tracing::Level::INFO,
            Some(Value::String(name)) => name
                .parse()
                .map_err(|_| format!("unknown log level `{name}`"))?,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(0..=9) => tracing::Level::TRACE,
                Some(10..=19) => tracing::Level::DEBUG,
                Some(20..=29) => tracing::Level::INFO,
                Some(30..=39) => tracing::Level::WARN,
                _ => tracing::Level::ERROR,
            },
            Some(other) => {
                return Err(format!("`level` must be a name or a number, found {other}"));
            }
        };
        Ok(LoggingHooks { level })
    }

    fn log(&self, message: std::fmt::Arguments<'_>) {
        match self.level {
            tracing::Level::TRACE => tracing::trace!(target: "flatmachines::hooks", "{message}"),
            tracing::Level::DEBUG => tracing::debug!(target: "flatmachines::hooks", "{message}"),
            tracing::Level::INFO => tracing::info!(target: "flatmachines::hooks", "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "flatmachines::hooks", "{message}"),
            tracing::Level::ERROR => tracing::error!(target: "flatmachines::hooks", "{message}"),
        }
    }
}

#[async_trait]
impl MachineHooks for LoggingHooks {
    async fn on_machine_start(&self, _context: &mut Context) -> Result<(), HookError> {
        self.log(format_args!("machine execution started"));
        Ok(())
    }

    async fn on_machine_end(
        &self,
        _context: &mut Context,
        output: &mut Value,
    ) -> Result<(), HookError> {
        self.log(format_args!(
            "machine execution ended with output: {output}"
        ));
        Ok(())
    }

    async fn on_state_enter(&self, state: &str, _context: &mut Context) -> Result<(), HookError> {
        self.log(format_args!("entering state: {state}"));
        Ok(())
    }

    async fn on_state_exit(
        &self,
        state: &str,
        _context: &mut Context,
        _output: &mut Option<Value>,
    ) -> Result<(), HookError> {
        self.log(format_args!("exiting state: {state}"));
        Ok(())
    }

    async fn on_transition(
        &self,
        from: &str,
        to: &str,
        _context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        self.log(format_args!("transition: {from} -> {to}"));
        Ok(None)
    }

    async fn on_error(
        &self,
        state: &str,
        error: &StateError,
        _context: &mut Context,
    ) -> Result<Option<String>, HookError> {
        self.log(format_args!("error in state {state}: {error}"));
        Ok(None)
    }

    async fn on_tool_calls(
        &self,
        state: &str,
        calls: &[flatmachines_core::AgentToolCall],
        _context: &mut Context,
    ) -> Result<(), HookError> {
        let names = calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>();
        self.log(format_args!(
            "tool calls in state {state}: {}",
            names.join(", ")
        ));
        Ok(())
    }

    async fn on_tool_result(
        &self,
        state: &str,
        result: &flatmachines_core::ToolCallResult,
        _context: &mut Context,
    ) -> Result<(), HookError> {
        let outcome = if result.is_error {
            "failed"
        } else {
            "returned"
        };
        self.log(format_args!(
            "tool {} in state {state} {outcome}",
            result.name
        ));
        Ok(())
    }
}
