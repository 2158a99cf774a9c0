//! Logging to stderr with `tracing`.

use std::io::IsTerminal;

use crate::progress::Progress;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Log options shared by every command.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// More logs: -v for progress, -vv for every state and transition.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log line format [default: FLATAGENTS_LOG_FORMAT, else text].
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
}

impl LogArgs {
    /// Only errors are wanted (and no progress display).
    pub(crate) fn quiet(&self) -> bool {
        self.quiet
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The level `FLATAGENTS_LOG_LEVEL` names, in the reference's (Python's) level names or
/// `tracing`'s.
fn reference_level(name: &str) -> Option<&'static str> {
    match name.trim().to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warn" | "warning" => Some("warn"),
        "error" | "critical" | "fatal" => Some("error"),
        _ => None,
    }
}

/// The format `FLATAGENTS_LOG_FORMAT` names: `json`, or the reference's text formats
/// (`standard`, `simple`) and `text`.
fn reference_format(name: &str) -> Option<LogFormat> {
    match name.trim().to_ascii_lowercase().as_str() {
        "json" => Some(LogFormat::Json),
        "text" | "standard" | "simple" => Some(LogFormat::Text),
        _ => None,
    }
}

/// Log lines, written around the progress display.
struct LogWriter(Progress);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_stderr(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs go to stderr. The level comes from `-q`/`-v`, else `FLATAGENTS_LOG_LEVEL`, else
/// `warn`; the format from `--log-format`, else `FLATAGENTS_LOG_FORMAT`, else text.
/// `FLATMACHINES_LOG` (or `RUST_LOG`) overrides the level with a full filter, e.g.
/// `FLATMACHINES_LOG=flatmachines_engine=debug`.
pub(crate) fn init(args: &LogArgs, progress: Progress) {
    let mut problems = Vec::new();
    let env_level = std::env::var("FLATAGENTS_LOG_LEVEL").ok().and_then(|name| {
        let level = reference_level(&name);
        if level.is_none() {
            problems.push(format!(
                "FLATAGENTS_LOG_LEVEL={name} is not a level (debug, info, warning, error); using warn"
            ));
        }
        level
    });
    let level = match (args.quiet, args.verbose) {
        (true, _) => "error",
        (false, 0) => env_level.unwrap_or("warn"),
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let format = args.log_format.unwrap_or_else(|| {
        std::env::var("FLATAGENTS_LOG_FORMAT")
            .ok()
            .and_then(|name| {
                let format = reference_format(&name);
                if format.is_none() {
                    problems.push(format!(
                        "FLATAGENTS_LOG_FORMAT={name} is not a format (text, json); using text"
                    ));
                }
                format
            })
            .unwrap_or(LogFormat::Text)
    });
    let filter = ["FLATMACHINES_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|variable| Some((variable, std::env::var(variable).ok()?)))
        .and_then(|(variable, spec)| match EnvFilter::try_new(&spec) {
            Ok(filter) => Some(filter),
            Err(e) => {
                problems.push(format!(
                    "{variable}={spec} is not a log filter ({e}); using {level}"
                ));
                None
            }
        })
        .unwrap_or_else(|| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || LogWriter(progress.clone()))
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    for problem in problems {
        tracing::warn!("{problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_names_of_levels_and_formats_are_understood() {
        assert_eq!(reference_level("DEBUG"), Some("debug"));
        assert_eq!(reference_level("WARNING"), Some("warn"));
        assert_eq!(reference_level("critical"), Some("error"));
        assert_eq!(reference_level("loud"), None);
        assert_eq!(reference_format("json"), Some(LogFormat::Json));
        assert_eq!(reference_format("standard"), Some(LogFormat::Text));
        assert_eq!(reference_format("%(message)s"), None);
    }
}
