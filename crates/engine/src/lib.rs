//! The FlatMachines executor: loads machine configs, checks and compiles them, and runs them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use flatmachines_engine::{Machine, Runtime, RunOptions};
//!
//! let machine = Machine::from_file("examples/loop/machine.yml")?;
//! let runtime = Runtime::default();
//! let outcome = runtime.run(&machine, serde_json::Map::new(), RunOptions::default()).await?;
//! println!("{}", outcome.output);
//! # Ok(()) }
//! ```
//!
//! - [`Machine`] loads a machine and every machine it references, and reports bad configs
//!   (unknown states, machines and agents, template and expression syntax) before anything
//!   runs.
//! - [`Runtime`] holds the backends, agent executors, hook types and execution types;
//!   [`Runtime::prepare`] binds a machine to them, giving a [`Runner`].
//! - A run follows the reference's step semantics; see the `docs/` folder of the repository.

mod agents;
pub mod checkpoint;
mod compile;
mod definition;
mod error;
pub mod execution;
pub mod graph;
pub mod hooks;
mod loader;
mod machine;
mod observe;
mod provider;
mod run;
mod runtime;
mod template;
mod tools;
pub mod validate;

pub use agents::FnAgent;
pub use checkpoint::{CheckpointError, latest_key, load_latest, snapshot_key};
pub use error::{RunError, error_types};
pub use machine::Machine;
pub use provider::{BackendProvider, BackendRequest};
pub use run::{
    Budget, ResumeFailure, ResumeOptions, RunOptions, RunOutcome, RunStatus, new_execution_id,
};
pub use runtime::{DEFAULT_MAX_STEPS, Runner, Runtime, RuntimeBuilder};
pub use tools::ToolSet;

/// `value` as one line of JSON with the separators of Python's `json.dumps` (`", "` and
/// `": "`), the way templates print collections and the CLI prints outputs.
pub fn to_json_text(value: &serde_json::Value) -> String {
    template::python_json(value)
}
