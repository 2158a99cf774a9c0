//! S3 benchmarks against `FLATMACHINES_TEST_S3_URL` (default the local emulator on
//! 127.0.0.1:5000 that `cargo xtask test` starts), each under a prefix of its own that is
//! deleted afterwards. Against an emulator these are local figures: they measure this crate
//! and the emulator, not S3.
//!
//! - `loop_steps_s3_checkpoints`: `bench/loop_s3.yml`, the two-state loop with S3
//!   checkpoints (three per step, a snapshot and the `latest` pointer each), time per step;
//! - `loop_steps_s3_plain_puts`: the same with conditional snapshot creates turned off, to
//!   price `If-None-Match`;
//! - `loop_steps_memory`: the same loop on the in-memory store, the floor;
//! - `put_round_trip`: one `save` of a snapshot-sized value to a pointer-like key, the unit a
//!   step pays six of.
//!
//! `cargo bench -p flatmachines-s3 --bench loop_s3` (see docs/benchmarks.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use divan::Bencher;
use divan::counter::ItemsCount;
use flatmachines_core::PersistenceBackend;
use flatmachines_engine::{Machine, RunOptions, Runtime};
use flatmachines_s3::{S3Backend, S3Config};
use serde_json::{Value, json};

fn main() {
    divan::main();
}

const STEPS: u64 = 100;

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A store under a prefix of its own (emulator credentials on loopback when the
/// environment has none), whose objects are deleted when it is dropped.
struct Scratch {
    backend: S3Backend,
    runtime: tokio::runtime::Runtime,
}

impl Scratch {
    fn new(conditional: bool) -> Scratch {
        let url = std::env::var("FLATMACHINES_TEST_S3_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                "s3://flatmachines-test?endpoint=http://127.0.0.1:5000&region=us-east-1".to_owned()
            });
        let base = S3Config::from_url(&url).expect("the bench URL parses");
        let prefix = format!(
            "{}bench-{}",
            base.prefix(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut config = base
            .with_prefix(&prefix)
            .expect("a prefix")
            .with_conditional_snapshots(conditional)
            .with_connect_timeout(Duration::from_secs(2));
        if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
            config = config.with_credentials("test", "test");
        }
        let backend = S3Backend::new(config);
        let runtime = tokio();
        runtime.block_on(async {
            if backend.check().await.is_err() {
                backend.create_bucket().await.expect("the bench bucket");
            }
        });
        Scratch { backend, runtime }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.runtime.block_on(self.backend.delete_prefix(""));
    }
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

fn loop_steps(bencher: Bencher, store: Arc<dyn PersistenceBackend>, rt: &tokio::runtime::Runtime) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../bench/loop_s3.yml");
    let machine = Machine::from_file(path).expect("benchmark workload loads");
    let runner = Runtime::builder()
        .persistence(store)
        .build()
        .prepare(&machine)
        .expect("prepares");
    let input = loop_input();
    let options = RunOptions {
        execution_id: None,
        max_steps: Some(STEPS),
        parent_execution_id: None,
        ..Default::default()
    };
    bencher.counter(ItemsCount::new(STEPS)).bench_local(|| {
        rt.block_on(runner.run(input.clone(), options.clone()))
            .expect("runs")
    });
}

/// `bench/loop_s3.yml` with S3 checkpoints, snapshots created with `If-None-Match: *`.
#[divan::bench(sample_count = 10)]
fn loop_steps_s3_checkpoints(bencher: Bencher) {
    let scratch = Scratch::new(true);
    loop_steps(bencher, Arc::new(scratch.backend.clone()), &scratch.runtime);
}

/// The same with plain puts for snapshots.
#[divan::bench(sample_count = 10)]
fn loop_steps_s3_plain_puts(bencher: Bencher) {
    let scratch = Scratch::new(false);
    loop_steps(bencher, Arc::new(scratch.backend.clone()), &scratch.runtime);
}

/// The same loop on the in-memory store.
#[divan::bench(sample_count = 10)]
fn loop_steps_memory(bencher: Bencher) {
    let rt = tokio();
    loop_steps(
        bencher,
        Arc::new(flatmachines_memory::MemoryBackend::new()),
        &rt,
    );
}

/// One `save` of a snapshot-sized value (about 1.6 KB) to a key that is not a snapshot.
#[divan::bench(sample_count = 10, sample_size = 20)]
fn put_round_trip(bencher: Bencher) {
    let scratch = Scratch::new(true);
    let value = Bytes::from(vec![b'x'; 1600]);
    bencher.bench_local(|| {
        scratch
            .runtime
            .block_on(scratch.backend.save("exec/latest", value.clone()))
            .expect("saves")
    });
}
