//! `flatmachines run`.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde_json::Value;

use flatmachines::backends::{Store, open_store};
use flatmachines::core::ResultBackend;
use flatmachines::distributed::{Launcher, SubprocessInvoker};
use flatmachines::{
    Budget, JsonMap, Machine, ResumeFailure, ResumeOptions, RunError, RunObserver, RunOptions,
    RunStatus,
};

use crate::Failure;
use crate::limits::{LimitArgs, input_bytes};

/// Arguments of `flatmachines run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The machine config (YAML, or JSON when it ends in .json).
    machine: PathBuf,
    /// The input, a JSON object.
    #[arg(long, short, value_name = "JSON", conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the input from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    input_file: Option<PathBuf>,
    /// Use this execution id instead of a new one.
    #[arg(long, value_name = "ID")]
    execution_id: Option<String>,
    /// The execution that launched this one from another process. The output — or the
    /// error — is then written to `flatagents://ID/result` on the store's shared result
    /// backend, where the parent reads it.
    #[arg(long, value_name = "ID", requires = "execution_id")]
    parent_id: Option<String>,
    /// With --parent-id: the machines above this run, outermost first, as a JSON list of
    /// names, so the machine_depth limit counts across processes. Set by --launch subprocess.
    #[arg(long, value_name = "JSON", requires = "parent_id", hide = true)]
    machine_chain: Option<String>,
    /// With --execution-id: when that execution already has checkpoints, delete them and
    /// start afresh (without it, such a run is refused).
    #[arg(long, requires = "execution_id")]
    replace: bool,
    /// Where child machines run: in this process, or each as its own `flatmachines run`
    /// process sharing --store (which needs shared results: sqlite://, redis://, postgres://).
    #[arg(long, value_enum, value_name = "WHERE", default_value_t = Launch::InProcess)]
    launch: Launch,
    /// Continue execution ID from its latest checkpoint instead of starting a new run.
    #[arg(long, value_name = "ID", conflicts_with_all = ["input", "input_file", "execution_id", "parent_id"])]
    resume: Option<String>,
    /// Where checkpoints go, over the machine's `persistence`: file://DIR, sqlite://PATH,
    /// redis://HOST:PORT/DB, postgres://USER@HOST:PORT/DB, s3://BUCKET/PREFIX or memory://.
    #[arg(long, value_name = "URL", env = "FLATMACHINES_STORE")]
    store: Option<String>,
    /// Stop after this many steps (default: the machine's settings.max_steps, else 1000).
    #[arg(long, value_name = "N")]
    max_steps: Option<u64>,
    /// Stop the run before its agents (the machine's and its children's, together) make more
    /// than N calls. A resumed run counts the calls made before.
    #[arg(long, value_name = "N")]
    max_agent_calls: Option<u64>,
    /// Stop the run before another agent call once the cost its agents reported (children
    /// included) reaches COST, in the providers' unit. A resumed run counts the cost before.
    #[arg(long, value_name = "COST", value_parser = parse_cost)]
    max_cost: Option<f64>,
    /// Print the output indented over several lines.
    #[arg(long)]
    pretty: bool,
    /// Refuse a machine whose state names an undeclared agent, or an agent whose file does
    /// not exist. Without it, as in the reference, such a state fails when it is reached
    /// (`UnknownAgent`, `FileNotFound`), so `on_error` can route it, and a warning names the
    /// reference at load.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `--max-cost`: a finite number, at least 0.
fn parse_cost(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(cost) if cost.is_finite() && cost >= 0.0 => Ok(cost),
        _ => Err(format!("expected a number at least 0, found `{text}`")),
    }
}

/// Where child machines run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Launch {
    /// In this process.
    InProcess,
    /// Each in its own `flatmachines run` process.
    Subprocess,
}

/// Runs the machine; `observers` hear the run (the progress display, metrics).
pub(crate) async fn run(
    args: RunArgs,
    observers: Vec<Arc<dyn RunObserver>>,
) -> Result<(), Failure> {
    let limits = args.limits.limits()?;
    let input = read_input(&args, input_bytes(&limits))?;
    let machine_chain = match &args.machine_chain {
        Some(text) => serde_json::from_str::<Vec<String>>(text).map_err(|e| {
            Failure::Usage(format!(
                "--machine-chain must be a JSON list of machine names: {e}"
            ))
        })?,
        None => Vec::new(),
    };
    let machine = Machine::from_file_within(&args.machine, &limits)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    for warning in machine.warnings() {
        tracing::warn!("{warning}");
    }
    let mut builder = flatmachines::runtime().strict_references(args.strict);
    for observer in observers {
        builder = builder.observer(observer);
    }
    if let Some(url) = &args.store {
        let store = open_store(url).map_err(|e| Failure::Usage(e.to_string()))?;
        builder = builder
            .persistence(Arc::clone(&store.persistence))
            .lock(Arc::clone(&store.lock));
        if url.starts_with("memory:") {
            // Nothing in it outlives this process: resuming in it needs the newest only.
            builder = builder.keep_snapshots(1);
        }
        builder = flatmachines::with_distributed_hooks(builder, Some(url.clone()));
        // Results cross processes only when a parent or a child lives in another one; in
        // one process they stay in memory, where a child's result costs no round trip.
        if args.launch == Launch::Subprocess {
            let results = shared_results(url, &store)?;
            let launcher = Launcher::new().store(url.clone());
            builder = builder
                .results(Arc::clone(&results))
                .invoker(Arc::new(SubprocessInvoker::new(launcher, results)));
        } else if args.parent_id.is_some() {
            match shared_results(url, &store) {
                Ok(results) => builder = builder.results(results),
                Err(_) => tracing::warn!(
                    "--parent-id: `{url}` has no shared result backend, so the parent cannot read this run's output from it"
                ),
            }
        }
    } else if args.launch == Launch::Subprocess {
        return Err(Failure::Usage(
            "--launch subprocess needs --store URL: children in other processes share its checkpoints and results (sqlite://, redis:// or postgres://)".to_owned(),
        ));
    }
    let runner = builder
        .build()
        .prepare(&machine)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let budget = Budget {
        max_agent_calls: args.max_agent_calls,
        max_cost: args.max_cost,
    };
    let result = match &args.resume {
        Some(id) => {
            let options = ResumeOptions {
                max_steps: args.max_steps,
                budget,
            };
            runner.resume_with(id, options).await
        }
        None => {
            let options = RunOptions {
                execution_id: args.execution_id.clone(),
                max_steps: args.max_steps,
                parent_execution_id: args.parent_id.clone(),
                machine_chain,
                replace: args.replace,
                budget,
            };
            runner.run(input, options).await
        }
    };
    let outcome = result.map_err(|e| failure(e, &machine, &args))?;
    if let RunStatus::StepLimit { limit, state } = &outcome.status {
        let next = if checkpoints_in_memory(&machine, &args) {
            "raise --max-steps or settings.max_steps and run it again (its checkpoints were in memory, so it cannot be resumed; use --store file://DIR to make runs resumable)".to_owned()
        } else {
            format!(
                "raise --max-steps or settings.max_steps, and resume with --resume {}",
                outcome.execution_id
            )
        };
        return Err(Failure::Run(format!(
            "machine `{}` stopped at the step limit of {limit} steps before state `{state}` (execution {}); {next}",
            machine.name(),
            outcome.execution_id,
        )));
    }
    let text = if args.pretty {
        serde_json::to_string_pretty(&outcome.output).unwrap_or_default()
    } else {
        flatmachines::to_json_text(&outcome.output)
    };
    println!("{text}");
    Ok(())
}

/// The store's result backend when other processes can read it.
fn shared_results(url: &str, store: &Store) -> Result<Arc<dyn ResultBackend>, Failure> {
    match &store.results {
        Some(results) if !url.starts_with("memory:") => Ok(Arc::clone(results)),
        _ => Err(Failure::Usage(format!(
            "--launch subprocess needs a store whose results other processes can read; `{url}` has none (use sqlite://, redis:// or postgres://)"
        ))),
    }
}

fn failure(error: RunError, machine: &Machine, args: &RunArgs) -> Failure {
    match error {
        RunError::Config(e) => Failure::Usage(e.to_string()),
        RunError::Input(message) => Failure::Usage(format!("invalid input: {message}")),
        RunError::ExecutionExists {
            ref execution_id, ..
        } => {
            let hint = format!(
                "; resume it with --resume {execution_id}, choose another --execution-id, or pass --replace to delete its checkpoints and start afresh"
            );
            Failure::Usage(format!("{error}{hint}"))
        }
        RunError::Resume {
            reason: ResumeFailure::Unknown,
            ..
        } => {
            let hint = if checkpoints_in_memory(machine, args) {
                "; this machine checkpoints in memory, so nothing outlives a run: use --store file://DIR or `persistence: {backend: local}`"
            } else {
                ""
            };
            Failure::Usage(format!("{error}{hint}"))
        }
        other => Failure::Run(other.to_string()),
    }
}

/// Whether this run keeps its checkpoints in memory only, so nothing outlives the process.
fn checkpoints_in_memory(machine: &Machine, args: &RunArgs) -> bool {
    match &args.store {
        Some(url) => url.starts_with("memory:"),
        None => machine
            .config()
            .data
            .persistence
            .as_ref()
            .is_none_or(|p| p.backend == "memory"),
    }
}

/// Reads at most `max` bytes from `reader`, refusing more.
fn read_bounded(reader: impl Read, max: u64, source: &str) -> Result<String, Failure> {
    let mut bytes = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::Usage(format!("cannot read {source}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(Failure::Usage(format!(
            "{source} is larger than {} ({})",
            flatmachines::core::Limit::InputBytes.format_value(max),
            flatmachines::core::Limit::InputBytes.hint(max)
        )));
    }
    String::from_utf8(bytes).map_err(|e| Failure::Usage(format!("{source} is not UTF-8 text: {e}")))
}

fn read_input(args: &RunArgs, max: u64) -> Result<JsonMap, Failure> {
    let (text, source) = match (&args.input, &args.input_file) {
        (Some(text), _) => {
            let source = "--input".to_owned();
            (read_bounded(text.as_bytes(), max, &source)?, source)
        }
        (None, Some(path)) if path.as_os_str() == "-" => {
            let source = "stdin".to_owned();
            (read_bounded(std::io::stdin().lock(), max, &source)?, source)
        }
        (None, Some(path)) => {
            let source = format!("input file `{}`", path.display());
            let file = std::fs::File::open(path).map_err(|e| {
                Failure::Usage(format!("cannot read input file `{}`: {e}", path.display()))
            })?;
            (read_bounded(file, max, &source)?, source)
        }
        (None, None) => return Ok(JsonMap::new()),
    };
    match flatmachines::core::json::from_str_exact(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Failure::Usage(format!(
            "{source} must be a JSON object, found {}",
            flatmachines::core::config::describe(&other)
        ))),
        Err(e) => Err(Failure::Usage(format!("{source} is not valid JSON: {e}"))),
    }
}
