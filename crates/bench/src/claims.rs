//! Work-pool claims per second on the shared backends, and the bare-server floor measured in
//! the same harness: `EVALSHA` of a two-command Lua script on Redis, the bare `FOR UPDATE
//! SKIP LOCKED` update on PostgreSQL.
//!
//! A sample fills a new pool with `items` items, then `workers` tasks claim until each finds
//! nothing left; the time of that drain is the sample. Claims only (no `complete`), which is
//! what the bare statements do too.

use std::sync::Arc;
use std::time::Instant;

use flatmachines_core::{PushOptions, WorkBackend, WorkPool};
use serde_json::{Value, json};
use tokio_postgres::NoTls;

use crate::Result;
use crate::workloads::{cleanup, scratch_url, unique};

/// What `fm-bench claims` was asked for.
#[derive(Debug)]
pub(crate) struct ClaimOptions {
    /// `sqlite`, `redis` or `postgres`.
    pub(crate) backend: String,
    pub(crate) workers: u64,
    pub(crate) items: u64,
    pub(crate) samples: u64,
    /// The bare-server statement instead of the work pool.
    pub(crate) raw: bool,
}

/// Runs the claim workload and removes the pools' namespace or schema afterwards.
pub(crate) async fn claims(options: &ClaimOptions) -> Result<Value> {
    let (url, _dir) = scratch_url(&options.backend)?;
    let result = match (options.backend.as_str(), options.raw) {
        ("redis", true) => raw_redis(&url, options).await,
        ("postgres", true) => raw_postgres(&url, options).await,
        (_, true) => Err(format!(
            "no bare baseline for `{}` (redis and postgres have one)",
            options.backend
        )),
        (_, false) => pools(&url, options).await,
    };
    let cleaned = cleanup(&url).await;
    let seconds = result?;
    cleaned?;
    Ok(json!({
        "workload": "claims",
        "backend": options.backend,
        "raw": options.raw,
        "workers": options.workers,
        "items": options.items,
        "samples_s": seconds,
    }))
}

/// One handle per worker (a connection each for Redis, a shared pooled store for PostgreSQL,
/// a shared database handle for SQLite, as the backends are meant to be used).
async fn pools(url: &str, options: &ClaimOptions) -> Result<Vec<f64>> {
    let mut seconds = Vec::new();
    let postgres = match options.backend.as_str() {
        "postgres" => {
            let config = flatmachines_postgres::PostgresConfig::from_url(url)
                .map_err(|e| e.to_string())?
                .with_pool_size(usize::try_from(options.workers).unwrap_or(4).max(1));
            Some(
                flatmachines_postgres::PostgresStore::connect(config)
                    .await
                    .map_err(|e| format!("PostgreSQL does not answer at {url}: {e}"))?,
            )
        }
        _ => None,
    };
    let sqlite = match options.backend.as_str() {
        "sqlite" => Some(
            flatmachines_sqlite::SqliteDatabase::open_url(url)
                .map_err(|e| format!("cannot open {url}: {e}"))?,
        ),
        _ => None,
    };
    let redis = match options.backend.as_str() {
        "redis" => {
            let client = flatmachines_redis::RedisClient::open(url)
                .map_err(|e| format!("cannot open {url}: {e}"))?;
            client
                .ping()
                .await
                .map_err(|e| format!("Redis does not answer at {url}: {e}"))?;
            Some(client)
        }
        _ => None,
    };
    for _ in 0..options.samples {
        let name = format!("pool-{}", unique());
        let worker_pools: Vec<Arc<dyn WorkPool>> = (0..options.workers)
            .map(|_| {
                if let Some(store) = &postgres {
                    Ok(store.work().pool(&name))
                } else if let Some(db) = &sqlite {
                    Ok(db.work().pool(&name))
                } else if let Some(client) = &redis {
                    flatmachines_redis::RedisClient::new(client.config().clone())
                        .map(|worker| worker.work().pool(&name))
                        .map_err(|e| format!("cannot open a Redis client: {e}"))
                } else {
                    Err(format!("unknown backend `{}`", options.backend))
                }
            })
            .collect::<Result<_>>()?;
        let first = worker_pools.first().ok_or("no workers")?;
        let filled = match &postgres {
            Some(store) => fill_postgres(url, store.config().schema(), &name, options.items)
                .await
                .is_ok(),
            None => false,
        };
        if !filled {
            for n in 0..options.items {
                first
                    .push(json!({"n": n}), PushOptions::default())
                    .await
                    .map_err(|e| format!("cannot push: {e}"))?;
            }
        }
        let started = Instant::now();
        let tasks: Vec<_> = worker_pools
            .into_iter()
            .enumerate()
            .map(|(w, pool)| {
                tokio::spawn(async move {
                    let me = format!("w{w}");
                    let mut claimed = 0u64;
                    while pool
                        .claim(&me)
                        .await
                        .map_err(|e| format!("claim failed: {e}"))?
                        .is_some()
                    {
                        claimed += 1;
                    }
                    Ok::<u64, String>(claimed)
                })
            })
            .collect();
        let total = join(tasks).await?;
        seconds.push(started.elapsed().as_secs_f64());
        check_total(total, options.items)?;
    }
    if let Some(store) = postgres {
        store.drop_schema().await.map_err(|e| e.to_string())?;
    }
    Ok(seconds)
}

async fn join(tasks: Vec<tokio::task::JoinHandle<Result<u64>>>) -> Result<u64> {
    let mut total = 0;
    for task in tasks {
        total += task
            .await
            .map_err(|e| format!("a worker panicked: {e}"))??;
    }
    Ok(total)
}

fn check_total(total: u64, items: u64) -> Result<()> {
    if total == items {
        Ok(())
    } else {
        Err(format!("{total} claims for {items} items"))
    }
}

/// A plain driver connection, outside the store's pool.
async fn pg_connection(url: &str) -> Result<tokio_postgres::Client> {
    // The scratch URL's only parameter is the store's `schema`, which the driver refuses.
    let server = url.split_once('?').map_or(url, |(server, _)| server);
    let (client, connection) = tokio_postgres::connect(server, NoTls)
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Fills a pool in one statement (pushing one by one pays a commit per item).
async fn fill_postgres(url: &str, schema: &str, pool: &str, items: u64) -> Result<()> {
    let client = pg_connection(url).await?;
    let sql = format!(
        "INSERT INTO \"{schema}\".work_items (pool, id, data, status, max_retries)
         SELECT $1, n::text, '{{\"n\": 1}}', 'pending', 3 FROM generate_series(1, $2::bigint) n"
    );
    let count = i64::try_from(items).map_err(|_| "too many items")?;
    client
        .execute(&sql, &[&pool, &count])
        .await
        .map_err(|e| format!("cannot fill the pool: {e}"))?;
    Ok(())
}

/// The bare claim on the store's own table and index: `UPDATE … WHERE id = (SELECT … FOR
/// UPDATE SKIP LOCKED LIMIT 1) RETURNING id`, one prepared statement per worker connection.
async fn raw_postgres(url: &str, options: &ClaimOptions) -> Result<Vec<f64>> {
    // Connecting the store creates the schema and its tables.
    let store = flatmachines_postgres::PostgresStore::connect_url(url)
        .await
        .map_err(|e| format!("PostgreSQL does not answer at {url}: {e}"))?;
    let table = format!("\"{}\".work_items", store.config().schema());
    let claim = format!(
        "UPDATE {table} SET status = 'claimed', claimed_by = $2
         WHERE pool = $1 AND id = (
             SELECT id FROM {table} WHERE pool = $1 AND status = 'pending'
             ORDER BY queue_order LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id"
    );
    let mut seconds = Vec::new();
    for _ in 0..options.samples {
        let name = format!("pool-{}", unique());
        fill_postgres(url, store.config().schema(), &name, options.items).await?;
        let mut clients = Vec::new();
        for _ in 0..options.workers {
            let client = pg_connection(url).await?;
            let statement = client
                .prepare(&claim)
                .await
                .map_err(|e| format!("cannot prepare the bare claim: {e}"))?;
            clients.push((client, statement));
        }
        let started = Instant::now();
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(w, (client, statement))| {
                let name = name.clone();
                tokio::spawn(async move {
                    let me = format!("w{w}");
                    let mut claimed = 0u64;
                    while client
                        .query_opt(&statement, &[&name, &me])
                        .await
                        .map_err(|e| format!("bare claim failed: {e}"))?
                        .is_some()
                    {
                        claimed += 1;
                    }
                    Ok::<u64, String>(claimed)
                })
            })
            .collect();
        let total = join(tasks).await?;
        seconds.push(started.elapsed().as_secs_f64());
        check_total(total, options.items)?;
    }
    store.drop_schema().await.map_err(|e| e.to_string())?;
    Ok(seconds)
}

/// Pops an id and sets one field of a hash: the least an atomic claim script can do.
const RAW_SCRIPT: &str = "local id = redis.call('LPOP', KEYS[1]) if not id then return false end \
     redis.call('HSET', KEYS[2], id, ARGV[1]) return id";

/// The bare claim on Redis: [`RAW_SCRIPT`] by `EVALSHA`, a connection per worker, on keys
/// under the run's namespace (deleted afterwards).
async fn raw_redis(url: &str, options: &ClaimOptions) -> Result<Vec<f64>> {
    let (server, namespace) = url
        .split_once("?namespace=")
        .ok_or("the scratch Redis URL has no namespace")?;
    let client = redis::Client::open(server).map_err(|e| format!("bad Redis URL: {e}"))?;
    let (list, hash) = (
        format!("{{{namespace}}}:raw:list"),
        format!("{{{namespace}}}:raw:hash"),
    );
    let script = redis::Script::new(RAW_SCRIPT);
    let connect = || async {
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("Redis does not answer at {server}: {e}"))
    };
    let mut seconds = Vec::new();
    for _ in 0..options.samples {
        let mut conn = connect().await?;
        let ids: Vec<u64> = (0..options.items).collect();
        let _: () = redis::cmd("RPUSH")
            .arg(&list)
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("RPUSH failed: {e}"))?;
        let mut conns = Vec::new();
        for _ in 0..options.workers {
            conns.push(connect().await?);
        }
        let started = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                let (list, hash, script) = (list.clone(), hash.clone(), script.clone());
                tokio::spawn(async move {
                    let mut popped = 0u64;
                    loop {
                        let id: Option<String> = script
                            .key(&list)
                            .key(&hash)
                            .arg("w")
                            .invoke_async(&mut conn)
                            .await
                            .map_err(|e| format!("EVALSHA failed: {e}"))?;
                        if id.is_none() {
                            break Ok::<u64, String>(popped);
                        }
                        popped += 1;
                    }
                })
            })
            .collect();
        let total = join(tasks).await?;
        seconds.push(started.elapsed().as_secs_f64());
        check_total(total, options.items)?;
        let _: () = redis::cmd("DEL")
            .arg(&list)
            .arg(&hash)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("DEL failed: {e}"))?;
    }
    Ok(seconds)
}
