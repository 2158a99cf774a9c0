//! The distributed-worker actions, each reading and writing the context keys the reference's
//! `DistributedWorkerHooks` uses.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use flatmachines_core::distributed::status;
use flatmachines_core::hooks::HookError;
use flatmachines_core::{
    Context, RegistrationBackend, WorkBackend, WorkerFilter, WorkerRegistration,
};

use crate::context::{count, describe, pool_id, required_text, seconds, set, text};
use crate::host::{host_name, new_worker_id, now_iso8601};
use crate::launch::{LaunchRequest, Launcher};

/// The names of every action, in the order the docs list them.
pub(crate) const ACTIONS: [&str; 12] = [
    "get_pool_state",
    "claim_job",
    "complete_job",
    "fail_job",
    "register_worker",
    "deregister_worker",
    "heartbeat",
    "list_stale_workers",
    "reap_worker",
    "reap_stale_workers",
    "calculate_spawn",
    "spawn_workers",
];

/// The reference's defaults.
const DEFAULT_STALE_SECONDS: f64 = 60.0;
const DEFAULT_MAX_WORKERS: u64 = 3;

pub(crate) struct Actions {
    pub(crate) registration: Arc<dyn RegistrationBackend>,
    pub(crate) work: Arc<dyn WorkBackend>,
    pub(crate) launcher: Option<Launcher>,
}

fn backend(action: &str, error: flatmachines_core::Error) -> HookError {
    HookError::new(format!("action `{action}` failed: {error}"))
}

impl Actions {
    /// Runs `action`; `Ok(false)` when it is not one of ours.
    pub(crate) async fn run(&self, action: &str, context: &mut Context) -> Result<bool, HookError> {
        match action {
            "get_pool_state" => self.get_pool_state(context).await?,
            "claim_job" => self.claim_job(context).await?,
            "complete_job" => self.complete_job(context).await?,
            "fail_job" => self.fail_job(context).await?,
            "register_worker" => self.register_worker(context).await?,
            "deregister_worker" => self.deregister_worker(context).await?,
            "heartbeat" => self.heartbeat(context).await?,
            "list_stale_workers" => self.list_stale_workers(context).await?,
            "reap_worker" => self.reap_worker(context).await?,
            "reap_stale_workers" => self.reap_stale_workers(context).await?,
            "calculate_spawn" => calculate_spawn(context)?,
            "spawn_workers" => self.spawn_workers(context).await?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `queue_depth` (pending jobs of `pool_id`) and `active_workers` (active workers of that
    /// pool).
    async fn get_pool_state(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "get_pool_state";
        let pool = pool_id(context);
        let depth = self
            .work
            .pool(&pool)
            .size()
            .await
            .map_err(|e| backend(action, e))?;
        let filter = WorkerFilter {
            status: Some(vec![status::ACTIVE.to_owned()]),
            pool_id: Some(pool),
            ..WorkerFilter::default()
        };
        let active = self
            .registration
            .list(&filter)
            .await
            .map_err(|e| backend(action, e))?;
        set(context, "queue_depth", depth);
        set(context, "active_workers", active.len());
        Ok(())
    }

    /// Claims the next job for `worker_id`: `job` and `job_id`, both null when the pool has
    /// nothing pending.
    async fn claim_job(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "claim_job";
        let worker_id = required_text(context, action, "worker_id")?;
        let item = self
            .work
            .pool(&pool_id(context))
            .claim(&worker_id)
            .await
            .map_err(|e| backend(action, e))?;
        match item {
            Some(item) => {
                set(context, "job", item.data);
                set(context, "job_id", item.id);
                set(context, "job_attempts", item.attempts);
            }
            None => {
                set(context, "job", Value::Null);
                set(context, "job_id", Value::Null);
                set(context, "job_attempts", Value::Null);
            }
        }
        Ok(())
    }

    /// Marks `job_id` done with `result`.
    async fn complete_job(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "complete_job";
        let job_id = required_text(context, action, "job_id")?;
        let result = context.as_map().get("result").cloned();
        self.work
            .pool(&pool_id(context))
            .complete(&job_id, result)
            .await
            .map_err(|e| backend(action, e))
    }

    /// Records a failed attempt of `job_id` with `error` (else `last_error`, which `on_error`
    /// routing sets); the pool retries it or poisons it.
    async fn fail_job(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "fail_job";
        let job_id = required_text(context, action, "job_id")?;
        let error =
            ["error", "last_error"]
                .iter()
                .find_map(|key| match context.as_map().get(*key) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                });
        self.work
            .pool(&pool_id(context))
            .fail(&job_id, error.as_deref())
            .await
            .map_err(|e| backend(action, e))
    }

    /// Registers `worker_id` (a new id when the context has none) in `pool_id` with this
    /// process's host and pid and the context's `capabilities`.
    async fn register_worker(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "register_worker";
        let worker_id = text(context, "worker_id").unwrap_or_else(new_worker_id);
        let capabilities = match context.as_map().get("capabilities") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(HookError::new(format!(
                        "action `{action}` needs `context.capabilities` as a list of strings, found {} in it",
                        describe(other)
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(HookError::new(format!(
                    "action `{action}` needs `context.capabilities` as a list of strings, found {}",
                    describe(other)
                )));
            }
        };
        let registration = WorkerRegistration {
            worker_id,
            host: Some(host_name()),
            pid: Some(std::process::id()),
            capabilities: Some(capabilities),
            pool_id: Some(pool_id(context)),
            started_at: now_iso8601(),
        };
        let record = self
            .registration
            .register(registration)
            .await
            .map_err(|e| backend(action, e))?;
        set(context, "worker_id", record.worker_id);
        set(context, "status", record.status);
        set(context, "registered_at", record.started_at);
        Ok(())
    }

    /// Marks `worker_id` terminated: a clean exit.
    async fn deregister_worker(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "deregister_worker";
        let worker_id = required_text(context, action, "worker_id")?;
        self.registration
            .update_status(&worker_id, status::TERMINATED)
            .await
            .map_err(|e| backend(action, e))
    }

    /// Moves `worker_id`'s heartbeat to now, merging `heartbeat_metadata` (a mapping) into
    /// its metadata when the context has one.
    async fn heartbeat(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "heartbeat";
        let worker_id = required_text(context, action, "worker_id")?;
        let metadata = match context.as_map().get("heartbeat_metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map.clone()),
            Some(other) => {
                return Err(HookError::new(format!(
                    "action `{action}` needs `context.heartbeat_metadata` as a mapping, found {}",
                    describe(other)
                )));
            }
        };
        self.registration
            .heartbeat(&worker_id, metadata)
            .await
            .map_err(|e| backend(action, e))
    }

    /// Active workers whose last heartbeat is older than `stale_threshold_seconds` (default
    /// 60): `workers` (each with `worker_id`, `last_heartbeat`, `host`, `pool_id`) and
    /// `stale_count`.
    async fn list_stale_workers(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "list_stale_workers";
        let threshold = seconds(
            context,
            action,
            "stale_threshold_seconds",
            DEFAULT_STALE_SECONDS,
        )?;
        let filter = WorkerFilter {
            status: Some(vec![status::ACTIVE.to_owned()]),
            stale_threshold_seconds: Some(threshold),
            ..WorkerFilter::default()
        };
        let stale = self
            .registration
            .list(&filter)
            .await
            .map_err(|e| backend(action, e))?;
        let workers: Vec<Value> = stale
            .into_iter()
            .map(|w| {
                json!({
                    "worker_id": w.worker_id,
                    "last_heartbeat": w.last_heartbeat,
                    "host": w.host,
                    "pool_id": w.pool_id,
                })
            })
            .collect();
        set(context, "stale_count", workers.len());
        set(context, "workers", workers);
        Ok(())
    }

    /// Marks one worker lost and returns its jobs to its pool.
    async fn reap(
        &self,
        action: &str,
        worker: &Value,
        fallback_pool: &str,
    ) -> Result<(String, u64), HookError> {
        let map = worker.as_object().ok_or_else(|| {
            HookError::new(format!(
                "action `{action}` needs each worker as a mapping with `worker_id`, found {}",
                describe(worker)
            ))
        })?;
        let worker_id = match map.get("worker_id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => {
                return Err(HookError::new(format!(
                    "action `{action}` needs `worker_id` in each worker, found {}",
                    describe(worker)
                )));
            }
        };
        // A worker's jobs sit in its own pool; the context's pool is the fallback for records
        // that do not name one.
        let pool = map
            .get("pool_id")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .unwrap_or(fallback_pool)
            .to_owned();
        self.registration
            .update_status(&worker_id, status::LOST)
            .await
            .map_err(|e| backend(action, e))?;
        let released = self
            .work
            .pool(&pool)
            .release_by_worker(&worker_id)
            .await
            .map_err(|e| backend(action, e))?;
        tracing::info!(worker_id = %worker_id, pool = %pool, released, "reaped a lost worker");
        Ok((worker_id, released))
    }

    /// Reaps `context.worker`: `reaped_worker_id` and `jobs_released`.
    async fn reap_worker(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "reap_worker";
        let worker = match context.as_map().get("worker") {
            None | Some(Value::Null) => {
                return Err(HookError::new(format!(
                    "action `{action}` needs `context.worker`, which is missing or null"
                )));
            }
            Some(worker) => worker.clone(),
        };
        let (worker_id, released) = self.reap(action, &worker, &pool_id(context)).await?;
        set(context, "reaped_worker_id", worker_id);
        set(context, "jobs_released", released);
        Ok(())
    }

    /// Reaps every worker of `stale_workers` (else `workers`, as `list_stale_workers` leaves
    /// them): `reaped_workers`, `reaped_count` and `total_jobs_released`.
    async fn reap_stale_workers(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "reap_stale_workers";
        let workers =
            ["stale_workers", "workers"]
                .iter()
                .find_map(|key| match context.as_map().get(*key) {
                    None | Some(Value::Null) => None,
                    Some(value) => Some((*key, value.clone())),
                });
        let workers = match workers {
            None => Vec::new(),
            Some((_, Value::Array(items))) => items,
            Some((key, other)) => {
                return Err(HookError::new(format!(
                    "action `{action}` needs `context.{key}` as a list of workers, found {}",
                    describe(&other)
                )));
            }
        };
        let fallback = pool_id(context);
        let mut reaped = Vec::with_capacity(workers.len());
        let mut released = 0;
        for worker in &workers {
            let (worker_id, count) = self.reap(action, worker, &fallback).await?;
            reaped.push(Value::String(worker_id));
            released += count;
        }
        set(context, "reaped_count", reaped.len());
        set(context, "reaped_workers", reaped);
        set(context, "total_jobs_released", released);
        Ok(())
    }

    /// Starts `workers_to_spawn` worker machines (`worker_config_path`, relative to the
    /// machine's file) as separate processes, each with input `{pool_id, worker_id}`:
    /// `spawned_ids` and `spawned_count`.
    async fn spawn_workers(&self, context: &mut Context) -> Result<(), HookError> {
        let action = "spawn_workers";
        let wanted = count(context, action, "workers_to_spawn", 0)?;
        if wanted == 0 {
            set(context, "spawned_ids", Vec::<Value>::new());
            set(context, "spawned_count", 0);
            return Ok(());
        }
        let config = required_text(context, action, "worker_config_path")?;
        let launcher = self.launcher.as_ref().ok_or_else(|| {
            HookError::new(format!(
                "action `{action}` cannot start processes: these hooks were built without a launcher"
            ))
        })?;
        let pool = pool_id(context);
        let mut spawned = Vec::new();
        for _ in 0..wanted {
            let worker_id = new_worker_id();
            // Registered before it starts, so a checker running again before the process is
            // up counts it and does not start another; the worker registers again as it
            // starts, and one that never does stops beating and is reaped.
            let registration = WorkerRegistration {
                worker_id: worker_id.clone(),
                host: Some(host_name()),
                pid: None,
                capabilities: None,
                pool_id: Some(pool.clone()),
                started_at: now_iso8601(),
            };
            self.registration
                .register(registration)
                .await
                .map_err(|e| backend(action, e))?;
            let mut input = Map::new();
            input.insert("pool_id".into(), Value::String(pool.clone()));
            input.insert("worker_id".into(), Value::String(worker_id.clone()));
            let request = LaunchRequest::new(&config, input);
            if let Err(e) = launcher.launch(&request).await {
                let _ = self
                    .registration
                    .update_status(&worker_id, status::LOST)
                    .await;
                return Err(HookError::new(format!("action `{action}`: {e}")));
            }
            tracing::info!(worker_id = %worker_id, pool = %pool, "spawned a worker process");
            spawned.push(Value::String(worker_id));
        }
        set(context, "spawned_count", spawned.len());
        set(context, "spawned_ids", spawned);
        Ok(())
    }
}

/// `workers_needed = min(queue_depth, max_workers)` (default 3) and
/// `workers_to_spawn = max(0, workers_needed - active_workers)`, with `spawn_list` (one entry
/// per worker to spawn) for `foreach`.
fn calculate_spawn(context: &mut Context) -> Result<(), HookError> {
    let action = "calculate_spawn";
    let depth = count(context, action, "queue_depth", 0)?;
    let active = count(context, action, "active_workers", 0)?;
    let max_workers = count(context, action, "max_workers", DEFAULT_MAX_WORKERS)?;
    let needed = depth.min(max_workers);
    let to_spawn = needed.saturating_sub(active);
    set(context, "workers_needed", needed);
    set(context, "workers_to_spawn", to_spawn);
    set(
        context,
        "spawn_list",
        (0..to_spawn).map(Value::from).collect::<Vec<_>>(),
    );
    Ok(())
}
