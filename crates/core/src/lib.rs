//! Spec types, runtime traits and errors of the FlatMachines runtime.
//!
//! This crate has no I/O. It holds:
//!
//! - the **config model** of the three documents a user writes — `spec: flatmachine`
//!   ([`MachineConfig`]), `spec: flatagent` ([`AgentConfig`]) and `spec: flatprofiles`
//!   ([`ProfilesConfig`]) — with envelope checks and field-path error messages
//!   ([`config`]);
//! - the **wire types** that cross process boundaries: [`MachineSnapshot`], [`LaunchIntent`],
//!   [`AgentResult`], and the worker/work types of [`distributed`];
//! - one **trait per runtime interface** of the spec (`flatagents-runtime`), each object safe:
//!   [`ExecutionLock`], [`PersistenceBackend`], [`ResultBackend`], [`RegistrationBackend`],
//!   [`WorkBackend`]/[`WorkPool`], [`AgentExecutor`], [`AgentAdapter`], [`ExecutionType`],
//!   [`MachineHooks`], [`MachineInvoker`], [`LlmBackend`], [`RunObserver`] and [`ToolProvider`];
//! - the shared [`Error`] that every backend maps its driver errors into.
//!
//! Every trait's rustdoc has a **Contract** section: what each implementation must guarantee.
//! The conformance suite checks those clauses.

pub mod agent;
pub mod config;
mod context;
pub mod distributed;
mod error;
pub mod hooks;
pub mod invoker;
pub mod json;
pub mod limits;
pub mod llm;
pub mod lock;
pub mod observe;
pub mod persistence;
pub mod results;
pub mod schema;
pub mod snapshot;
pub mod tool_servers;
pub mod tools;
mod worker_filter;

pub use agent::{
    AdapterContext, AgentAdapter, AgentError, AgentExecutor, AgentResult, AgentToolCall, AgentTurn,
    ExecutionType,
};
pub use config::{
    AgentConfig, AgentRef, ConfigError, ConfigWarning, MachineConfig, ProfilesConfig,
};
pub use context::Context;
pub use distributed::{
    PushOptions, RegistrationBackend, WorkBackend, WorkCounts, WorkItem, WorkPool, WorkStatus,
    WorkerFilter, WorkerRecord, WorkerRegistration,
};
pub use error::{Error, Result};
pub use hooks::{MachineHooks, StateError};
pub use invoker::{InvokeRequest, MachineInvoker};
pub use limits::{Limit, LimitError, Limits};
pub use llm::LlmBackend;
pub use lock::ExecutionLock;
pub use observe::{RunEvent, RunObserver};
pub use persistence::{PersistenceBackend, validate_key, validate_prefix};
pub use results::{ReadOptions, ResultBackend, ResultUri, result_uri};
pub use snapshot::{
    CheckpointEvent, LaunchIntent, MachineSnapshot, ToolLoopJournal, ToolLoopState,
};
pub use tool_servers::{
    DeclaredServers, ServedTools, ToolInfo, ToolServerError, ToolServerLauncher, ToolServerPool,
};
pub use tools::{ToolCallId, ToolCallResult, ToolError, ToolOutcome, ToolProvider, ToolRequest};
pub use worker_filter::{heartbeat_older_than, parse_timestamp};

/// The spec version this runtime implements.
pub const SPEC_VERSION: &str = "1.0.0";

/// A JSON object, the shape of contexts, inputs and outputs.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Every runtime trait is usable as a trait object, shared across tasks.
    #[test]
    fn runtime_traits_are_object_safe() {
        fn shareable<T: ?Sized + Send + Sync>(_: Option<Arc<T>>) {}
        shareable::<dyn ExecutionLock>(None);
        shareable::<dyn PersistenceBackend>(None);
        shareable::<dyn ResultBackend>(None);
        shareable::<dyn RegistrationBackend>(None);
        shareable::<dyn WorkBackend>(None);
        shareable::<dyn WorkPool>(None);
        shareable::<dyn AgentExecutor>(None);
        shareable::<dyn AgentAdapter>(None);
        shareable::<dyn ExecutionType>(None);
        shareable::<dyn MachineHooks>(None);
        shareable::<dyn MachineInvoker>(None);
        shareable::<dyn LlmBackend>(None);
        shareable::<dyn RunObserver>(None);
        shareable::<dyn ToolProvider>(None);
    }
}
