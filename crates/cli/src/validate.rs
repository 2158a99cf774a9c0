//! `flatmachines validate`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use flatmachines::engine::validate::{Severity, validate_files_checking};

use crate::Failure;
use crate::limits::LimitArgs;

/// Arguments of `flatmachines validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Config files or glob patterns (`examples/**/*.yml`).
    #[arg(required = true)]
    files: Vec<String>,
    /// `text` (file:line:column: …) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Fail on warnings too.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Checks hook args as the facade's `command` and `webhook` classes would when built.
fn hook_args(hooks: &flatmachines::core::config::HooksConfig) -> Result<(), String> {
    flatmachines::remote_hooks::effects(hooks)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, Failure> {
    let mut files = Vec::new();
    for pattern in patterns {
        if !pattern.contains(['*', '?', '[']) {
            files.push(PathBuf::from(pattern));
            continue;
        }
        let matches = glob::glob(pattern)
            .map_err(|e| Failure::Usage(format!("bad pattern `{pattern}`: {e}")))?;
        let before = files.len();
        files.extend(matches.flatten().filter(|path| path.is_file()));
        if files.len() == before {
            return Err(Failure::Usage(format!("`{pattern}` matches no file")));
        }
    }
    Ok(files)
}

pub(crate) fn run(args: ValidateArgs) -> Result<(), Failure> {
    let files = expand(&args.files)?;
    // The hook classes this program registers (webhook, command, DistributedWorkerHooks, …)
    // are as good as built in for the machines it runs.
    let runtime = flatmachines::runtime();
    let limits = args.limits.limits()?;
    // Hook args a run would refuse (a `file://` webhook, a bad `env:` name) are errors here.
    let report = validate_files_checking(&files, runtime.hook_classes(), &limits, hook_args);
    match args.format {
        Format::Text => {
            for diagnostic in &report.diagnostics {
                println!("{diagnostic}");
            }
            // What a run of these configs will start or reach, for a reviewer to see.
            for used in &report.tool_servers {
                println!("{used}");
            }
            eprintln!(
                "{} file(s) checked: {} error(s), {} warning(s)",
                report.files.len(),
                report.errors(),
                report.warnings()
            );
        }
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
    }
    let failing = report
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error || args.strict);
    if failing {
        // The findings are the output; the exit code says they failed.
        return Err(Failure::Quiet(1));
    }
    Ok(())
}
