//! Runs the trip planner of `examples/tools`: a machine whose agent calls tools registered
//! here, in Rust.
//!
//! ```sh
//! export OPENAI_API_KEY=sk-...
//! cargo run -p flatmachines --example tools -- examples/tools/machine.yml '{"city": "Porto"}'
//! ```

#[path = "tools.rs"]
mod tools;

use flatmachines::{JsonMap, Machine, RunOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .unwrap_or_else(|| "examples/tools/machine.yml".to_owned());
    let input: JsonMap = match args.next() {
        Some(text) => serde_json::from_str(&text)?,
        None => JsonMap::new(),
    };
    let machine = Machine::from_file(&file)?;
    let runtime = tools::with_tools(flatmachines::runtime()).build();
    let outcome = runtime.run(&machine, input, RunOptions::default()).await?;
    println!("{}", serde_json::to_string_pretty(&outcome.output)?);
    eprintln!(
        "{} model calls, {} steps",
        outcome.total_api_calls, outcome.steps
    );
    Ok(())
}
