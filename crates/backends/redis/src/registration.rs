//! Worker registration: a hash per worker and a sorted set of heartbeats.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use flatmachines_core::{
    Error, JsonMap, RegistrationBackend, Result, WorkerFilter, WorkerRecord, WorkerRegistration,
};
use redis::Script;
use serde_json::Value;

use crate::RedisClient;

/// Metadata keys are stored as hash fields with this prefix, one JSON value each, so a
/// heartbeat merges metadata with a plain `HSET` and Lua never re-encodes JSON.
const META: &str = "meta:";

/// Moves the heartbeat of an existing worker and merges metadata fields; 0 when unknown.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_heartbeat', ARGV[2], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
",
    )
});

/// Sets the status of an existing worker; 0 when unknown.
static UPDATE_STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return 1
",
    )
});

/// A [`RegistrationBackend`] with one hash per worker at `{namespace}:worker:{id}` and a
/// sorted set `{namespace}:workers:` of worker ids scored by their last heartbeat (Unix
/// milliseconds), so stale-worker queries are one range read.
///
/// - `register` replaces the worker's hash and score in one `MULTI`/`EXEC`; `heartbeat` and
///   `update_status` are single Lua scripts that fail with [`Error::NotFound`] for an unknown
///   worker and change nothing then.
/// - Metadata is merged key by key; each metadata value is kept as its own JSON text, so
///   values come back exactly as sent.
/// - `list` returns workers in heartbeat order, oldest first. A `stale_threshold_seconds`
///   selects workers whose last heartbeat is more than that many seconds old, by this
///   process's clock: keep worker clocks in sync (NTP), as with any heartbeat scheme.
///
/// Timestamps are ISO 8601 in UTC with microseconds, as the Python runtime writes them.
#[derive(Clone)]
pub struct RedisRegistrationBackend {
    client: RedisClient,
}

impl RedisRegistrationBackend {
    /// Worker registration in `client`'s namespace.
    pub fn new(client: RedisClient) -> Self {
        RedisRegistrationBackend { client }
    }

    fn worker_key(&self, worker_id: &str) -> String {
        self.client.key("worker", worker_id)
    }

    fn heartbeats_key(&self) -> String {
        self.client.key("workers", "")
    }

    async fn update(&self, worker_id: &str, script: &Script, args: &[&str]) -> Result<()> {
        let keys = [self.worker_key(worker_id), self.heartbeats_key()];
        let keys = [keys[0].as_str(), keys[1].as_str()];
        let found: i64 = self
            .client
            .script("update worker", worker_id, script, &keys, args)
            .await?;
        if found == 0 {
            return Err(Error::NotFound {
                what: "worker",
                key: worker_id.to_owned(),
            });
        }
        Ok(())
    }
}

impl fmt::Debug for RedisRegistrationBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRegistrationBackend")
            .field("client", &self.client)
            .finish()
    }
}

/// Now, as ISO 8601 text and as a heartbeat score.
fn now() -> (String, i64) {
    let now = Utc::now();
    (
        now.to_rfc3339_opts(SecondsFormat::Micros, false),
        now.timestamp_millis(),
    )
}

fn encode(worker_id: &str, what: &str, value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Serialization {
        action: "encode",
        what: format!("the {what} of worker `{worker_id}`"),
        source,
    })
}

fn decode<T: serde::de::DeserializeOwned>(worker_id: &str, what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| Error::Serialization {
        action: "decode",
        what: format!("the {what} of worker `{worker_id}`"),
        source,
    })
}

/// The hash fields of a record.
fn fields(record: &WorkerRecord) -> Result<Vec<(String, String)>> {
    let id = record.worker_id.as_str();
    let mut fields = vec![
        ("worker_id".to_owned(), record.worker_id.clone()),
        ("status".to_owned(), record.status.clone()),
        ("last_heartbeat".to_owned(), record.last_heartbeat.clone()),
    ];
    let mut optional = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            fields.push((name.to_owned(), value));
        }
    };
    optional("host", record.host.clone());
    optional("pid", record.pid.map(|pid| pid.to_string()));
    optional(
        "capabilities",
        record
            .capabilities
            .as_ref()
            .map(|caps| encode(id, "capabilities", caps))
            .transpose()?,
    );
    optional("pool_id", record.pool_id.clone());
    optional("started_at", record.started_at.clone());
    optional("current_task_id", record.current_task_id.clone());
    for (key, value) in record.metadata.iter().flatten() {
        fields.push((format!("{META}{key}"), encode(id, "metadata", value)?));
    }
    Ok(fields)
}

/// The record held in a worker's hash, `None` for an empty (missing) hash.
fn record(worker_id: &str, mut hash: HashMap<String, String>) -> Result<Option<WorkerRecord>> {
    if hash.is_empty() {
        return Ok(None);
    }
    let mut take = |name: &str| hash.remove(name);
    let pid = take("pid")
        .map(|pid| {
            pid.parse::<u32>().map_err(|e| {
                Error::backend(
                    "redis",
                    format!("worker `{worker_id}` has a pid that is not a number (`{pid}`): {e}"),
                )
            })
        })
        .transpose()?;
    let capabilities = take("capabilities")
        .map(|text| decode(worker_id, "capabilities", &text))
        .transpose()?;
    let mut record = WorkerRecord {
        worker_id: take("worker_id").unwrap_or_else(|| worker_id.to_owned()),
        status: take("status").unwrap_or_default(),
        last_heartbeat: take("last_heartbeat").unwrap_or_default(),
        host: take("host"),
        pid,
        capabilities,
        pool_id: take("pool_id"),
        started_at: take("started_at"),
        current_task_id: take("current_task_id"),
        metadata: None,
    };
    let mut metadata: Vec<(String, String)> = hash
        .into_iter()
        .filter_map(|(field, text)| field.strip_prefix(META).map(|key| (key.to_owned(), text)))
        .collect();
    if !metadata.is_empty() {
        // Hash order is the server's; sorted keys keep records deterministic.
        metadata.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut map = JsonMap::new();
        for (key, text) in metadata {
            map.insert(key, decode::<Value>(worker_id, "metadata", &text)?);
        }
        record.metadata = Some(map);
    }
    Ok(Some(record))
}

/// The `ZRANGEBYSCORE` bounds of workers whose heartbeat is more than `threshold` seconds
/// before `now_ms`; `None` when no worker can match (a NaN or infinite threshold).
fn stale_range(threshold: f64, now_ms: i64) -> Option<(String, String)> {
    if threshold.is_nan() || threshold == f64::INFINITY {
        return None;
    }
    if threshold == f64::NEG_INFINITY {
        return Some(("-inf".to_owned(), "+inf".to_owned()));
    }
    let cutoff = now_ms as f64 - threshold * 1000.0;
    Some(("-inf".to_owned(), format!("({cutoff}")))
}

#[async_trait]
impl RegistrationBackend for RedisRegistrationBackend {
    async fn register(&self, worker: WorkerRegistration) -> Result<WorkerRecord> {
        let (now, score) = now();
        let record = WorkerRecord::from_registration(worker, now);
        let id = record.worker_id.clone();
        let mut transaction = redis::pipe();
        transaction
            .atomic()
            .del(self.worker_key(&id))
            .ignore()
            .hset_multiple(self.worker_key(&id), &fields(&record)?)
            .ignore()
            .zadd(self.heartbeats_key(), &id, score)
            .ignore();
        self.client
            .run("register worker", &id, |mut conn| {
                let transaction = &transaction;
                async move { transaction.query_async::<()>(&mut conn).await }
            })
            .await?;
        Ok(record)
    }

    async fn heartbeat(&self, worker_id: &str, metadata: Option<JsonMap>) -> Result<()> {
        let (now, score) = now();
        let score = score.to_string();
        let mut args = vec![worker_id.to_owned(), now, score];
        for (key, value) in metadata.iter().flatten() {
            args.push(format!("{META}{key}"));
            args.push(encode(worker_id, "metadata", value)?);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.update(worker_id, &HEARTBEAT, &args).await
    }

    async fn update_status(&self, worker_id: &str, status: &str) -> Result<()> {
        self.update(worker_id, &UPDATE_STATUS, &[status]).await
    }

    async fn get(&self, worker_id: &str) -> Result<Option<WorkerRecord>> {
        let key = self.worker_key(worker_id);
        let hash: HashMap<String, String> = self
            .client
            .run("get worker", worker_id, |mut conn| {
                let key = &key;
                async move { redis::cmd("HGETALL").arg(key).query_async(&mut conn).await }
            })
            .await?;
        record(worker_id, hash)
    }

    async fn list(&self, filter: &WorkerFilter) -> Result<Vec<WorkerRecord>> {
        let (min, max) = match filter.stale_threshold_seconds {
            Some(threshold) => match stale_range(threshold, Utc::now().timestamp_millis()) {
                Some(range) => range,
                None => return Ok(Vec::new()),
            },
            None => ("-inf".to_owned(), "+inf".to_owned()),
        };
        let heartbeats = self.heartbeats_key();
        let ids: Vec<String> = self
            .client
            .run("list workers", &heartbeats, |mut conn| {
                let (heartbeats, min, max) = (&heartbeats, &min, &max);
                async move {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(heartbeats)
                        .arg(min)
                        .arg(max)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut reads = redis::pipe();
        for id in &ids {
            reads.hgetall(self.worker_key(id));
        }
        let hashes: Vec<HashMap<String, String>> = self
            .client
            .run("list workers", &heartbeats, |mut conn| {
                let reads = &reads;
                async move { reads.query_async(&mut conn).await }
            })
            .await?;
        // The score range already chose the stale workers; the rest of the filter is core's.
        let rest = WorkerFilter {
            stale_threshold_seconds: None,
            ..filter.clone()
        };
        let now = Utc::now();
        let mut records = Vec::new();
        for (id, hash) in ids.iter().zip(hashes) {
            // A worker deleted by hand leaves only its score behind.
            if let Some(record) = record(id, hash)?
                && rest.matches(&record, now)
            {
                records.push(record);
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_their_hash() {
        let mut metadata = JsonMap::new();
        metadata.insert("load".into(), serde_json::json!(0.1 + 0.2));
        metadata.insert("tags".into(), serde_json::json!({"a": [], "b": {}}));
        let worker = WorkerRecord {
            worker_id: "w:1".into(),
            status: "active".into(),
            last_heartbeat: now().0,
            host: Some("h".into()),
            pid: Some(42),
            capabilities: Some(vec!["gpu".into()]),
            pool_id: None,
            started_at: Some("2024-01-01T00:00:00+00:00".into()),
            current_task_id: None,
            metadata: Some(metadata),
        };
        let hash: HashMap<String, String> = fields(&worker).unwrap().into_iter().collect();
        assert_eq!(record("w:1", hash).unwrap(), Some(worker.clone()));
        assert!(chrono::DateTime::parse_from_rfc3339(&worker.last_heartbeat).is_ok());
        assert_eq!(record("w", HashMap::new()).unwrap(), None);
    }

    #[test]
    fn stale_ranges_are_strict_and_handle_odd_thresholds() {
        assert_eq!(
            stale_range(1.5, 10_000),
            Some(("-inf".into(), "(8500".into()))
        );
        assert_eq!(stale_range(f64::NAN, 0), None);
        assert_eq!(stale_range(f64::INFINITY, 0), None);
        assert_eq!(
            stale_range(f64::NEG_INFINITY, 0),
            Some(("-inf".into(), "+inf".into()))
        );
    }
}
