//! Named work pools: a hash per item, a list of pending ids, every change one Lua script.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use flatmachines_core::{Error, PushOptions, Result, WorkBackend, WorkItem, WorkPool, WorkStatus};
use redis::Script;
use serde_json::Value;

use crate::RedisClient;

/// How long the server remembers which item a claim (or a release) handed out, so that a
/// retry of the same call after a lost answer gets the same item rather than a second one.
const OPERATION_MEMORY_MS: &str = "600000";

/// KEYS: item. ARGV: id, data, max_retries, created_at, pending list.
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'data', ARGV[2], 'status', 'pending',
  'attempts', 0, 'max_retries', ARGV[3], 'created_at', ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
",
    )
});

/// KEYS: pending list, claims hash, operation key. ARGV: worker, now, item key prefix.
/// Answers the claimed item's fields, or nil when nothing is pending.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = redis.call('GET', KEYS[3])
if not id then
  while true do
    id = redis.call('LPOP', KEYS[1])
    if not id then return false end
    if redis.call('HGET', ARGV[3] .. id, 'status') == 'pending' then break end
  end
  local item = ARGV[3] .. id
  redis.call('HSET', item, 'status', 'claimed', 'claimed_by', ARGV[1], 'claimed_at', ARGV[2])
  redis.call('HINCRBY', item, 'attempts', 1)
  redis.call('HSET', KEYS[2], id, ARGV[1])
  redis.call('SET', KEYS[3], id, 'PX', ARGV[4])
end
return redis.call('HGETALL', ARGV[3] .. id)
",
    )
});

/// KEYS: item, claims hash. ARGV: operation id, has result, result.
/// Answers `ok`, `missing`, or the status that forbids completing.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if redis.call('HGET', KEYS[1], 'op') == ARGV[1] then return 'ok' end
if status ~= 'claimed' then return status end
redis.call('HSET', KEYS[1], 'status', 'done', 'op', ARGV[1])
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'result', ARGV[3]) end
redis.call('HDEL', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
return 'ok'
",
    )
});

/// KEYS: item, claims hash, pending list. ARGV: operation id, has error, error.
/// Answers like COMPLETE.
static FAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if redis.call('HGET', KEYS[1], 'op') == ARGV[1] then return 'ok' end
if status ~= 'claimed' then return status end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'error', ARGV[3])
else
  redis.call('HDEL', KEYS[1], 'error')
end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HDEL', KEYS[2], id)
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts'))
local max_retries = tonumber(redis.call('HGET', KEYS[1], 'max_retries'))
if attempts < max_retries then
  redis.call('HSET', KEYS[1], 'status', 'pending', 'op', ARGV[1])
  redis.call('HDEL', KEYS[1], 'claimed_by', 'claimed_at')
  redis.call('RPUSH', KEYS[3], id)
else
  redis.call('HSET', KEYS[1], 'status', 'poisoned', 'op', ARGV[1])
end
return 'ok'
",
    )
});

/// KEYS: claims hash, pending list, operation key. ARGV: worker, item key prefix.
/// Answers how many items went back to pending.
static RELEASE_BY_WORKER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local done = redis.call('GET', KEYS[3])
if done then return tonumber(done) end
local claims = redis.call('HGETALL', KEYS[1])
local released = 0
for i = 1, #claims, 2 do
  local id, worker = claims[i], claims[i + 1]
  if worker == ARGV[1] then
    local item = ARGV[2] .. id
    if redis.call('HGET', item, 'status') == 'claimed'
        and redis.call('HGET', item, 'claimed_by') == ARGV[1] then
      redis.call('HSET', item, 'status', 'pending')
      redis.call('HDEL', item, 'claimed_by', 'claimed_at')
      redis.call('RPUSH', KEYS[2], id)
      released = released + 1
    end
    redis.call('HDEL', KEYS[1], id)
  end
end
redis.call('SET', KEYS[3], released, 'PX', ARGV[3])
return released
",
    )
});

/// A [`WorkBackend`] whose pools live in Redis; `pool(name)` is cheap and creates nothing
/// until the first push.
#[derive(Clone)]
pub struct RedisWorkBackend {
    client: RedisClient,
}

impl RedisWorkBackend {
    /// Work pools in `client`'s namespace.
    pub fn new(client: RedisClient) -> Self {
        RedisWorkBackend { client }
    }

    /// The pool called `name`, as its concrete type.
    pub fn redis_pool(&self, name: &str) -> RedisWorkPool {
        RedisWorkPool::new(self.client.clone(), name)
    }
}

impl fmt::Debug for RedisWorkBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisWorkBackend")
            .field("client", &self.client)
            .finish()
    }
}

impl WorkBackend for RedisWorkBackend {
    fn pool(&self, name: &str) -> Arc<dyn WorkPool> {
        Arc::new(self.redis_pool(name))
    }
}

/// One pool of work items in Redis, claimed first in, first out.
///
/// Keys, with `P` the pool's name: a hash per item `{namespace}:items:P:{id}`, the list of
/// pending ids `{namespace}:pending:P`, and the hash of claimed ids to their workers
/// `{namespace}:claims:P`. Every change is one Lua script, so it is atomic across processes
/// and hosts and never half-applied: `claim` pops the oldest pending id and marks its item
/// claimed, with worker, time and one more attempt, in one step.
///
/// Retries are safe. Each call carries an operation id; a `claim` or `release_by_worker`
/// whose answer was lost to a dropped connection gets the same answer when retried (the
/// server remembers it for ten minutes), and a retried `complete`/`fail` is recognised as the
/// one already applied. So a dropped connection never hands an item to two workers, nor loses
/// it.
///
/// Semantics follow the in-memory pool: items are never removed (done and poisoned ones stay
/// readable through `get`); `complete` and `fail` need a `claimed` item and fail with
/// [`Error::Conflict`] naming its status otherwise; `fail` returns the item to the back of the
/// queue while `attempts < max_retries` and poisons it after; `release_by_worker` keeps
/// `attempts` as they are. Item ids are UUIDs; an id with `:` is never found.
#[derive(Clone)]
pub struct RedisWorkPool {
    client: RedisClient,
    name: String,
    pending: String,
    claims: String,
    item_prefix: String,
}

impl RedisWorkPool {
    /// The pool called `name` in `client`'s namespace.
    pub fn new(client: RedisClient, name: &str) -> Self {
        RedisWorkPool {
            pending: client.key("pending", name),
            claims: client.key("claims", name),
            item_prefix: format!("{}:", client.key("items", name)),
            name: name.to_owned(),
            client,
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn item_key(&self, item_id: &str) -> Option<String> {
        (!item_id.contains(':')).then(|| format!("{}{item_id}", self.item_prefix))
    }

    fn operation_key(&self, kind: &str, operation: &str) -> String {
        self.client.key(kind, &format!("{}:{operation}", self.name))
    }

    fn not_found(item_id: &str) -> Error {
        Error::NotFound {
            what: "work item",
            key: item_id.to_owned(),
        }
    }

    /// Runs COMPLETE or FAIL and turns its answer into a result.
    async fn finish(
        &self,
        item_id: &str,
        operation: &'static str,
        script: &Script,
        extra_key: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        let Some(item) = self.item_key(item_id) else {
            return Err(Self::not_found(item_id));
        };
        let op = uuid::Uuid::new_v4().simple().to_string();
        let mut keys = vec![item.as_str(), self.claims.as_str()];
        keys.extend(extra_key);
        let args = [
            op.as_str(),
            if detail.is_some() { "1" } else { "0" },
            detail.unwrap_or(""),
        ];
        let answer: String = self
            .client
            .script(operation, item_id, script, &keys, &args)
            .await?;
        match answer.as_str() {
            "ok" => Ok(()),
            "missing" => Err(Self::not_found(item_id)),
            status => Err(Error::Conflict {
                key: item_id.to_owned(),
                message: format!("work item is {status}, not claimed"),
            }),
        }
    }
}

impl fmt::Debug for RedisWorkPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisWorkPool")
            .field("name", &self.name)
            .field("client", &self.client)
            .finish()
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, false)
}

fn encode(item_id: &str, what: &str, value: &Value) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Serialization {
        action: "encode",
        what: format!("the {what} of work item `{item_id}`"),
        source,
    })
}

/// The item held in `fields` (an item hash).
fn item(item_id: &str, mut fields: HashMap<String, String>) -> Result<WorkItem> {
    let corrupt = |what: &str, text: &str| {
        Error::backend(
            "redis",
            format!("work item `{item_id}` has an unreadable {what}: `{text}`"),
        )
    };
    let mut take = |name: &str| fields.remove(name);
    let json = |what: &str, text: Option<String>| -> Result<Option<Value>> {
        text.map(|text| {
            serde_json::from_str(&text).map_err(|source| Error::Serialization {
                action: "decode",
                what: format!("the {what} of work item `{item_id}`"),
                source,
            })
        })
        .transpose()
    };
    let number = |what: &str, text: Option<String>| -> Result<u32> {
        let text = text.unwrap_or_default();
        text.parse().map_err(|_| corrupt(what, &text))
    };
    let status = take("status").unwrap_or_default();
    let status = match status.as_str() {
        "pending" => WorkStatus::Pending,
        "claimed" => WorkStatus::Claimed,
        "done" => WorkStatus::Done,
        "poisoned" => WorkStatus::Poisoned,
        _ => return Err(corrupt("status", &status)),
    };
    Ok(WorkItem {
        id: take("id").unwrap_or_else(|| item_id.to_owned()),
        data: json("data", take("data"))?.unwrap_or(Value::Null),
        claimed_by: take("claimed_by"),
        claimed_at: take("claimed_at"),
        attempts: number("attempts", take("attempts"))?,
        max_retries: number("max_retries", take("max_retries"))?,
        status,
        created_at: take("created_at").unwrap_or_default(),
        error: take("error"),
        result: json("result", take("result"))?,
    })
}

#[async_trait]
impl WorkPool for RedisWorkPool {
    async fn push(&self, data: Value, options: PushOptions) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let item_key = format!("{}{id}", self.item_prefix);
        let data = encode(&id, "data", &data)?;
        let max_retries = options.max_retries.to_string();
        let created_at = now();
        // A retried push finds the item already there and adds nothing.
        self.client
            .script::<i64>(
                "push work item",
                &self.name,
                &PUSH,
                &[&item_key, &self.pending],
                &[&id, &data, &max_retries, &created_at],
            )
            .await?;
        Ok(id)
    }

    async fn claim(&self, worker_id: &str) -> Result<Option<WorkItem>> {
        let op = uuid::Uuid::new_v4().simple().to_string();
        let op_key = self.operation_key("claim-op", &op);
        let claimed_at = now();
        let fields: Option<HashMap<String, String>> = self
            .client
            .script(
                "claim work item",
                &self.name,
                &CLAIM,
                &[&self.pending, &self.claims, &op_key],
                &[
                    worker_id,
                    &claimed_at,
                    &self.item_prefix,
                    OPERATION_MEMORY_MS,
                ],
            )
            .await?;
        fields
            .map(|fields| {
                let id = fields.get("id").cloned().unwrap_or_default();
                item(&id, fields)
            })
            .transpose()
    }

    async fn complete(&self, item_id: &str, result: Option<Value>) -> Result<()> {
        let result = result
            .map(|value| encode(item_id, "result", &value))
            .transpose()?;
        self.finish(
            item_id,
            "complete work item",
            &COMPLETE,
            None,
            result.as_deref(),
        )
        .await
    }

    async fn fail(&self, item_id: &str, error: Option<&str>) -> Result<()> {
        self.finish(item_id, "fail work item", &FAIL, Some(&self.pending), error)
            .await
    }

    async fn size(&self) -> Result<u64> {
        self.client
            .run("count pending work", &self.name, |mut conn| async move {
                redis::cmd("LLEN")
                    .arg(&self.pending)
                    .query_async(&mut conn)
                    .await
            })
            .await
    }

    async fn release_by_worker(&self, worker_id: &str) -> Result<u64> {
        let op = uuid::Uuid::new_v4().simple().to_string();
        let op_key = self.operation_key("release-op", &op);
        self.client
            .script(
                "release work items",
                worker_id,
                &RELEASE_BY_WORKER,
                &[&self.claims, &self.pending, &op_key],
                &[worker_id, &self.item_prefix, OPERATION_MEMORY_MS],
            )
            .await
    }

    async fn get(&self, item_id: &str) -> Result<Option<WorkItem>> {
        let Some(key) = self.item_key(item_id) else {
            return Ok(None);
        };
        let fields: HashMap<String, String> = self
            .client
            .run("get work item", item_id, |mut conn| {
                let key = &key;
                async move { redis::cmd("HGETALL").arg(key).query_async(&mut conn).await }
            })
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        item(item_id, fields).map(Some)
    }
}
