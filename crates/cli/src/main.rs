//! `flatmachines`: run FlatMachines state machines from the command line.
//!
//! Results go to stdout; logs and errors go to stderr. Exit codes: 0 success, 1 the run failed,
//! 2 bad usage or an invalid config.

mod checkpoints;
mod graph;
mod limits;
mod logging;
#[cfg(feature = "otel")]
mod metrics;
mod pool;
mod progress;
mod run;
mod validate;
mod worker;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

/// Run FlatMachines / FlatAgents state machines.
#[derive(Debug, Parser)]
#[command(name = "flatmachines", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    logging: logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a machine (or resume one) and print its final output as JSON.
    Run(run::RunArgs),
    /// Check config files (schema and semantics), following the files they reference.
    Validate(validate::ValidateArgs),
    /// Print a machine as a Mermaid or Graphviz diagram.
    Graph(graph::GraphArgs),
    /// Inspect and prune stored checkpoints.
    #[command(subcommand)]
    Checkpoints(checkpoints::CheckpointsCommand),
    /// Claim and process jobs of a pool until signalled (SIGTERM or Ctrl-C), with a background
    /// heartbeat; prints one JSON line per job.
    Worker(worker::WorkerArgs),
    /// Enqueue jobs and inspect work pools.
    #[command(subcommand)]
    Pool(pool::PoolCommand),
}

/// How a command failed, and so which exit code it gets.
#[derive(Debug)]
enum Failure {
    /// The run failed (exit 1).
    Run(String),
    /// Bad usage or an invalid config (exit 2).
    Usage(String),
    /// Already reported on stdout; exit with this code.
    Quiet(u8),
}

impl Failure {
    fn report(self) -> ExitCode {
        let (message, code) = match self {
            Failure::Run(message) => (message, 1),
            Failure::Usage(message) => (message, 2),
            Failure::Quiet(code) => return ExitCode::from(code),
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Progress is drawn for runs, on a terminal, unless only errors are wanted.
    let progress = progress::Progress::new(
        matches!(cli.command, Command::Run(_))
            && !cli.logging.quiet()
            && std::io::stderr().is_terminal(),
    );
    logging::init(&cli.logging, progress.clone());
    #[cfg(feature = "otel")]
    let metrics = match cli.command {
        Command::Run(_) => metrics::start(),
        _ => None,
    };
    let observers: Vec<Arc<dyn flatmachines::RunObserver>> = {
        let observers = progress.observer().into_iter();
        #[cfg(feature = "otel")]
        let observers = observers.chain(metrics.as_ref().map(|pipeline| pipeline.observer()));
        observers.collect()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Failure::Run(format!("cannot start the async runtime: {e}")).report(),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args, observers).await,
            Command::Checkpoints(command) => checkpoints::run(command).await,
            Command::Graph(args) => graph::run(args),
            Command::Validate(args) => validate::run(args),
            Command::Worker(args) => worker::run(args).await,
            Command::Pool(command) => pool::run(command).await,
        }
    });
    progress.clear();
    // The exporter's blocking client must be shut down outside the async runtime.
    drop(runtime);
    #[cfg(feature = "otel")]
    if let Some(pipeline) = metrics {
        metrics::stop(pipeline);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
