//! `flatmachines checkpoints list | show | prune`.

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};

use flatmachines::backends::{open_persistence, open_persistence_to_read};
use flatmachines::core::PersistenceBackend;
use flatmachines::engine::checkpoint::{PruneOptions, list_executions, load_latest, prune};

use crate::Failure;

/// Where the checkpoints are.
#[derive(Debug, Args)]
pub(crate) struct StoreArg {
    /// The checkpoint store: file://DIR (default: the reference's .checkpoints directory).
    #[arg(
        long,
        value_name = "URL",
        env = "FLATMACHINES_STORE",
        default_value = "file://.checkpoints"
    )]
    store: String,
}

/// The `checkpoints` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CheckpointsCommand {
    /// One line per execution: id, machine, latest event, state, step, snapshots, time.
    List {
        #[command(flatten)]
        store: StoreArg,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The latest snapshot of an execution, as JSON.
    Show {
        /// The execution id.
        id: String,
        #[command(flatten)]
        store: StoreArg,
        /// List every stored key of the execution instead.
        #[arg(long)]
        keys: bool,
    },
    /// Remove old snapshots.
    Prune {
        #[command(flatten)]
        store: StoreArg,
        /// Keep the newest N snapshots of each execution (and always the latest one).
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Remove finished executions whose last snapshot is older than DATE
        /// (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_name = "DATE")]
        finished_before: Option<String>,
        /// Print what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The store, to change (`prune`).
fn open(store: &StoreArg) -> Result<std::sync::Arc<dyn PersistenceBackend>, Failure> {
    open_persistence(&store.store).map_err(|e| Failure::Usage(e.to_string()))
}

/// The store, only to read (`list`, `show`): nothing is created, no write access needed.
fn open_to_read(store: &StoreArg) -> Result<std::sync::Arc<dyn PersistenceBackend>, Failure> {
    open_persistence_to_read(&store.store).map_err(|e| Failure::Usage(e.to_string()))
}

/// A temporary file older than this was left by a save that never finished: saves hold
/// theirs for milliseconds.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes (or, with `dry_run`, lists) what killed saves left in a `file://` store.
fn sweep_temporaries(store: &StoreArg, dry_run: bool) -> Result<usize, Failure> {
    let Some(dir) = store.store.strip_prefix("file://") else {
        return Ok(0);
    };
    let backend = flatmachines::backends::local::LocalFileBackend::open_existing(dir)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let removed = backend
        .remove_stale_temporaries(STALE_TEMPORARY, dry_run)
        .map_err(|e| Failure::Run(e.to_string()))?;
    for path in &removed {
        println!("{}", path.display());
    }
    Ok(removed.len())
}

pub(crate) async fn run(command: CheckpointsCommand) -> Result<(), Failure> {
    match command {
        CheckpointsCommand::List { store, json } => list(&store, json).await,
        CheckpointsCommand::Show { id, store, keys } => show(&store, &id, keys).await,
        CheckpointsCommand::Prune {
            store,
            keep,
            finished_before,
            dry_run,
        } => {
            let finished_before = finished_before.as_deref().map(parse_date).transpose()?;
            if keep.is_none() && finished_before.is_none() {
                return Err(Failure::Usage(
                    "prune needs --keep N and/or --finished-before DATE".to_owned(),
                ));
            }
            let options = PruneOptions {
                keep_last: keep,
                finished_before,
                dry_run,
            };
            let backend = open(&store)?;
            let report = prune(&*backend, &options)
                .await
                .map_err(|e| Failure::Run(e.to_string()))?;
            for key in &report.deleted_keys {
                println!("{key}");
            }
            let temporaries = sweep_temporaries(&store, dry_run)?;
            eprintln!(
                "{} {} snapshot key(s); {} execution(s) removed entirely; {temporaries} temporary file(s) of interrupted saves",
                if dry_run { "would remove" } else { "removed" },
                report.deleted_keys.len(),
                report.removed_executions.len()
            );
            Ok(())
        }
    }
}

async fn list(store: &StoreArg, json: bool) -> Result<(), Failure> {
    let backend = open_to_read(store)?;
    let executions = list_executions(&*backend)
        .await
        .map_err(|e| Failure::Run(e.to_string()))?;
    if !json {
        println!(
            "{:<38} {:<20} {:<13} {:<16} {:>6} {:>9}  UPDATED",
            "EXECUTION", "MACHINE", "EVENT", "STATE", "STEP", "SNAPSHOTS"
        );
    }
    for execution in executions {
        match (&execution.latest, json) {
            (Ok(s), false) => println!(
                "{:<38} {:<20} {:<13} {:<16} {:>6} {:>9}  {}",
                execution.execution_id,
                s.machine_name,
                s.event.as_deref().unwrap_or("-"),
                s.current_state,
                s.step,
                execution.snapshots,
                s.created_at
            ),
            (Err(reason), false) => println!("{:<38} unreadable: {reason}", execution.execution_id),
            (Ok(s), true) => println!(
                "{}",
                serde_json::json!({
                    "execution_id": execution.execution_id,
                    "machine_name": s.machine_name,
                    "event": s.event,
                    "current_state": s.current_state,
                    "step": s.step,
                    "snapshots": execution.snapshots,
                    "created_at": s.created_at,
                })
            ),
            (Err(reason), true) => println!(
                "{}",
                serde_json::json!({"execution_id": execution.execution_id, "error": reason})
            ),
        }
    }
    Ok(())
}

async fn show(store: &StoreArg, id: &str, keys: bool) -> Result<(), Failure> {
    let backend = open_to_read(store)?;
    if keys {
        let listed = backend
            .list(&format!("{id}/"))
            .await
            .map_err(|e| Failure::Usage(e.to_string()))?;
        if listed.is_empty() {
            return Err(Failure::Usage(format!(
                "no checkpoints for execution `{id}` in {}",
                store.store
            )));
        }
        for key in listed {
            println!("{key}");
        }
        return Ok(());
    }
    match load_latest(&*backend, id).await {
        Ok(Some(snapshot)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&snapshot).unwrap_or_default()
            );
            Ok(())
        }
        Ok(None) => Err(Failure::Usage(format!(
            "no checkpoints for execution `{id}` in {}",
            store.store
        ))),
        Err(e) => Err(Failure::Run(e.to_string())),
    }
}

fn parse_date(text: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(moment) = DateTime::parse_from_rfc3339(text) {
        return Ok(moment.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|moment| moment.and_utc())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--finished-before `{text}` is not a date (expected YYYY-MM-DD or RFC 3339)"
            ))
        })
}
