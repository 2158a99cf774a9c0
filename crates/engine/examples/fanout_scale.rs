//! Runs `bench/fanout.yml` over N children once and reports the wall time and the process's
//! peak resident memory (Linux), for the "10 000 children in < 1 s and < 200 MB" target.
//!
//! `cargo run --release -p flatmachines-engine --example fanout_scale -- 10000`

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use flatmachines_engine::{Machine, RunOptions, Runtime};

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let children: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/fanout.yml");
    let machine = Machine::from_file(path)?;
    let runner = Runtime::default().prepare(&machine)?;
    let input = match json!({ "xs": (0..children).collect::<Vec<_>>() }) {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let outcome = rt.block_on(runner.run(input, RunOptions::default()))?;
    let elapsed = started.elapsed();
    println!(
        "{children} children: {:.1} ms ({:.2} µs per child), peak RSS {} MiB, output n = {}",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e6 / children as f64,
        peak_rss_kib().map_or("?".to_owned(), |k| (k / 1024).to_string()),
        outcome.output["n"]
    );
    Ok(())
}
