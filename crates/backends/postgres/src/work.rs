//! Work pools: rows of `{schema}.work_items`, claimed with `FOR UPDATE SKIP LOCKED`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use flatmachines_core::{
    Error, PushOptions, Result, WorkBackend, WorkCounts, WorkItem, WorkPool, WorkStatus,
};
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::Json;

use crate::error::PgError;
use crate::registration::timestamp;
use crate::store::{PostgresStore, with_client};

/// A [`WorkBackend`] whose pools are rows of one `{schema}.work_items` table, told apart by
/// their `pool` column. `pool(name)` connects to nothing; pools exist as their items do.
#[derive(Clone)]
pub struct PostgresWorkBackend {
    store: PostgresStore,
    sql: Arc<Sql>,
}

impl PostgresWorkBackend {
    pub(crate) fn new(store: PostgresStore) -> Self {
        let sql = Arc::new(Sql::new(&store));
        PostgresWorkBackend { store, sql }
    }

    /// The pool called `name`, with its concrete type.
    pub fn postgres_pool(&self, name: &str) -> PostgresWorkPool {
        PostgresWorkPool {
            store: self.store.clone(),
            sql: Arc::clone(&self.sql),
            name: name.to_owned(),
        }
    }

    /// The store this backend writes to.
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }
}

impl fmt::Debug for PostgresWorkBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresWorkBackend")
            .field("table", &self.sql.table)
            .field("server", &self.store.config().redacted_url())
            .finish()
    }
}

impl WorkBackend for PostgresWorkBackend {
    fn pool(&self, name: &str) -> Arc<dyn WorkPool> {
        Arc::new(self.postgres_pool(name))
    }
}

/// One pool of work items.
///
/// - **`claim`** is one statement: `UPDATE … WHERE id = (SELECT id … WHERE status =
///   'pending' ORDER BY queue_order LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING …`. Concurrent
///   claimers skip each other's rows instead of waiting, and each row is taken by exactly one
///   of them. The subquery reads a partial index of pending items only, so a table with
///   100 000 done items claims as fast as an empty one. Items go out oldest first; an item
///   returned to pending queues behind those already waiting.
/// - **Lost answers**: each claim writes a fresh token on the row it takes. If the
///   connection drops before the answer arrives, the claim looks for its token on a new
///   connection and returns that item if the claim had committed, or claims again if not: a
///   dropped connection neither loses an item nor hands one out twice.
/// - **`complete`** and **`fail`** require the item to be `claimed`; for an item in another
///   status they fail with [`Error::Conflict`] naming it (a retried `complete` whose first try
///   committed finds the item `done`). `fail` returns the item to `pending` (clearing
///   `claimed_by` and `claimed_at`) while `attempts < max_retries`, and marks it `poisoned`
///   otherwise.
/// - **`release_by_worker`** keeps `attempts`: a released claim counted as an attempt.
/// - **`push`** picks the id (a UUID) itself, so a push retried after a dropped connection
///   stores one item, not two.
/// - **`counts`** is one `SELECT count(*) FILTER (WHERE status = …) … WHERE pool = $1`: a single
///   statement sees one snapshot, so the four numbers are consistent with each other. It
///   reads every row of the pool through the primary key, O(items kept).
#[derive(Clone)]
pub struct PostgresWorkPool {
    store: PostgresStore,
    sql: Arc<Sql>,
    name: String,
}

struct Sql {
    table: String,
    push: String,
    claim: String,
    claimed_with: String,
    complete: String,
    fail: String,
    status: String,
    size: String,
    counts: String,
    release: String,
    get: String,
}

const ITEM: &str = "id, data, claimed_by, claimed_at, attempts, max_retries, status, \
                    created_at, error, result";

impl Sql {
    fn new(store: &PostgresStore) -> Self {
        let table = store.table("work_items");
        let order = format!("nextval('{}')", store.table("work_queue_order"));
        Sql {
            push: format!(
                "INSERT INTO {table} (pool, id, data, status, max_retries)
                 VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (pool, id) DO NOTHING"
            ),
            claim: format!(
                "UPDATE {table} SET status = 'claimed', claimed_by = $2, claimed_at = now(),
                     attempts = attempts + 1, claim_token = $3
                 WHERE pool = $1 AND id = (
                     SELECT id FROM {table} WHERE pool = $1 AND status = 'pending'
                     ORDER BY queue_order LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING {ITEM}"
            ),
            claimed_with: format!(
                "SELECT {ITEM} FROM {table}
                 WHERE pool = $1 AND status = 'claimed' AND claimed_by = $2 AND claim_token = $3"
            ),
            complete: format!(
                "UPDATE {table} SET status = 'done', result = $3
                 WHERE pool = $1 AND id = $2 AND status = 'claimed'"
            ),
            fail: format!(
                "UPDATE {table} SET error = $3,
                     status = CASE WHEN attempts < max_retries THEN 'pending' ELSE 'poisoned' END,
                     claimed_by = CASE WHEN attempts < max_retries THEN NULL ELSE claimed_by END,
                     claimed_at = CASE WHEN attempts < max_retries THEN NULL ELSE claimed_at END,
                     queue_order = CASE WHEN attempts < max_retries THEN {order}
                                        ELSE queue_order END
                 WHERE pool = $1 AND id = $2 AND status = 'claimed'"
            ),
            status: format!("SELECT status FROM {table} WHERE pool = $1 AND id = $2"),
            size: format!("SELECT count(*) FROM {table} WHERE pool = $1 AND status = 'pending'"),
            counts: format!(
                "SELECT count(*) FILTER (WHERE status = 'pending'),
                        count(*) FILTER (WHERE status = 'claimed'),
                        count(*) FILTER (WHERE status = 'done'),
                        count(*) FILTER (WHERE status = 'poisoned')
                 FROM {table} WHERE pool = $1"
            ),
            release: format!(
                "UPDATE {table} SET status = 'pending', claimed_by = NULL, claimed_at = NULL,
                     queue_order = {order}
                 WHERE pool = $1 AND status = 'claimed' AND claimed_by = $2"
            ),
            get: format!("SELECT {ITEM} FROM {table} WHERE pool = $1 AND id = $2"),
            table,
        }
    }
}

impl PostgresWorkPool {
    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why `complete` or `fail` of `item_id` changed nothing: it is unknown, or not claimed.
    async fn not_claimed(&self, item_id: &str) -> Error {
        let what = format!("reading work item `{item_id}` of pool `{}`", self.name);
        let pool = &self.name;
        let row = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.status).await?;
            client.query_opt(&statement, &[pool, &item_id]).await
        });
        match row {
            Ok(Some(row)) => Error::Conflict {
                key: item_id.to_owned(),
                message: format!("work item is {}, not claimed", row.get::<_, &str>(0)),
            },
            Ok(None) => Error::NotFound {
                what: "work item",
                key: item_id.to_owned(),
            },
            Err(error) => error,
        }
    }

    /// Claims with `token`, or (on a `retry`) first looks for the item an earlier try with
    /// the same token took.
    async fn claim_once(
        &self,
        worker_id: &str,
        token: &str,
        retry: bool,
    ) -> Result<Option<Row>, PgError> {
        let what = format!("claiming from pool `{}` in {}", self.name, self.sql.table);
        let pool = &self.name;
        let client = self.store.checkout().await?;
        let claim = async {
            if retry {
                let statement = client.prepare_cached(&self.sql.claimed_with).await?;
                let found = client
                    .query_opt(&statement, &[pool, &worker_id, &token])
                    .await?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            let statement = client.prepare_cached(&self.sql.claim).await?;
            client
                .query_opt(&statement, &[pool, &worker_id, &token])
                .await
        };
        let answer = tokio::time::timeout(self.store.config().query_timeout(), claim).await;
        self.store.settle(&what, client, answer)
    }
}

impl fmt::Debug for PostgresWorkPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresWorkPool")
            .field("name", &self.name)
            .field("table", &self.sql.table)
            .finish()
    }
}

fn status(text: &str) -> WorkStatus {
    match text {
        "claimed" => WorkStatus::Claimed,
        "done" => WorkStatus::Done,
        "poisoned" => WorkStatus::Poisoned,
        // The table's CHECK constraint allows nothing else.
        _ => WorkStatus::Pending,
    }
}

fn item(row: &Row) -> WorkItem {
    let count = |column: &str| u32::try_from(row.get::<_, i64>(column)).unwrap_or(u32::MAX);
    WorkItem {
        id: row.get("id"),
        data: row.get::<_, Json<Value>>("data").0,
        claimed_by: row.get("claimed_by"),
        claimed_at: row.get::<_, Option<_>>("claimed_at").map(timestamp),
        attempts: count("attempts"),
        max_retries: count("max_retries"),
        status: status(row.get("status")),
        created_at: timestamp(row.get("created_at")),
        error: row.get("error"),
        result: row
            .get::<_, Option<Json<Value>>>("result")
            .map(|json| json.0),
    }
}

#[async_trait]
impl WorkPool for PostgresWorkPool {
    async fn push(&self, data: Value, options: PushOptions) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let what = format!("pushing to pool `{}` in {}", self.name, self.sql.table);
        let (pool, data, max_retries) = (&self.name, Json(&data), i64::from(options.max_retries));
        with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.push).await?;
            client
                .execute(&statement, &[pool, &id, &data, &max_retries])
                .await
                .map(drop)
        })?;
        Ok(id)
    }

    async fn claim(&self, worker_id: &str) -> Result<Option<WorkItem>> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut attempt = 0;
        loop {
            match self.claim_once(worker_id, &token, attempt > 0).await {
                Ok(row) => return Ok(row.as_ref().map(item)),
                Err(error) if self.store.retry(&error, &mut attempt).await => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn complete(&self, item_id: &str, result: Option<Value>) -> Result<()> {
        let what = format!("completing work item `{item_id}` of pool `{}`", self.name);
        let (pool, result) = (&self.name, result.as_ref().map(Json));
        let changed = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.complete).await?;
            client.execute(&statement, &[pool, &item_id, &result]).await
        })?;
        if changed == 0 {
            return Err(self.not_claimed(item_id).await);
        }
        Ok(())
    }

    async fn fail(&self, item_id: &str, error: Option<&str>) -> Result<()> {
        let what = format!("failing work item `{item_id}` of pool `{}`", self.name);
        let pool = &self.name;
        let changed = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.fail).await?;
            client.execute(&statement, &[pool, &item_id, &error]).await
        })?;
        if changed == 0 {
            return Err(self.not_claimed(item_id).await);
        }
        Ok(())
    }

    async fn size(&self) -> Result<u64> {
        let what = format!("counting pending items of pool `{}`", self.name);
        let pool = &self.name;
        let row = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.size).await?;
            client.query_one(&statement, &[pool]).await
        })?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn counts(&self) -> Result<WorkCounts> {
        let what = format!("counting the items of pool `{}` by status", self.name);
        let pool = &self.name;
        let row = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.counts).await?;
            client.query_one(&statement, &[pool]).await
        })?;
        let count = |column: usize| u64::try_from(row.get::<_, i64>(column)).unwrap_or(0);
        Ok(WorkCounts {
            pending: count(0),
            claimed: count(1),
            done: count(2),
            poisoned: count(3),
        })
    }

    async fn release_by_worker(&self, worker_id: &str) -> Result<u64> {
        let what = format!(
            "releasing the claims of worker `{worker_id}` in pool `{}`",
            self.name
        );
        let pool = &self.name;
        with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.release).await?;
            client.execute(&statement, &[pool, &worker_id]).await
        })
    }

    async fn get(&self, item_id: &str) -> Result<Option<WorkItem>> {
        let what = format!("reading work item `{item_id}` of pool `{}`", self.name);
        let pool = &self.name;
        let row = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.get).await?;
            client.query_opt(&statement, &[pool, &item_id]).await
        })?;
        Ok(row.as_ref().map(item))
    }
}
