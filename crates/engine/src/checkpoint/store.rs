//! Reading and tidying stored checkpoints: the latest snapshot of an execution, a listing of
//! executions, and pruning.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use flatmachines_core::{
    CheckpointEvent, Error, MachineSnapshot, PersistenceBackend, validate_key,
};

use super::latest_key;

/// A stored checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The execution has snapshots but no `latest` pointer.
    #[error(
        "execution `{execution_id}` has {count} snapshot(s) but no `latest` pointer (`{pointer}`); the newest is `{newest}`, and writing its key into the pointer resumes from it"
    )]
    MissingPointer {
        /// The execution.
        execution_id: String,
        /// The pointer's key.
        pointer: String,
        /// How many snapshots there are.
        count: usize,
        /// The newest snapshot's key.
        newest: String,
    },
    /// The pointer does not hold a snapshot key of this execution.
    #[error(
        "the `latest` pointer `{pointer}` does not hold a snapshot key of its execution (found {found:?})"
    )]
    BadPointer {
        /// The pointer's key.
        pointer: String,
        /// What it holds, cut short.
        found: String,
    },
    /// The pointer names a snapshot that does not exist.
    #[error(
        "the `latest` pointer of execution `{execution_id}` names `{key}`, which does not exist"
    )]
    MissingSnapshot {
        /// The execution.
        execution_id: String,
        /// The missing key.
        key: String,
    },
    /// A snapshot is not valid snapshot JSON.
    #[error("snapshot `{key}` is corrupt: {reason}")]
    Corrupt {
        /// The snapshot's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] Error),
}

/// The snapshot the `latest` pointer of `execution_id` names; `None` when the store holds
/// nothing at all for that execution.
pub async fn load_latest(
    backend: &dyn PersistenceBackend,
    execution_id: &str,
) -> Result<Option<MachineSnapshot>, CheckpointError> {
    let pointer_key = latest_key(execution_id);
    let Some(pointer) = backend.load(&pointer_key).await? else {
        let snapshots = snapshot_keys(backend, execution_id).await?;
        return match snapshots.last() {
            None => Ok(None),
            Some((_, newest)) => Err(CheckpointError::MissingPointer {
                execution_id: execution_id.to_owned(),
                pointer: pointer_key,
                count: snapshots.len(),
                newest: newest.clone(),
            }),
        };
    };
    let bad_pointer = || CheckpointError::BadPointer {
        pointer: pointer_key.clone(),
        found: String::from_utf8_lossy(&pointer[..pointer.len().min(120)]).into_owned(),
    };
    let key = std::str::from_utf8(&pointer)
        .map_err(|_| bad_pointer())?
        .trim();
    // The pointer is data: it must not lead outside the execution.
    if !key.starts_with(&format!("{execution_id}/")) || validate_key(key).is_err() {
        return Err(bad_pointer());
    }
    let Some(bytes) = backend.load(key).await? else {
        return Err(CheckpointError::MissingSnapshot {
            execution_id: execution_id.to_owned(),
            key: key.to_owned(),
        });
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| CheckpointError::Corrupt {
            key: key.to_owned(),
            reason: e.to_string(),
        })
}

/// Where a snapshot key falls in an execution's history: by step, then by the order of events
/// within a step.
type Position = (u64, usize);

fn position(key: &str) -> Option<Position> {
    let name = key.rsplit('/').next()?;
    let rest = name.strip_prefix("step_")?.strip_suffix(".json")?;
    let (step, event) = rest.split_once('_')?;
    let step = step.parse().ok()?;
    let order = CheckpointEvent::ALL
        .iter()
        .position(|e| e.as_str() == event)
        .unwrap_or(CheckpointEvent::ALL.len());
    Some((step, order))
}

/// An execution's snapshot keys, oldest first.
async fn snapshot_keys(
    backend: &dyn PersistenceBackend,
    execution_id: &str,
) -> Result<Vec<(Position, String)>, Error> {
    let mut keys: Vec<(Position, String)> = backend
        .list(&format!("{execution_id}/"))
        .await?
        .into_iter()
        .filter_map(|key| position(&key).map(|p| (p, key)))
        .collect();
    keys.sort();
    Ok(keys)
}

/// One execution found in a store.
#[derive(Debug)]
pub struct ExecutionSummary {
    /// The execution id.
    pub execution_id: String,
    /// How many snapshots it has.
    pub snapshots: usize,
    /// Its latest snapshot, or why it could not be read.
    pub latest: Result<MachineSnapshot, String>,
}

/// Every execution in the store, by id.
pub async fn list_executions(
    backend: &dyn PersistenceBackend,
) -> Result<Vec<ExecutionSummary>, Error> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for key in backend.list("").await? {
        if let Some((id, rest)) = key.split_once('/') {
            let entry = counts.entry(id.to_owned()).or_default();
            if position(rest).is_some() {
                *entry += 1;
            }
        }
    }
    let mut summaries = Vec::with_capacity(counts.len());
    for (execution_id, snapshots) in counts {
        let latest = match load_latest(backend, &execution_id).await {
            Ok(Some(snapshot)) => Ok(snapshot),
            Ok(None) => Err("no snapshots".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        summaries.push(ExecutionSummary {
            execution_id,
            snapshots,
            latest,
        });
    }
    Ok(summaries)
}

/// What [`prune`] removes.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Keep only the newest this-many snapshots of each execution (never the one `latest`
    /// names).
    pub keep_last: Option<usize>,
    /// Remove finished executions (latest event `machine_end`) whose last snapshot is older.
    pub finished_before: Option<DateTime<Utc>>,
    /// Report what would be removed without removing it.
    pub dry_run: bool,
}

/// What [`prune`] removed (or would remove, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Every key removed.
    pub deleted_keys: Vec<String>,
    /// Executions removed entirely.
    pub removed_executions: Vec<String>,
}

/// Removes old snapshots: all but the newest `keep_last` of each execution, and whole finished
/// executions older than `finished_before`. The snapshot a `latest` pointer names is never
/// removed while its execution stays, and an execution whose snapshots cannot be read is left
/// alone.
pub async fn prune(
    backend: &dyn PersistenceBackend,
    options: &PruneOptions,
) -> Result<PruneReport, Error> {
    let mut report = PruneReport::default();
    for summary in list_executions(backend).await? {
        let Ok(latest) = &summary.latest else {
            continue;
        };
        let id = &summary.execution_id;
        let keys = snapshot_keys(backend, id).await?;
        let finished_long_ago = options.finished_before.is_some_and(|cutoff| {
            latest.event.as_deref() == Some(CheckpointEvent::MachineEnd.as_str())
                && DateTime::parse_from_rfc3339(&latest.created_at)
                    .is_ok_and(|created| created.with_timezone(&Utc) < cutoff)
        });
        let doomed: Vec<String> = if finished_long_ago {
            let mut all: Vec<String> = keys.into_iter().map(|(_, key)| key).collect();
            // The pointer goes last, so an interrupted prune leaves a readable execution.
            all.push(latest_key(id));
            report.removed_executions.push(id.clone());
            all
        } else if let Some(keep) = options.keep_last {
            let current = backend
                .load(&latest_key(id))
                .await?
                .map(|p| String::from_utf8_lossy(&p).trim().to_owned());
            let excess = keys.len().saturating_sub(keep);
            keys.into_iter()
                .take(excess)
                .map(|(_, key)| key)
                .filter(|key| Some(key) != current.as_ref())
                .collect()
        } else {
            Vec::new()
        };
        for key in doomed {
            if !options.dry_run {
                backend.delete(&key).await?;
            }
            report.deleted_keys.push(key);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_events_within_a_step() {
        let mut keys = vec![
            "e/step_000002_state_enter.json",
            "e/step_000001_state_exit.json",
            "e/step_000001_execute.json",
            "e/step_000001_state_enter.json",
            "e/step_000000_machine_start.json",
            "e/step_000002_machine_end.json",
        ];
        keys.sort_by_key(|k| position(k));
        assert_eq!(
            keys,
            [
                "e/step_000000_machine_start.json",
                "e/step_000001_state_enter.json",
                "e/step_000001_execute.json",
                "e/step_000001_state_exit.json",
                "e/step_000002_state_enter.json",
                "e/step_000002_machine_end.json",
            ]
        );
        assert_eq!(position("e/latest"), None);
    }
}
