//! Checkpoints: the key layout, the `latest` pointer, snapshot encoding, and reading,
//! listing and pruning what a store holds.
//!
//! Keys are `{execution_id}/step_{step:06}_{event}.json`; `{execution_id}/latest` holds the
//! newest snapshot's key. The JSON has the reference's field names and order.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use flatmachines_core::llm::Message;
use flatmachines_core::{
    CheckpointEvent, Context, Error, LaunchIntent, PersistenceBackend, ToolLoopJournal,
};

mod store;

pub use store::{
    CheckpointError, ExecutionSummary, PruneOptions, PruneReport, list_executions, load_latest,
    prune,
};

/// The key of a snapshot.
pub fn snapshot_key(execution_id: &str, step: u64, event: &str) -> String {
    format!("{execution_id}/step_{step:06}_{event}.json")
}

/// The key of an execution's `latest` pointer.
pub fn latest_key(execution_id: &str) -> String {
    format!("{execution_id}/latest")
}

/// The snapshot as written: borrowed fields, and the context spliced in from its cached
/// encoding so an unchanged context is not serialized again.
#[derive(Serialize)]
struct SnapshotRecord<'a> {
    execution_id: &'a str,
    machine_name: &'a str,
    spec_version: &'a str,
    current_state: &'a str,
    context: &'a RawValue,
    step: u64,
    created_at: &'a str,
    event: &'a str,
    output: Option<&'a Value>,
    total_api_calls: u64,
    total_cost: f64,
    parent_execution_id: Option<&'a str>,
    pending_launches: Option<&'a [LaunchIntent]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_loop_state: Option<&'a ToolLoopRecord<'a>>,
}

/// A running tool loop's `tool_loop_state`, borrowed from the loop as it is written.
#[derive(Serialize)]
pub(crate) struct ToolLoopRecord<'a> {
    pub(crate) chain: &'a [Message],
    pub(crate) turns: u64,
    pub(crate) tool_calls_count: u64,
    pub(crate) loop_cost: f64,
    pub(crate) journal: &'a ToolLoopJournal,
}

/// A buffer grown past this by one large snapshot is released rather than kept per thread.
const MAX_KEPT_BUFFER: usize = 1 << 20;

thread_local! {
    static ENCODE_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What a checkpoint records besides the context.
pub(crate) struct CheckpointData<'a> {
    pub(crate) event: CheckpointEvent,
    pub(crate) state: &'a str,
    pub(crate) step: u64,
    pub(crate) output: Option<&'a Value>,
    pub(crate) total_api_calls: u64,
    pub(crate) total_cost: f64,
    pub(crate) pending_launches: &'a [LaunchIntent],
    pub(crate) tool_loop_state: Option<&'a ToolLoopRecord<'a>>,
}

/// Writes one execution's checkpoints.
#[derive(Debug)]
pub(crate) struct CheckpointWriter {
    backend: Arc<dyn PersistenceBackend>,
    execution_id: String,
    latest: String,
    machine_name: String,
    spec_version: String,
    parent_execution_id: Option<String>,
    warn_bytes: Option<usize>,
    warned: AtomicBool,
    /// How many of the newest snapshots to keep, and the keys this writer wrote, oldest
    /// first, that are still stored.
    keep: Option<u64>,
    written: Mutex<VecDeque<String>>,
}

impl CheckpointWriter {
    pub(crate) fn new(
        backend: Arc<dyn PersistenceBackend>,
        execution_id: &str,
        machine_name: &str,
        spec_version: &str,
        parent_execution_id: Option<&str>,
        warn_bytes: Option<usize>,
        keep: Option<u64>,
    ) -> Self {
        CheckpointWriter {
            backend,
            latest: latest_key(execution_id),
            execution_id: execution_id.to_owned(),
            machine_name: machine_name.to_owned(),
            spec_version: spec_version.to_owned(),
            parent_execution_id: parent_execution_id.map(str::to_owned),
            warn_bytes,
            warned: AtomicBool::new(false),
            keep,
            written: Mutex::new(VecDeque::new()),
        }
    }

    /// Reports an oversized snapshot once per execution, naming the context keys that weigh
    /// most, so the user knows what to move out of the context.
    fn warn_if_large(&self, size: usize, context: &Context, step: u64) {
        let Some(limit) = self.warn_bytes else { return };
        if size <= limit || self.warned.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut weights: Vec<(&str, usize)> = context
            .iter()
            .map(|(key, value)| {
                (
                    key.as_str(),
                    serde_json::to_vec(value).map_or(0, |v| v.len()),
                )
            })
            .collect();
        weights.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
        let heaviest: Vec<String> = weights
            .iter()
            .take(3)
            .map(|(key, bytes)| format!("`{key}` ({bytes} bytes)"))
            .collect();
        tracing::warn!(
            execution_id = %self.execution_id,
            machine = %self.machine_name,
            step,
            "snapshot is {size} bytes, over the {limit}-byte warning size (persistence.warn_snapshot_bytes); the largest context keys are {}",
            heaviest.join(", ")
        );
    }

    /// Writes the snapshot, then points `latest` at it.
    pub(crate) async fn save(
        &self,
        context: &Context,
        data: CheckpointData<'_>,
    ) -> Result<(), Error> {
        let encode_error = |source| Error::Serialization {
            action: "encode",
            what: format!("the context of execution `{}`", self.execution_id),
            source,
        };
        let raw_context = context.encoded().map_err(encode_error)?;
        let created_at = flatmachines_memory::now_iso8601();
        let record = SnapshotRecord {
            execution_id: &self.execution_id,
            machine_name: &self.machine_name,
            spec_version: &self.spec_version,
            current_state: data.state,
            context: raw_context,
            step: data.step,
            created_at: &created_at,
            event: data.event.as_str(),
            output: data.output,
            total_api_calls: data.total_api_calls,
            total_cost: data.total_cost,
            parent_execution_id: self.parent_execution_id.as_deref(),
            pending_launches: (!data.pending_launches.is_empty()).then_some(data.pending_launches),
            tool_loop_state: data.tool_loop_state,
        };
        // Encoding into a reused buffer and copying out once gives an exactly sized value
        // without the reallocations of a growing vector.
        let bytes = ENCODE_BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            let encoded = serde_json::to_writer(&mut *buffer, &record)
                .map(|()| Bytes::copy_from_slice(buffer));
            if buffer.capacity() > MAX_KEPT_BUFFER {
                *buffer = Vec::new();
            }
            encoded
        });
        let bytes = bytes.map_err(encode_error)?;
        self.warn_if_large(bytes.len(), context, data.step);
        let key = snapshot_key(&self.execution_id, data.step, data.event.as_str());
        let pointer = Bytes::copy_from_slice(key.as_bytes());
        self.backend
            .save_many(&[(&key, bytes), (&self.latest, pointer)])
            .await?;
        self.forget_old(key).await;
        Ok(())
    }

    /// Deletes the snapshots past the `keep` newest, once `latest` points past them. Only
    /// snapshots this writer wrote are counted, so what an earlier process stored stays.
    async fn forget_old(&self, key: String) {
        let Some(keep) = self.keep else { return };
        let stale: Vec<String> = {
            let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            // A key written again (the same step and event) is one snapshot, not two.
            if written.back() != Some(&key) {
                written.push_back(key);
            }
            let excess = (written.len() as u64).saturating_sub(keep);
            written.drain(..excess as usize).collect()
        };
        for old in stale {
            // What is left behind costs space, never correctness: `latest` no longer names it.
            if let Err(error) = self.backend.delete(&old).await {
                tracing::warn!(execution_id = %self.execution_id, key = %old, %error, "could not delete a snapshot past persistence.keep_snapshots");
            }
        }
    }
}
