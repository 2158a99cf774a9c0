//! Conformance suites for FlatMachines runtime backends.
//!
//! One suite per runtime trait of [`flatmachines_core`] — [`ExecutionLock`](flatmachines_core::ExecutionLock),
//! [`PersistenceBackend`](flatmachines_core::PersistenceBackend),
//! [`ResultBackend`](flatmachines_core::ResultBackend),
//! [`RegistrationBackend`](flatmachines_core::RegistrationBackend) and
//! [`WorkBackend`](flatmachines_core::WorkBackend)/[`WorkPool`](flatmachines_core::WorkPool) —
//! checks the numbered **Contract** clauses of the trait's rustdoc, and a machine-level
//! suite runs a corpus of YAML machines on a persistence backend. The in-tree backends run
//! them from this crate's `conformance` test; a custom backend runs them from its own tests:
//!
//! ```no_run
//! use std::sync::Arc;
//! use flatmachines_conformance::{Capabilities, PersistenceFactory};
//! use flatmachines_core::PersistenceBackend;
//! use flatmachines_memory::MemoryBackend;
//!
//! # async fn demo() {
//! // One store per namespace; handles opened with the same namespace share it.
//! let factory = PersistenceFactory::shared_per_namespace(|| {
//!     Arc::new(MemoryBackend::new()) as Arc<dyn PersistenceBackend>
//! });
//! let report =
//!     flatmachines_conformance::persistence(&factory, &Capabilities::none().large_values()).await;
//! assert!(report.is_success(), "{report}");
//! # }
//! ```
//!
//! - A [`Factory`] opens backends by namespace: every case makes up fresh namespaces, so
//!   cases never see each other's data, and opens one namespace twice when it needs two
//!   handles on the same data (two lock holders, say).
//! - [`Capabilities`] declare optional behaviour ([`Capability`]); cases needing an
//!   undeclared one are skipped, and the [`SuiteReport`] says which and why.
//! - Cross-process cases start helper processes; see [`process`].
//! - Each suite's cases are listed in [`suites`], for runners that make one trial per case.
//!
//! Suites need a Tokio runtime with the time driver enabled (`#[tokio::test]` has one).

mod capability;
mod case;
mod factory;
pub mod process;
mod report;
pub mod suites;

pub use capability::{Capabilities, Capability, DEFAULT_CLAIM_RACE};
pub use case::{CASE_TIMEOUT, Case, run_cases};
pub use factory::{
    Factory, LockFactory, PersistenceFactory, RegistrationFactory, ResultFactory, WorkFactory,
};
pub use report::{CaseReport, Outcome, SuiteReport};

/// Runs the [`PersistenceBackend`](flatmachines_core::PersistenceBackend) suite
/// ([`suites::persistence`]).
pub async fn persistence(factory: &PersistenceFactory, capabilities: &Capabilities) -> SuiteReport {
    run_cases(
        "persistence",
        suites::persistence::cases(),
        factory,
        capabilities,
    )
    .await
}

/// Runs the [`ExecutionLock`](flatmachines_core::ExecutionLock) suite ([`suites::lock`]).
/// Each open of the factory must be a separate holder.
pub async fn lock(factory: &LockFactory, capabilities: &Capabilities) -> SuiteReport {
    run_cases("lock", suites::lock::cases(), factory, capabilities).await
}

/// Runs the [`ResultBackend`](flatmachines_core::ResultBackend) suite ([`suites::results`]).
pub async fn results(factory: &ResultFactory, capabilities: &Capabilities) -> SuiteReport {
    run_cases("results", suites::results::cases(), factory, capabilities).await
}

/// Runs the [`RegistrationBackend`](flatmachines_core::RegistrationBackend) suite
/// ([`suites::registration`]).
pub async fn registration(
    factory: &RegistrationFactory,
    capabilities: &Capabilities,
) -> SuiteReport {
    run_cases(
        "registration",
        suites::registration::cases(),
        factory,
        capabilities,
    )
    .await
}

/// Runs the [`WorkBackend`](flatmachines_core::WorkBackend)/[`WorkPool`](flatmachines_core::WorkPool)
/// suite ([`suites::work`]).
pub async fn work(factory: &WorkFactory, capabilities: &Capabilities) -> SuiteReport {
    run_cases("work", suites::work::cases(), factory, capabilities).await
}

/// Runs the machine-level suite ([`suites::machines`]): the YAML corpus on the persistence
/// backend, compared with the in-memory backend.
pub async fn machines(factory: &PersistenceFactory, capabilities: &Capabilities) -> SuiteReport {
    run_cases("machines", suites::machines::cases(), factory, capabilities).await
}
