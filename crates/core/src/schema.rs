//! JSON Schemas of the spec documents, generated from the config model, so the schemas in
//! `spec/` and what the runtime accepts cannot drift apart.
//!
//! The schemas are lenient where the runtime is: unknown fields are allowed (the runtime warns
//! about them), `null` is accepted where the runtime treats it as empty, and every shape the
//! runtime reads (a state name or a mapping for `on_error`, …) is described.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{AgentData, BackendConfig, MachineData, ProfilesData};
use crate::{AgentResult, JsonMap, LaunchIntent, MachineSnapshot, WorkItem, WorkerFilter};
use crate::{WorkerRecord, WorkerRegistration};

#[derive(Serialize, Deserialize, JsonSchema)]
enum MachineSpec {
    #[serde(rename = "flatmachine")]
    FlatMachine,
}

#[derive(Serialize, Deserialize, JsonSchema)]
enum AgentSpec {
    #[serde(rename = "flatagent")]
    FlatAgent,
}

#[derive(Serialize, Deserialize, JsonSchema)]
enum ProfilesSpec {
    #[serde(rename = "flatprofiles")]
    FlatProfiles,
}

#[derive(Serialize, Deserialize, JsonSchema)]
enum RuntimeSpec {
    #[serde(rename = "flatagents-runtime")]
    FlatAgentsRuntime,
}

/// A state machine: states, transitions, agents and child machines.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(title = "FlatMachine")]
struct MachineDocument {
    /// Always `flatmachine`.
    spec: MachineSpec,
    /// The spec version written for (default 1.0.0).
    spec_version: Option<String>,
    /// The machine.
    data: MachineData,
    /// Free-form metadata.
    metadata: Option<JsonMap>,
}

/// One LLM call: model, prompts and output schema.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(title = "FlatAgent")]
struct AgentDocument {
    /// Always `flatagent`.
    spec: AgentSpec,
    /// The spec version written for (default 1.0.0).
    spec_version: Option<String>,
    /// The agent.
    data: AgentData,
    /// Free-form metadata (execution strategies read `mdap`, `parsing` and `validation`).
    metadata: Option<JsonMap>,
}

/// Named model configurations.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(title = "FlatProfiles")]
struct ProfilesDocument {
    /// Always `flatprofiles`.
    spec: ProfilesSpec,
    /// The spec version written for (default 1.0.0).
    spec_version: Option<String>,
    /// The profiles.
    data: ProfilesData,
    /// Free-form metadata.
    metadata: Option<JsonMap>,
}

/// The data the runtime interfaces exchange (checkpoints, results, workers, work items), as
/// the `flatagents-runtime` spec groups them.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(title = "FlatAgents runtime")]
struct RuntimeDocument {
    /// Always `flatagents-runtime`.
    spec: RuntimeSpec,
    /// The spec version.
    spec_version: String,
    /// A checkpoint.
    machine_snapshot: Option<MachineSnapshot>,
    /// An outbox entry.
    launch_intent: Option<LaunchIntent>,
    /// An agent call's result.
    agent_result: Option<AgentResult>,
    /// `settings.backends`.
    backend_config: Option<BackendConfig>,
    /// A worker registering.
    worker_registration: Option<WorkerRegistration>,
    /// A registered worker.
    worker_record: Option<WorkerRecord>,
    /// A worker query.
    worker_filter: Option<WorkerFilter>,
    /// A work item.
    work_item: Option<WorkItem>,
}

fn generate<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let schema: Schema = generator.into_root_schema_for::<T>();
    schema.to_value()
}

/// The schema of `spec: flatmachine` documents.
pub fn machine_schema() -> Value {
    generate::<MachineDocument>()
}

/// The schema of `spec: flatagent` documents.
pub fn agent_schema() -> Value {
    generate::<AgentDocument>()
}

/// The schema of `spec: flatprofiles` documents.
pub fn profiles_schema() -> Value {
    generate::<ProfilesDocument>()
}

/// The schema of the runtime interfaces' data (`flatagents-runtime`).
pub fn runtime_schema() -> Value {
    generate::<RuntimeDocument>()
}

/// Every schema with the file name it has under `spec/`.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("flatmachine.schema.json", machine_schema()),
        ("flatagent.schema.json", agent_schema()),
        ("flatprofiles.schema.json", profiles_schema()),
        ("flatagents-runtime.schema.json", runtime_schema()),
    ]
}

/// The schema for a document whose `spec` is `spec`, if it is one of the three configs.
pub fn for_spec(spec: &str) -> Option<Value> {
    match spec {
        "flatmachine" => Some(machine_schema()),
        "flatagent" => Some(agent_schema()),
        "flatprofiles" => Some(profiles_schema()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `spec/` must hold what the types generate. `cargo xtask schema` rewrites it (it runs
    /// this test with `FLATMACHINES_UPDATE_SPEC=1`).
    #[test]
    fn spec_directory_is_up_to_date() {
        let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec");
        let update = std::env::var_os("FLATMACHINES_UPDATE_SPEC").is_some();
        for (name, schema) in all() {
            let expected = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            if update {
                std::fs::create_dir_all(&spec).unwrap();
                std::fs::write(spec.join(name), &expected).unwrap();
                continue;
            }
            let found = std::fs::read_to_string(spec.join(name)).unwrap_or_default();
            assert!(
                found == expected,
                "spec/{name} is stale: run `cargo xtask schema` and commit the result"
            );
        }
    }
}
