//! Named work pools: a hash per item, a list of pending ids, every change one Lua script.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use flatmachines_core::{
    Error, PushOptions, Result, WorkBackend, WorkCounts, WorkItem, WorkPool, WorkStatus,
};
use redis::Script;
use serde_json::Value;

use crate::RedisClient;
use crate::persistence::escape_glob;

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

/// KEYS: item, claims hash, counts hash. ARGV: operation id, has result, result.
/// Answers `ok`, `missing`, or the status that forbids completing. The item is marked
/// `tallied` as it is counted, so [`TALLY`] never counts it again.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if redis.call('HGET', KEYS[1], 'op') == ARGV[1] then return 'ok' end
if status ~= 'claimed' then return status end
redis.call('HSET', KEYS[1], 'status', 'done', 'op', ARGV[1], 'tallied', '1')
redis.call('HINCRBY', KEYS[3], 'done', 1)
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'result', ARGV[3]) end
redis.call('HDEL', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
return 'ok'
",
    )
});

/// KEYS: item, claims hash, counts hash, pending list. ARGV: operation id, has error, error.
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
  redis.call('RPUSH', KEYS[4], id)
else
  redis.call('HSET', KEYS[1], 'status', 'poisoned', 'op', ARGV[1], 'tallied', '1')
  redis.call('HINCRBY', KEYS[3], 'poisoned', 1)
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

/// KEYS: pending list, claims hash, counts hash, tally marker.
/// Answers pending, claimed, done, poisoned, and 1 when the namespace's older items are tallied.
static COUNTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local counts = redis.call('HMGET', KEYS[3], 'done', 'poisoned')
return {redis.call('LLEN', KEYS[1]), redis.call('HLEN', KEYS[2]),
  tonumber(counts[1] or 0), tonumber(counts[2] or 0), redis.call('EXISTS', KEYS[4])}
",
    )
});

/// KEYS: counts hash of a pool, then item keys of that pool. Counts the done and poisoned
/// items no script has counted (finished before counts existed), marking them `tallied`, so
/// running it twice, or alongside COMPLETE and FAIL, counts each item once. Answers how many
/// it counted.
static TALLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local counted = 0
for i = 2, #KEYS do
  local status = redis.call('HGET', KEYS[i], 'status')
  if (status == 'done' or status == 'poisoned')
      and redis.call('HEXISTS', KEYS[i], 'tallied') == 0 then
    redis.call('HSET', KEYS[i], 'tallied', '1')
    redis.call('HINCRBY', KEYS[1], status, 1)
    counted = counted + 1
  end
end
return counted
",
    )
});

/// How many item keys one TALLY call takes.
const TALLY_BATCH: usize = 500;

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

    /// Counts, into their pools' [`counts`](WorkPool::counts), the done and poisoned items of
    /// this namespace that no count includes yet — those finished by a version of this crate
    /// that kept no counts — and says how many it added.
    ///
    /// The first `counts` of a namespace runs it by itself; run it again if processes of an
    /// older version kept finishing items after that. It walks the namespace's item keys
    /// with SCAN (never blocking the server), O(keys on the server); every item is counted at
    /// most once however often, and however concurrently, it runs.
    pub async fn tally_uncounted_items(&self) -> Result<u64> {
        tally_uncounted_items(&self.client).await
    }
}

/// See [`RedisWorkBackend::tally_uncounted_items`]. Marks the namespace as tallied when done.
async fn tally_uncounted_items(client: &RedisClient) -> Result<u64> {
    let prefix = client.key("items", "");
    let pattern = format!("{}*", escape_glob(&prefix));
    // Item keys are `{prefix}{pool}:{id}`; ids never hold `:`, pool names may.
    let mut by_pool: HashMap<&str, Vec<&str>> = HashMap::new();
    let keys = client.scan(&pattern, "list work items to count").await?;
    for key in &keys {
        if let Some((pool, _)) = key
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.rsplit_once(':'))
        {
            by_pool.entry(pool).or_default().push(key);
        }
    }
    let mut counted = 0;
    for (pool, items) in by_pool {
        let counts_key = client.key("counts", pool);
        for batch in items.chunks(TALLY_BATCH) {
            let mut keys = Vec::with_capacity(batch.len() + 1);
            keys.push(counts_key.as_str());
            keys.extend_from_slice(batch);
            counted += client
                .script::<u64>("count finished work items", pool, &TALLY, &keys, &[])
                .await?;
        }
    }
    let marker = tally_marker(client);
    client
        .run("mark work items counted", &marker, |mut conn| {
            let marker = &marker;
            async move {
                redis::cmd("SET")
                    .arg(marker)
                    .arg(1)
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .await?;
    Ok(counted)
}

/// The key whose presence says the namespace's uncounted items were tallied.
fn tally_marker(client: &RedisClient) -> String {
    client.key("work-counts", "tallied")
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
///
/// # Counts
///
/// `counts` is one Lua script, so its four numbers are one consistent snapshot, and O(1):
/// `pending` is the pending list's length (what `size` says), `claimed` the claims hash's, and
/// `done` and `poisoned` are counters in the hash `{namespace}:counts:P`, raised by the
/// scripts of `complete` and `fail` in the same step as the change they count. Items that
/// were finished before these counters existed are counted once, on the first `counts` of
/// the namespace (see [`RedisWorkBackend::tally_uncounted_items`]); `done` and `poisoned`
/// miss only items that processes of such an older version finish after that.
#[derive(Clone)]
pub struct RedisWorkPool {
    client: RedisClient,
    name: String,
    pending: String,
    claims: String,
    counts: String,
    item_prefix: String,
}

impl RedisWorkPool {
    /// The pool called `name` in `client`'s namespace.
    pub fn new(client: RedisClient, name: &str) -> Self {
        RedisWorkPool {
            pending: client.key("pending", name),
            claims: client.key("claims", name),
            counts: client.key("counts", name),
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
        let mut keys = vec![item.as_str(), self.claims.as_str(), self.counts.as_str()];
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

    async fn counts(&self) -> Result<WorkCounts> {
        let marker = tally_marker(&self.client);
        let keys = [
            self.pending.as_str(),
            self.claims.as_str(),
            self.counts.as_str(),
            marker.as_str(),
        ];
        let read = || {
            self.client.script::<(u64, u64, u64, u64, u8)>(
                "count work items",
                &self.name,
                &COUNTS,
                &keys,
                &[],
            )
        };
        let (mut pending, mut claimed, mut done, mut poisoned, tallied) = read().await?;
        if tallied == 0 {
            tally_uncounted_items(&self.client).await?;
            (pending, claimed, done, poisoned, _) = read().await?;
        }
        Ok(WorkCounts {
            pending,
            claimed,
            done,
            poisoned,
        })
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
