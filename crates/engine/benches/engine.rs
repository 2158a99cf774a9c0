//! Engine benchmarks on the side-by-side workloads of `bench/` (the same YAML the Python
//! reference is timed on):
//!
//! - `loop_steps`: `bench/loop.yml`, a two-state loop over a 50-key context, run for a fixed
//!   number of steps. Throughput is states per second; time per step = 1 / throughput.
//! - `fanout_children`: `bench/fanout.yml`, a `foreach` over N children that each render one
//!   template. Throughput is children per second.
//!
//! `cargo bench -p flatmachines-engine --bench engine`

use std::path::Path;

use divan::Bencher;
use divan::counter::ItemsCount;
use serde_json::{Value, json};

use flatmachines_engine::{Machine, RunOptions, RunStatus, Runner, Runtime};

fn main() {
    divan::main();
}

fn workload(name: &str) -> Machine {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench")
        .join(name);
    Machine::from_file(path).expect("benchmark workload loads")
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn loop_input() -> serde_json::Map<String, Value> {
    let payload: serde_json::Map<String, Value> = (0..50)
        .map(|i| (format!("k{i}"), Value::String("v".repeat(20))))
        .collect();
    match json!({"target": "x", "payload": payload}) {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// A fresh runtime per run, so in-memory checkpoints do not pile up across samples.
fn runner(machine: &Machine) -> Runner {
    Runtime::default().prepare(machine).expect("prepares")
}

const STEPS: u64 = 1000;

/// Runs `machine` for [`STEPS`] steps per sample.
fn bench_loop(bencher: Bencher, machine: &Machine) {
    let rt = tokio();
    let input = loop_input();
    let options = RunOptions {
        execution_id: None,
        max_steps: Some(STEPS),
        parent_execution_id: None,
        ..Default::default()
    };
    bencher
        .counter(ItemsCount::new(STEPS))
        .with_inputs(|| runner(machine))
        .bench_local_values(|runner| {
            let outcome = rt
                .block_on(runner.run(input.clone(), options.clone()))
                .expect("runs");
            assert!(matches!(outcome.status, RunStatus::StepLimit { .. }));
            outcome
        });
}

/// The loop with the default in-memory checkpoints (three per step).
#[divan::bench]
fn loop_steps_memory_checkpoints(bencher: Bencher) {
    bench_loop(bencher, &workload("loop.yml"));
}

/// The loop with `persistence: {enabled: false}`.
#[divan::bench]
fn loop_steps_no_persistence(bencher: Bencher) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/loop.yml");
    let text = std::fs::read_to_string(path).expect("workload");
    let text = text.replace(
        "  name: loop-bench\n",
        "  name: loop-bench\n  persistence: {enabled: false}\n",
    );
    bench_loop(bencher, &Machine::from_yaml(&text, ".").expect("loads"));
}

/// The loop with fsync-durable local-file checkpoints (`bench/loop_local.yml`), in a fresh
/// directory per sample.
#[divan::bench(sample_count = 10)]
fn loop_steps_local_checkpoints(bencher: Bencher) {
    const LOCAL_STEPS: u64 = 100;
    let machine = workload("loop_local.yml");
    let rt = tokio();
    let input = loop_input();
    let options = RunOptions {
        execution_id: None,
        max_steps: Some(LOCAL_STEPS),
        parent_execution_id: None,
        ..Default::default()
    };
    bencher
        .counter(ItemsCount::new(LOCAL_STEPS))
        .with_inputs(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = flatmachines_local::LocalFileBackend::new(dir.path()).expect("store");
            let runner = Runtime::builder()
                .persistence(std::sync::Arc::new(store))
                .build()
                .prepare(&machine)
                .expect("prepares");
            (dir, runner)
        })
        .bench_local_values(|(dir, runner)| {
            let outcome = rt
                .block_on(runner.run(input.clone(), options.clone()))
                .expect("runs");
            (dir, outcome)
        });
}

/// `foreach` over N children, each a two-state machine rendering one template.
#[divan::bench(args = [100, 1000, 10_000])]
fn fanout_children(bencher: Bencher, children: u64) {
    let machine = workload("fanout.yml");
    let rt = tokio();
    let xs: Vec<u64> = (0..children).collect();
    let input = match json!({ "xs": xs }) {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    };
    bencher
        .counter(ItemsCount::new(children))
        .with_inputs(|| runner(&machine))
        .bench_local_values(|runner| {
            let outcome = rt
                .block_on(runner.run(input.clone(), RunOptions::default()))
                .expect("runs");
            assert_eq!(outcome.output["n"], json!(children));
            outcome
        });
}
