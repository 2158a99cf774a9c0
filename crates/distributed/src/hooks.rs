//! [`DistributedWorkerHooks`]: the distributed-worker actions as machine hooks.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use flatmachines_core::hooks::HookError;
use flatmachines_core::{Context, MachineHooks, RegistrationBackend, WorkBackend};

use crate::actions::{ACTIONS, Actions};
use crate::launch::Launcher;

/// Machine hooks that run the spec's distributed-worker actions over any registration and
/// work backend, with the reference's action names and context keys:
///
/// | action | reads | writes |
/// |---|---|---|
/// | `get_pool_state` | `pool_id` | `queue_depth`, `active_workers` |
/// | `claim_job` | `pool_id`, `worker_id` | `job`, `job_id`, `job_attempts` (null when nothing is pending) |
/// | `complete_job` | `pool_id`, `job_id`, `result` | |
/// | `fail_job` | `pool_id`, `job_id`, `error` (else `last_error`) | |
/// | `register_worker` | `worker_id` (new when missing), `pool_id`, `capabilities` | `worker_id`, `status`, `registered_at` |
/// | `deregister_worker` | `worker_id` | |
/// | `heartbeat` | `worker_id`, `heartbeat_metadata` | |
/// | `list_stale_workers` | `stale_threshold_seconds` (60) | `workers`, `stale_count` |
/// | `reap_worker` | `worker`, `pool_id` | `reaped_worker_id`, `jobs_released` |
/// | `reap_stale_workers` | `stale_workers` (else `workers`), `pool_id` | `reaped_workers`, `reaped_count`, `total_jobs_released` |
/// | `calculate_spawn` | `queue_depth`, `active_workers`, `max_workers` (3) | `workers_needed`, `workers_to_spawn`, `spawn_list` |
/// | `spawn_workers` | `workers_to_spawn`, `worker_config_path`, `pool_id` | `spawned_ids`, `spawned_count` |
///
/// `pool_id` defaults to `default`. Other actions are left to other hooks: compose these with
/// your own through [`CompositeHooks`](../flatmachines_engine/hooks/struct.CompositeHooks.html)
/// or by delegating to [`DistributedWorkerHooks::run_action`] from your own `on_action`.
#[derive(Clone)]
pub struct DistributedWorkerHooks {
    actions: Arc<Actions>,
}

impl fmt::Debug for DistributedWorkerHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistributedWorkerHooks")
            .field("registration", &self.actions.registration)
            .field("work", &self.actions.work)
            .field("launcher", &self.actions.launcher)
            .finish()
    }
}

impl DistributedWorkerHooks {
    /// Hooks over these backends. `spawn_workers` needs a launcher too: see
    /// [`DistributedWorkerHooks::with_launcher`].
    pub fn new(registration: Arc<dyn RegistrationBackend>, work: Arc<dyn WorkBackend>) -> Self {
        DistributedWorkerHooks {
            actions: Arc::new(Actions {
                registration,
                work,
                launcher: None,
            }),
        }
    }

    /// Starts the workers of `spawn_workers` through `launcher`.
    pub fn with_launcher(self, launcher: Launcher) -> Self {
        let actions = Actions {
            registration: Arc::clone(&self.actions.registration),
            work: Arc::clone(&self.actions.work),
            launcher: Some(launcher),
        };
        DistributedWorkerHooks {
            actions: Arc::new(actions),
        }
    }

    /// The action names these hooks handle.
    pub fn actions() -> &'static [&'static str] {
        &ACTIONS
    }

    /// Runs `action` on `context`; `Ok(false)` when it is not one of these hooks' actions.
    pub async fn run_action(&self, action: &str, context: &mut Context) -> Result<bool, HookError> {
        self.actions.run(action, context).await
    }
}

#[async_trait]
impl MachineHooks for DistributedWorkerHooks {
    async fn on_action(&self, action: &str, context: &mut Context) -> Result<bool, HookError> {
        self.actions.run(action, context).await
    }
}
