//! PostgreSQL benchmarks, against `FLATMACHINES_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), each run in a schema of its own that is
//! dropped when it ends:
//!
//! - `claims`: work-pool claims per second with 1 and 4 workers (tasks sharing one store of
//!   4 pooled connections), claiming until a pool of 2 000 items is empty;
//! - `raw_skip_locked`: the same number of bare `UPDATE … WHERE id = (SELECT … FOR UPDATE
//!   SKIP LOCKED LIMIT 1) RETURNING id` statements on the same table and index, one prepared
//!   statement on one plain connection per worker: the floor any SKIP LOCKED claim pays;
//! - `loop_steps_postgres_checkpoints`: `bench/loop_postgres.yml`, the two-state loop with
//!   PostgreSQL checkpoints and an advisory lock, time per step.
//!
//! `cargo bench -p flatmachines-postgres --bench claims`; `benches/pgbench_claim.sql` is the
//! bare statement for `pgbench` (see docs/benchmarks.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use divan::Bencher;
use divan::counter::ItemsCount;
use flatmachines_core::WorkPool;
use flatmachines_engine::{Machine, RunOptions, Runtime};
use flatmachines_postgres::{DEFAULT_URL, PostgresConfig, PostgresStore};
use serde_json::{Value, json};
use tokio_postgres::NoTls;

fn main() {
    divan::main();
}

const ITEMS: u64 = 2000;

fn url() -> String {
    std::env::var("FLATMACHINES_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A store on a schema of its own, dropped when the bench ends.
struct Scratch {
    store: PostgresStore,
}

impl Scratch {
    fn new(rt: &tokio::runtime::Runtime) -> Scratch {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = PostgresConfig::from_url(&url())
            .and_then(|c| c.with_schema(format!("fmbench_{}", &id[..12])))
            .expect("the bench URL parses")
            .with_pool_size(4)
            .with_query_timeout(Duration::from_secs(60));
        let store = rt
            .block_on(PostgresStore::connect(config))
            .expect("PostgreSQL answers");
        Scratch { store }
    }

    fn table(&self) -> String {
        format!("\"{}\".work_items", self.store.config().schema())
    }

    /// A plain connection of the driver, outside the store.
    async fn connection(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&url(), NoTls)
            .await
            .expect("a connection");
        tokio::spawn(connection);
        client
    }

    /// A new pool name with `ITEMS` pending items, inserted in one statement.
    fn filled_pool(&self, rt: &tokio::runtime::Runtime) -> String {
        let name = uuid::Uuid::new_v4().simple().to_string();
        let sql = format!(
            "INSERT INTO {} (pool, id, data, status, max_retries)
             SELECT $1, n::text, '{{\"n\": 1}}', 'pending', 3 FROM generate_series(1, $2::bigint) n",
            self.table()
        );
        rt.block_on(async {
            let client = self.connection().await;
            client
                .execute(&sql, &[&name, &i64::try_from(ITEMS).expect("small")])
                .await
                .expect("fill the pool");
        });
        name
    }

    fn drop_schema(self, rt: &tokio::runtime::Runtime) {
        rt.block_on(self.store.drop_schema()).expect("drop schema");
    }
}

/// Runs `workers` tasks until each finds nothing more to take; checks the total.
async fn drain<F, Fut>(workers: usize, work: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let tasks: Vec<_> = (0..workers).map(|w| tokio::spawn(work(w))).collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("a worker");
    }
    assert_eq!(total, ITEMS);
}

#[divan::bench(args = [1, 4], sample_count = 20)]
fn claims(bencher: Bencher, workers: usize) {
    let rt = tokio();
    let scratch = Scratch::new(&rt);
    let work = scratch.store.work();
    bencher
        .counter(ItemsCount::new(ITEMS))
        .with_inputs(|| {
            let name = scratch.filled_pool(&rt);
            (0..workers)
                .map(|_| work.postgres_pool(&name))
                .collect::<Vec<_>>()
        })
        .bench_local_values(|pools| {
            rt.block_on(async {
                let pools = Arc::new(std::sync::Mutex::new(pools));
                drain(workers, |w| {
                    let pool = pools.lock().expect("pools").pop().expect("one per worker");
                    async move {
                        let me = format!("w{w}");
                        let mut claimed = 0u64;
                        while pool.claim(&me).await.expect("claim").is_some() {
                            claimed += 1;
                        }
                        claimed
                    }
                })
                .await;
            })
        });
    scratch.drop_schema(&rt);
}

#[divan::bench(args = [1, 4], sample_count = 20)]
fn raw_skip_locked(bencher: Bencher, workers: usize) {
    let rt = tokio();
    let scratch = Scratch::new(&rt);
    let table = scratch.table();
    let claim = format!(
        "UPDATE {table} SET status = 'claimed', claimed_by = $2
         WHERE pool = $1 AND id = (
             SELECT id FROM {table} WHERE pool = $1 AND status = 'pending'
             ORDER BY queue_order LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id"
    );
    bencher
        .counter(ItemsCount::new(ITEMS))
        .with_inputs(|| {
            let name = scratch.filled_pool(&rt);
            let clients = rt.block_on(async {
                let mut clients = Vec::new();
                for _ in 0..workers {
                    let client = scratch.connection().await;
                    let statement = client.prepare(&claim).await.expect("prepare");
                    clients.push((client, statement));
                }
                clients
            });
            (name, clients)
        })
        .bench_local_values(|(name, clients)| {
            rt.block_on(async {
                let clients = Arc::new(std::sync::Mutex::new(clients));
                drain(workers, |w| {
                    let (client, statement) = clients
                        .lock()
                        .expect("clients")
                        .pop()
                        .expect("one per worker");
                    let name = name.clone();
                    async move {
                        let me = format!("w{w}");
                        let mut claimed = 0u64;
                        while client
                            .query_opt(&statement, &[&name, &me])
                            .await
                            .expect("claim")
                            .is_some()
                        {
                            claimed += 1;
                        }
                        claimed
                    }
                })
                .await;
            })
        });
    scratch.drop_schema(&rt);
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

/// `bench/loop_postgres.yml`: the loop with PostgreSQL checkpoints and an advisory lock.
#[divan::bench(sample_count = 20)]
fn loop_steps_postgres_checkpoints(bencher: Bencher) {
    const STEPS: u64 = 200;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../bench/loop_postgres.yml");
    let machine = Machine::from_file(path).expect("benchmark workload loads");
    let rt = tokio();
    let scratch = Scratch::new(&rt);
    let runner = Runtime::builder()
        .persistence(Arc::new(scratch.store.persistence()))
        .lock(Arc::new(scratch.store.lock()))
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
    drop(runner);
    scratch.drop_schema(&rt);
}
