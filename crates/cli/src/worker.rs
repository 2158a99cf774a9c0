//! `flatmachines worker`: a long-running worker of one pool.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Args;
use serde_json::{Value, json};

use flatmachines::backends::open_store;
use flatmachines::core::WorkItem;
use flatmachines::distributed::{
    JobOutcome, JobReport, JobRunner, StopReason, Worker, WorkerOptions,
};
use flatmachines::{Machine, RunOptions, RunStatus, Runner};

use crate::Failure;
use crate::limits::LimitArgs;

/// Arguments of `flatmachines worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The machine that processes one job: each job's data (a JSON object) is its input, its
    /// output the job's result.
    machine: PathBuf,
    /// The store the pool lives in, shared by every worker: sqlite://PATH,
    /// redis://HOST:PORT/DB or postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "URL", env = "FLATMACHINES_STORE")]
    store: String,
    /// The pool to claim jobs from.
    #[arg(long, value_name = "NAME")]
    pool: String,
    /// This worker's id (default: `worker-` and eight hex digits).
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
    /// Seconds between heartbeats. Reapers should call a worker stale after several missed
    /// beats.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = positive_seconds)]
    heartbeat: f64,
    /// The longest wait, in seconds, between claims while the pool is empty.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = positive_seconds)]
    poll: f64,
    /// Exit after the pool has been empty this many seconds (default: run until signalled).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    exit_when_idle: Option<f64>,
    /// Exit after this many jobs.
    #[arg(long, value_name = "N")]
    max_jobs: Option<u64>,
    /// After SIGTERM or Ctrl-C, seconds the job in hand may take before it goes back to the
    /// pool unfinished.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = non_negative_seconds)]
    shutdown_grace: f64,
    /// A capability tag to register with (repeatable).
    #[arg(long = "capability", value_name = "TAG")]
    capabilities: Vec<String>,
    /// Step limit of each job's run.
    #[arg(long, value_name = "N")]
    max_steps: Option<u64>,
    #[command(flatten)]
    limits: LimitArgs,
}

fn seconds(text: &str, allow_zero: bool) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    let ok = value.is_finite() && (value > 0.0 || (allow_zero && value == 0.0));
    if ok && value <= 86_400.0 * 365.0 {
        Ok(value)
    } else {
        Err(format!("`{text}` is not a usable number of seconds"))
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    seconds(text, false)
}

fn non_negative_seconds(text: &str) -> Result<f64, String> {
    seconds(text, true)
}

/// Runs each job's machine in this process.
struct MachineJobs {
    runner: Runner,
    max_steps: Option<u64>,
}

#[async_trait]
impl JobRunner for MachineJobs {
    async fn run(&self, job: &WorkItem) -> Result<Value, String> {
        let Value::Object(input) = &job.data else {
            return Err(format!(
                "job `{}`: its data must be a JSON object to be the machine's input, found {}",
                job.id,
                flatmachines::core::config::describe(&job.data)
            ));
        };
        let options = RunOptions {
            max_steps: self.max_steps,
            ..RunOptions::default()
        };
        match self.runner.run(input.clone(), options).await {
            Ok(outcome) => match outcome.status {
                RunStatus::Completed => Ok(outcome.output),
                RunStatus::StepLimit { limit, state } => Err(format!(
                    "execution {} stopped at the step limit of {limit} before state `{state}`",
                    outcome.execution_id
                )),
                other => Err(format!(
                    "execution {} ended as {other:?}",
                    outcome.execution_id
                )),
            },
            Err(e) => Err(e.to_string()),
        }
    }
}

/// One line of stdout per job.
fn report_line(report: &JobReport) -> Value {
    let mut line = json!({
        "job_id": report.job_id,
        "attempt": report.attempt,
        "elapsed_ms": report.elapsed.as_secs_f64() * 1000.0,
    });
    let (status, detail) = match &report.outcome {
        JobOutcome::Completed(output) => ("completed", Some(("output", output.clone()))),
        JobOutcome::Failed(error) => ("failed", Some(("error", Value::String(error.clone())))),
        JobOutcome::Released => ("released", None),
        JobOutcome::Dropped => ("dropped", None),
        JobOutcome::Unrecorded(error) => {
            ("unrecorded", Some(("error", Value::String(error.clone()))))
        }
        other => (
            "other",
            Some(("detail", Value::String(format!("{other:?}")))),
        ),
    };
    if let Some(map) = line.as_object_mut() {
        map.insert("status".into(), Value::String(status.to_owned()));
        if let Some((key, value)) = detail {
            map.insert(key.into(), value);
        }
    }
    line
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this worker cleanly");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested; finishing the job in hand");
}

pub(crate) async fn run(args: WorkerArgs) -> Result<(), Failure> {
    let limits = args.limits.limits()?;
    let machine = Machine::from_file_within(&args.machine, &limits)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    for warning in machine.warnings() {
        tracing::warn!("{warning}");
    }
    let store = open_store(&args.store).map_err(|e| Failure::Usage(e.to_string()))?;
    let (registration, work) = store
        .shared_workers(&args.store)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    // A job's result goes back through the pool; its children's results stay in memory.
    let builder = flatmachines::runtime()
        .persistence(Arc::clone(&store.persistence))
        .lock(Arc::clone(&store.lock));
    let builder = flatmachines::with_distributed_hooks(builder, Some(args.store.clone()));
    let runner = builder
        .build()
        .prepare(&machine)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let mut options = WorkerOptions::new(args.pool.clone())
        .capabilities(args.capabilities.clone())
        .heartbeat_interval(Duration::from_secs_f64(args.heartbeat))
        .poll_interval(Duration::from_secs_f64(args.poll))
        .exit_when_idle(args.exit_when_idle.map(Duration::from_secs_f64))
        .max_jobs(args.max_jobs)
        .shutdown_grace(Duration::from_secs_f64(args.shutdown_grace));
    if let Some(id) = &args.worker_id {
        options = options.worker_id(id.clone());
    }
    let worker = Worker::new(registration, work, options);
    let jobs = MachineJobs {
        runner,
        max_steps: args.max_steps,
    };
    let summary = worker
        .run(&jobs, shutdown_signal(), |report| {
            println!("{}", flatmachines::to_json_text(&report_line(report)));
        })
        .await
        .map_err(|e| Failure::Run(e.to_string()))?;
    tracing::info!(
        worker_id = %summary.worker_id,
        completed = summary.completed,
        failed = summary.failed,
        abandoned = summary.abandoned,
        stop = ?summary.stop,
        "worker stopped"
    );
    match summary.stop {
        StopReason::Lost => Err(Failure::Run(format!(
            "worker `{}` was marked lost by a reaper (its heartbeats were late) and stopped; its jobs went back to pool `{}`",
            summary.worker_id, args.pool
        ))),
        _ => Ok(()),
    }
}
