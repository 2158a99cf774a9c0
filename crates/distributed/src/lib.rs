//! Distributed workers for FlatMachines: many processes, on one host or many, sharing one
//! pool of jobs through a registration backend and a work backend (SQLite, Redis or
//! PostgreSQL).
//!
//! The spec's pattern has three roles, each an ordinary machine:
//!
//! - a **checker** measures the pool (`get_pool_state`), decides how many workers it needs
//!   (`calculate_spawn`) and starts them (`spawn_workers`);
//! - **workers** register (`register_worker`), claim a job (`claim_job`), process it, complete
//!   or fail it (`complete_job`, `fail_job`), send heartbeats (`heartbeat`) and deregister
//!   (`deregister_worker`);
//! - a **reaper** finds workers whose heartbeats stopped (`list_stale_workers`), marks them
//!   lost and returns their jobs to the pool (`reap_worker`, `reap_stale_workers`).
//!
//! [`DistributedWorkerHooks`] implements those actions for any
//! [`RegistrationBackend`](flatmachines_core::RegistrationBackend) and
//! [`WorkBackend`](flatmachines_core::WorkBackend). [`Worker`] is the same worker loop in
//! Rust, with a background heartbeat and a clean shutdown, behind `flatmachines worker`.
//! [`Launcher`] starts machines as detached `flatmachines run` processes, and
//! [`SubprocessInvoker`] runs a parent's child machines that way.
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use flatmachines_core::{PushOptions, WorkBackend, WorkItem};
//! use flatmachines_distributed::{JobRunner, StopReason, Worker, WorkerOptions};
//! use flatmachines_memory::{MemoryRegistrationBackend, MemoryWorkBackend};
//! use serde_json::{Value, json};
//!
//! struct Double;
//!
//! #[async_trait]
//! impl JobRunner for Double {
//!     async fn run(&self, job: &WorkItem) -> Result<Value, String> {
//!         let n = job.data["n"].as_i64().ok_or("the job has no n")?;
//!         Ok(json!(n * 2))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In-memory backends for the example; workers in several processes share SQLite, Redis
//! // or PostgreSQL ones.
//! let work = Arc::new(MemoryWorkBackend::new());
//! let id = work.pool("doubling").push(json!({"n": 21}), PushOptions::default()).await?;
//! let options = WorkerOptions::new("doubling")
//!     .exit_when_idle(Some(std::time::Duration::from_millis(50)));
//! let worker = Worker::new(Arc::new(MemoryRegistrationBackend::new()), work.clone(), options);
//! let summary = worker.run(&Double, std::future::pending(), |_| {}).await?;
//! assert_eq!((summary.completed, summary.stop), (1, StopReason::Idle));
//! let item = work.pool("doubling").get(&id).await?.expect("the job");
//! assert_eq!(item.result, Some(json!(42)));
//! # Ok(())
//! # }
//! ```

mod actions;
mod context;
mod hooks;
mod host;
mod launch;
mod worker;

pub use hooks::DistributedWorkerHooks;
pub use launch::{LaunchError, LaunchRequest, Launcher, SubprocessInvoker};
pub use worker::{
    JobOutcome, JobReport, JobRunner, StopReason, Worker, WorkerError, WorkerOptions, WorkerSummary,
};
