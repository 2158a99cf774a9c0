//! Redis benchmarks, against `FLATMACHINES_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379/0`):
//!
//! - `claims`: work-pool claims per second with 1 and 4 workers (each worker a connection of
//!   its own, claiming until the pool is empty), next to `raw_eval`, the same number of
//!   trivial Lua `EVALSHA`s (pop an id, set one hash field) sent the same way — the floor any
//!   atomic claim script pays.
//! - `loop_steps_redis_checkpoints`: `bench/loop_redis.yml`, the two-state loop with Redis
//!   checkpoints (three per step), time per step.
//!
//! `cargo bench -p flatmachines-redis --bench claims`; compare with `redis-benchmark -t
//! set,lpush` and `redis-benchmark … EVAL` run in the same session (see docs/benchmarks.md).

use std::path::Path;
use std::sync::{Arc, LazyLock};

use divan::Bencher;
use divan::counter::ItemsCount;
use flatmachines_core::{PushOptions, WorkPool};
use flatmachines_engine::{Machine, RunOptions, Runtime};
use flatmachines_redis::{DEFAULT_URL, RedisClient};
use serde_json::{Value, json};

fn main() {
    divan::main();
}

const ITEMS: u64 = 2000;

fn url() -> String {
    std::env::var("FLATMACHINES_TEST_REDIS_URL")
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

/// A client in a namespace of its own, whose keys are deleted when the bench ends.
struct Scratch {
    client: RedisClient,
}

impl Scratch {
    fn new(rt: &tokio::runtime::Runtime) -> Scratch {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let url = format!("{}?namespace=flatmachines:bench-{}", url(), &id[..12]);
        let client = RedisClient::open(&url).expect("a client");
        rt.block_on(client.ping()).expect("Redis answers");
        Scratch { client }
    }

    /// A fresh client (connection) in the same namespace.
    fn worker(&self) -> RedisClient {
        RedisClient::new(self.client.config().clone()).expect("a client")
    }
}

/// A pool holding `ITEMS` pending items.
fn filled_pool(rt: &tokio::runtime::Runtime, scratch: &Scratch) -> String {
    let name = uuid::Uuid::new_v4().simple().to_string();
    let pool = scratch.client.work().redis_pool(&name);
    rt.block_on(async {
        for n in 0..ITEMS {
            pool.push(json!({"n": n}), PushOptions::default())
                .await
                .expect("push");
        }
    });
    name
}

#[divan::bench(args = [1, 4], sample_count = 20)]
fn claims(bencher: Bencher, workers: usize) {
    let rt = tokio();
    let scratch = Scratch::new(&rt);
    bencher
        .counter(ItemsCount::new(ITEMS))
        .with_inputs(|| {
            let name = filled_pool(&rt, &scratch);
            (0..workers)
                .map(|_| scratch.worker().work().redis_pool(&name))
                .collect::<Vec<_>>()
        })
        .bench_local_values(|pools| {
            rt.block_on(async {
                let tasks: Vec<_> = pools
                    .into_iter()
                    .enumerate()
                    .map(|(w, pool)| {
                        tokio::spawn(async move {
                            let me = format!("w{w}");
                            let mut claimed = 0u64;
                            while pool.claim(&me).await.expect("claim").is_some() {
                                claimed += 1;
                            }
                            claimed
                        })
                    })
                    .collect();
                let mut total = 0;
                for task in tasks {
                    total += task.await.expect("a worker");
                }
                assert_eq!(total, ITEMS);
            })
        });
    rt.block_on(scratch.client.purge()).expect("purge");
}

/// Pops an id and sets one field of a hash: the least an atomic claim can do.
static RAW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local id = redis.call('LPOP', KEYS[1]) if not id then return false end \
         redis.call('HSET', KEYS[2], id, ARGV[1]) return id",
    )
});

#[divan::bench(args = [1, 4], sample_count = 20)]
fn raw_eval(bencher: Bencher, workers: usize) {
    let rt = tokio();
    let client = redis::Client::open(url()).expect("a client");
    let prefix = format!("flatmachines:bench-raw-{}", uuid::Uuid::new_v4().simple());
    let (list, hash) = (format!("{prefix}:list"), format!("{prefix}:hash"));
    bencher
        .counter(ItemsCount::new(ITEMS))
        .with_inputs(|| {
            rt.block_on(async {
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("a connection");
                let ids: Vec<u64> = (0..ITEMS).collect();
                let _: () = redis::cmd("RPUSH")
                    .arg(&list)
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await
                    .expect("RPUSH");
                let mut conns = Vec::new();
                for _ in 0..workers {
                    conns.push(
                        client
                            .get_multiplexed_async_connection()
                            .await
                            .expect("a connection"),
                    );
                }
                conns
            })
        })
        .bench_local_values(|conns| {
            rt.block_on(async {
                let tasks: Vec<_> = conns
                    .into_iter()
                    .map(|mut conn| {
                        let (list, hash) = (list.clone(), hash.clone());
                        tokio::spawn(async move {
                            let mut popped = 0u64;
                            loop {
                                let id: Option<String> = RAW
                                    .key(&list)
                                    .key(&hash)
                                    .arg("w")
                                    .invoke_async(&mut conn)
                                    .await
                                    .expect("EVALSHA");
                                if id.is_none() {
                                    break popped;
                                }
                                popped += 1;
                            }
                        })
                    })
                    .collect();
                let mut total = 0;
                for task in tasks {
                    total += task.await.expect("a worker");
                }
                assert_eq!(total, ITEMS);
            })
        });
    rt.block_on(async {
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("a connection");
        let _: () = redis::cmd("DEL")
            .arg(&list)
            .arg(&hash)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    });
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

/// `bench/loop_redis.yml`: the loop with Redis checkpoints and a Redis lock.
#[divan::bench(sample_count = 20)]
fn loop_steps_redis_checkpoints(bencher: Bencher) {
    const STEPS: u64 = 200;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../bench/loop_redis.yml");
    let machine = Machine::from_file(path).expect("benchmark workload loads");
    let rt = tokio();
    let scratch = Scratch::new(&rt);
    let runner = Runtime::builder()
        .persistence(Arc::new(scratch.client.persistence()))
        .lock(Arc::new(scratch.client.lock()))
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
    rt.block_on(scratch.client.purge()).expect("purge");
}
