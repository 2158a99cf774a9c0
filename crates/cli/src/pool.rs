//! `flatmachines pool`: enqueue jobs and inspect work pools.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use flatmachines::backends::{WorkerBackends, open_store};
use flatmachines::core::distributed::status;
use flatmachines::core::{
    PushOptions, RegistrationBackend, WorkBackend, WorkCounts, WorkerFilter, WorkerRecord,
    heartbeat_older_than,
};

use crate::Failure;

/// `flatmachines pool …`.
#[derive(Debug, Subcommand)]
pub(crate) enum PoolCommand {
    /// Add jobs to a pool and print their ids, one per line.
    Push(PushArgs),
    /// Print a pool's job counts and its workers.
    Status(StatusArgs),
    /// Wait until a pool has nothing pending or claimed, then print its status.
    Drain(DrainArgs),
}

/// Where the pool lives.
#[derive(Debug, Args)]
pub(crate) struct PoolStore {
    /// The pool's name.
    name: String,
    /// The store the pool lives in: sqlite://PATH, redis://HOST:PORT/DB or
    /// postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "URL", env = "FLATMACHINES_STORE")]
    store: String,
}

/// Arguments of `pool push`.
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    #[command(flatten)]
    pool: PoolStore,
    /// A job's data as JSON (repeatable).
    #[arg(long, value_name = "JSON")]
    data: Vec<String>,
    /// Read jobs from a file, one JSON value per line (`-` for stdin); blank lines are skipped.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Attempts allowed before a job is poisoned.
    #[arg(long, value_name = "N", default_value_t = flatmachines::core::distributed::DEFAULT_MAX_RETRIES, value_parser = clap::value_parser!(u32).range(1..))]
    max_retries: u32,
}

/// Arguments of `pool status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pool: PoolStore,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `pool drain`.
#[derive(Debug, Args)]
pub(crate) struct DrainArgs {
    #[command(flatten)]
    pool: PoolStore,
    /// Give up after this many seconds (exit 1).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Seconds between looks at the pool.
    #[arg(long, value_name = "SECS", default_value_t = 0.5)]
    poll: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn open(pool: &PoolStore) -> Result<WorkerBackends, Failure> {
    open_store(&pool.store)
        .and_then(|store| store.shared_workers(&pool.store))
        .map_err(|e| Failure::Usage(e.to_string()))
}

pub(crate) async fn run(command: PoolCommand) -> Result<(), Failure> {
    match command {
        PoolCommand::Push(args) => push(args).await,
        PoolCommand::Status(args) => {
            let (registration, work) = open(&args.pool)?;
            let status = PoolStatus::read(&args.pool.name, &*registration, &*work).await?;
            status.print(args.json);
            Ok(())
        }
        PoolCommand::Drain(args) => drain(args).await,
    }
}

fn jobs_of(args: &PushArgs) -> Result<Vec<Value>, Failure> {
    let mut jobs = Vec::new();
    for (i, text) in args.data.iter().enumerate() {
        let value = serde_json::from_str(text)
            .map_err(|e| Failure::Usage(format!("--data #{} is not valid JSON: {e}", i + 1)))?;
        jobs.push(value);
    }
    if let Some(path) = &args.file {
        let (reader, source): (Box<dyn BufRead>, String) = if path.as_os_str() == "-" {
            (
                Box::new(BufReader::new(std::io::stdin())),
                "stdin".to_owned(),
            )
        } else {
            let file = std::fs::File::open(path).map_err(|e| {
                Failure::Usage(format!("cannot read jobs file `{}`: {e}", path.display()))
            })?;
            (
                Box::new(BufReader::new(file)),
                format!("`{}`", path.display()),
            )
        };
        for (number, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| Failure::Usage(format!("cannot read {source}: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let value = serde_json::from_str(&line).map_err(|e| {
                Failure::Usage(format!("{source} line {}: not valid JSON: {e}", number + 1))
            })?;
            jobs.push(value);
        }
    }
    if jobs.is_empty() {
        return Err(Failure::Usage(
            "no jobs given: pass --data JSON (repeatable) or --file FILE".to_owned(),
        ));
    }
    Ok(jobs)
}

async fn push(args: PushArgs) -> Result<(), Failure> {
    // Every job is parsed before the first is pushed, so a bad line pushes nothing.
    let jobs = jobs_of(&args)?;
    let (_, work) = open(&args.pool)?;
    let pool = work.pool(&args.pool.name);
    let options = PushOptions {
        max_retries: args.max_retries,
    };
    let total = jobs.len();
    for (i, job) in jobs.into_iter().enumerate() {
        let id = pool.push(job, options).await.map_err(|e| {
            Failure::Run(format!(
                "pushed {i} of {total} jobs to pool `{}`, then: {e}",
                args.pool.name
            ))
        })?;
        println!("{id}");
    }
    Ok(())
}

async fn drain(args: DrainArgs) -> Result<(), Failure> {
    let (registration, work) = open(&args.pool)?;
    let pool = work.pool(&args.pool.name);
    let poll = Duration::from_secs_f64(args.poll.clamp(0.01, 60.0));
    let deadline = match args.timeout {
        Some(t) if t.is_finite() && t >= 0.0 => Some(Instant::now() + Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(Failure::Usage(format!(
                "--timeout {t} is not a number of seconds"
            )));
        }
        None => None,
    };
    loop {
        let counts = pool
            .counts()
            .await
            .map_err(|e| Failure::Run(format!("cannot read pool `{}`: {e}", args.pool.name)))?;
        if counts.pending == 0 && counts.claimed == 0 {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let status = PoolStatus::read(&args.pool.name, &*registration, &*work).await?;
            status.print(args.json);
            return Err(Failure::Run(format!(
                "pool `{}` still has {} pending and {} claimed jobs after {}s",
                args.pool.name,
                counts.pending,
                counts.claimed,
                args.timeout.unwrap_or_default()
            )));
        }
        tokio::time::sleep(poll).await;
    }
    let status = PoolStatus::read(&args.pool.name, &*registration, &*work).await?;
    status.print(args.json);
    Ok(())
}

struct PoolStatus {
    name: String,
    counts: WorkCounts,
    workers: Vec<WorkerRecord>,
}

impl PoolStatus {
    async fn read(
        name: &str,
        registration: &dyn RegistrationBackend,
        work: &dyn WorkBackend,
    ) -> Result<PoolStatus, Failure> {
        let counts = work
            .pool(name)
            .counts()
            .await
            .map_err(|e| Failure::Run(format!("cannot read pool `{name}`: {e}")))?;
        let filter = WorkerFilter {
            pool_id: Some(name.to_owned()),
            ..WorkerFilter::default()
        };
        let mut workers = registration
            .list(&filter)
            .await
            .map_err(|e| Failure::Run(format!("cannot list the workers of pool `{name}`: {e}")))?;
        workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(PoolStatus {
            name: name.to_owned(),
            counts,
            workers,
        })
    }

    fn print(&self, as_json: bool) {
        if as_json {
            let line = json!({
                "pool": self.name,
                "counts": self.counts,
                "workers": self.workers,
            });
            println!("{}", flatmachines::to_json_text(&line));
            return;
        }
        let c = &self.counts;
        println!(
            "pool `{}`: {} pending, {} claimed, {} done, {} poisoned",
            self.name, c.pending, c.claimed, c.done, c.poisoned
        );
        let by = |wanted: &str| self.workers.iter().filter(|w| w.status == wanted).count();
        println!(
            "workers: {} active, {} lost, {} terminated",
            by(status::ACTIVE),
            by(status::LOST),
            by(status::TERMINATED)
        );
        for worker in &self.workers {
            let place = match (&worker.host, worker.pid) {
                (Some(host), Some(pid)) => format!("{host}:{pid}"),
                (Some(host), None) => host.clone(),
                _ => "-".to_owned(),
            };
            let late = if worker.status == status::ACTIVE
                && heartbeat_older_than(&worker.last_heartbeat, 60.0, chrono::Utc::now())
            {
                " (no heartbeat for over 60 s)"
            } else {
                ""
            };
            println!(
                "  {}  {}  {}  last heartbeat {}{late}",
                worker.worker_id, worker.status, place, worker.last_heartbeat
            );
        }
    }
}
