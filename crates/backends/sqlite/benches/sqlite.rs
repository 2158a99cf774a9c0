//! SQLite backend benchmarks:
//!
//! - `checkpoint`: one checkpoint write (a 2.5 KB snapshot and the `latest` pointer, one
//!   `save_many`), at `synchronous=normal` (the default) and `full`;
//! - `loop_steps`: `bench/loop_sqlite.yml` (the side-by-side loop workload with
//!   `persistence: {backend: sqlite}`) run through the engine, three checkpoints per step, in a
//!   fresh database per sample. Time per step = 1 / throughput;
//! - `claims`: claim and complete every item of a pool, with 1 or 4 workers sharing one handle
//!   (they queue for its write connection) or on a handle each (they contend in SQLite).
//!
//! `cargo bench -p flatmachines-sqlite --bench sqlite`. Claims across processes:
//! `cargo run --release -p flatmachines-sqlite --example claim_rate -- 4 4000`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use divan::Bencher;
use divan::counter::ItemsCount;
use flatmachines_core::{PersistenceBackend, PushOptions, WorkBackend, WorkPool};
use flatmachines_engine::{Machine, RunOptions, RunStatus, Runtime};
use flatmachines_sqlite::{SqliteConfig, SqliteDatabase, Synchronous};
use serde_json::{Value, json};

fn main() {
    divan::main();
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn synchronous(name: &str) -> Synchronous {
    match name {
        "full" => Synchronous::Full,
        _ => Synchronous::Normal,
    }
}

/// A fresh database in a temporary directory, schema created.
fn database(
    rt: &tokio::runtime::Runtime,
    sync: Synchronous,
) -> (tempfile::TempDir, SqliteDatabase) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SqliteConfig::new(dir.path().join("bench.sqlite")).synchronous(sync);
    let db = rt.block_on(SqliteDatabase::connect(config)).expect("opens");
    (dir, db)
}

/// A snapshot of the loop workload's size: the 50-key payload and the run's bookkeeping.
fn snapshot() -> Bytes {
    let payload: serde_json::Map<String, Value> = (0..50)
        .map(|i| (format!("k{i}"), Value::String("v".repeat(20))))
        .collect();
    let snapshot = json!({
        "execution_id": "0b7c4c1e-0d5e-4a8e-9f57-0c2c8f6f3f11",
        "machine_name": "loop-bench",
        "spec_version": "1.0.0",
        "current_state": "ping",
        "context": {"target": "x", "payload": payload},
        "step": 1,
        "created_at": "2026-11-23T12:00:00.000000+00:00",
        "event": "execute",
        "output": null,
        "total_api_calls": 0,
        "total_cost": 0.0,
        "parent_execution_id": null,
        "pending_launches": null
    });
    Bytes::from(serde_json::to_vec(&snapshot).expect("encodes"))
}

mod checkpoint {
    use super::*;

    /// One checkpoint: the snapshot under a new step key, then the pointer to it.
    #[divan::bench(args = ["normal", "full"], sample_count = 30, sample_size = 20)]
    fn save_many(bencher: Bencher, sync: &str) {
        let rt = tokio();
        let (_dir, db) = database(&rt, synchronous(sync));
        let store = db.persistence();
        let value = snapshot();
        let step = AtomicU64::new(0);
        bencher.bench_local(|| {
            let n = step.fetch_add(1, Ordering::Relaxed);
            let key = format!("exec/step_{n:06}_execute.json");
            let pointer = Bytes::from(key.clone());
            rt.block_on(store.save_many(&[(&key, value.clone()), ("exec/latest", pointer)]))
                .expect("saves");
        });
    }
}

mod loop_steps {
    use super::*;

    const STEPS: u64 = 200;

    fn loop_input() -> serde_json::Map<String, Value> {
        let payload: serde_json::Map<String, Value> = (0..50)
            .map(|i| (format!("k{i}"), Value::String("v".repeat(20))))
            .collect();
        match json!({"target": "x", "payload": payload}) {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        }
    }

    fn run(bencher: Bencher, sync: Synchronous) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../bench/loop_sqlite.yml");
        let machine = Machine::from_file(path).expect("benchmark workload loads");
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
            .with_inputs(|| {
                let (dir, db) = database(&rt, sync);
                let runner = Runtime::builder()
                    .persistence(Arc::new(db.persistence()))
                    .build()
                    .prepare(&machine)
                    .expect("prepares");
                (dir, runner)
            })
            .bench_local_values(|(dir, runner)| {
                let outcome = rt
                    .block_on(runner.run(input.clone(), options.clone()))
                    .expect("runs");
                assert!(matches!(outcome.status, RunStatus::StepLimit { .. }));
                (dir, outcome)
            });
    }

    /// `bench/loop_sqlite.yml` with the default `synchronous=normal`.
    #[divan::bench(sample_count = 20)]
    fn sqlite_checkpoints(bencher: Bencher) {
        run(bencher, Synchronous::Normal);
    }

    /// The same with `synchronous=full`: every checkpoint waits for the disk.
    #[divan::bench(sample_count = 5)]
    fn sqlite_checkpoints_sync_full(bencher: Bencher) {
        run(bencher, Synchronous::Full);
    }
}

mod claims {
    use super::*;

    const ITEMS: u64 = 400;

    /// Claims and completes every item with `workers` tasks; `separate` gives each its own
    /// handle (and write connection).
    fn drain(bencher: Bencher, workers: usize, separate: bool) {
        let rt = tokio();
        bencher
            .counter(ItemsCount::new(ITEMS))
            .with_inputs(|| {
                let (dir, db) = database(&rt, Synchronous::Normal);
                let pool = db.work().pool("jobs");
                rt.block_on(async {
                    for n in 0..ITEMS {
                        pool.push(json!({"n": n}), PushOptions::default())
                            .await
                            .expect("pushes");
                    }
                });
                let pools: Vec<Arc<dyn WorkPool>> = (0..workers)
                    .map(|_| match separate {
                        true => SqliteDatabase::open(db.config().clone())
                            .expect("opens")
                            .work()
                            .pool("jobs"),
                        false => Arc::clone(&pool),
                    })
                    .collect();
                (dir, pools)
            })
            .bench_local_values(|(dir, pools)| {
                rt.block_on(async {
                    let tasks: Vec<_> = pools
                        .into_iter()
                        .enumerate()
                        .map(|(w, pool)| {
                            tokio::spawn(async move {
                                let worker = format!("w{w}");
                                while let Some(item) = pool.claim(&worker).await.expect("claims") {
                                    pool.complete(&item.id, None).await.expect("completes");
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("worker");
                    }
                });
                dir
            });
    }

    /// Claim and complete, workers sharing one handle.
    #[divan::bench(args = [1, 4], sample_count = 20)]
    fn shared_handle(bencher: Bencher, workers: usize) {
        drain(bencher, workers, false);
    }

    /// Claim and complete, each worker on a handle of its own.
    #[divan::bench(args = [4], sample_count = 20)]
    fn handle_each(bencher: Bencher, workers: usize) {
        drain(bencher, workers, true);
    }
}
