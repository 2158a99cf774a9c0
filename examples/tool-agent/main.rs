//! Runs `examples/tool-agent`: an agent in a tool loop whose tools come from an MCP server
//! (`notes_server.py`, started by the run) and from this program (`word_count`).
//!
//! ```sh
//! cargo run -p flatmachines --example tool-agent            # offline, a scripted model
//! cargo run -p flatmachines --example tool-agent -- --live  # the model of profiles.yml
//! ```

#[path = "mock_model.rs"]
mod mock_model;

use std::path::Path;

use flatmachines::{JsonMap, Machine, RunOptions};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let live = std::env::args().any(|arg| arg == "--live");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tool-agent");
    let machine = Machine::from_file(dir.join("machine.yml"))?;
    let mut runtime = flatmachines::runtime().tool(
        "word_count",
        "Counts the words of a text",
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        |args, _id| async move {
            let text = args["text"].as_str().ok_or("`text` must be a string")?;
            Ok::<_, String>(json!(text.split_whitespace().count()))
        },
    );
    // Offline, the model is the scripted server, through a profiles file naming it.
    let scratch = std::env::temp_dir().join(format!("tool-agent-{}", std::process::id()));
    if !live {
        let url = mock_model::start().await?;
        std::fs::create_dir_all(&scratch)?;
        let profiles = scratch.join("profiles.yml");
        std::fs::write(
            &profiles,
            format!(
                "spec: flatprofiles\nspec_version: \"1.0.0\"\ndata:\n  model_profiles:\n    mock: {{provider: openai, name: mock, base_url: '{url}', api_key_env: \"\"}}\n  default: mock\n"
            ),
        )?;
        runtime = runtime.profiles_file(profiles);
    }
    let outcome = runtime
        .build()
        .run(&machine, JsonMap::new(), RunOptions::default())
        .await;
    let _ = std::fs::remove_dir_all(&scratch);
    let outcome = outcome?;
    println!("{}", serde_json::to_string_pretty(&outcome.output)?);
    eprintln!(
        "{} model calls, {} steps",
        outcome.total_api_calls, outcome.steps
    );
    Ok(())
}
