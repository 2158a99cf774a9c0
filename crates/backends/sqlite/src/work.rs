//! Work pools as rows of the `work_items` table, claimed by one `UPDATE … RETURNING`.

use std::sync::Arc;

use async_trait::async_trait;
use flatmachines_core::{
    Error, PushOptions, Result, WorkBackend, WorkCounts, WorkItem, WorkPool, WorkStatus,
};
use serde_json::Value;
use uuid::Uuid;

use crate::database::{SqliteDatabase, retrying};
use crate::time::now_iso8601;

/// A [`WorkBackend`] whose pools live in a [`SqliteDatabase`]: pool `name` is the rows of
/// `work_items` whose `pool` column is `name`. Pools need no creation, and handles of one
/// name — in this process or another — are the same pool.
///
/// `Clone` is cheap and shares the database's connections.
#[derive(Debug, Clone)]
pub struct SqliteWorkBackend {
    db: SqliteDatabase,
}

impl SqliteWorkBackend {
    pub(crate) fn new(db: SqliteDatabase) -> Self {
        SqliteWorkBackend { db }
    }

    /// The pool called `name`, as its concrete type.
    pub fn named_pool(&self, name: &str) -> SqliteWorkPool {
        SqliteWorkPool {
            db: self.db.clone(),
            name: name.to_owned(),
        }
    }

    /// The database holding the pools.
    pub fn database(&self) -> &SqliteDatabase {
        &self.db
    }
}

impl WorkBackend for SqliteWorkBackend {
    fn pool(&self, name: &str) -> Arc<dyn WorkPool> {
        Arc::new(self.named_pool(name))
    }
}

/// One pool of work items.
///
/// # Claims
///
/// `claim` is a single `UPDATE … WHERE id = (the oldest pending item) RETURNING …`. SQLite
/// takes the database's write lock before the statement reads anything, so the pick and the
/// change are one atomic step: however many workers claim at once, in one process or many,
/// an item is handed out once. Pending items are claimed in queue order: a push, or a return
/// to pending by `fail` or `release_by_worker`, puts the item behind every item waiting.
///
/// # Life of an item
///
/// Items are never deleted: `done` and `poisoned` items stay readable through `get`. Each
/// item records `created_at`, `claimed_at` (of its current claim) and internally the time of
/// its last change. A claim adds one to `attempts`. `complete` and `fail` require the item
/// to be `claimed`; for an item in another status they fail with [`Error::Conflict`] naming
/// that status, and change nothing. `fail` records the error and returns the item to
/// `pending` (clearing `claimed_by` and `claimed_at`) while `attempts < max_retries`, and
/// marks it `poisoned` otherwise, keeping who held it last. `release_by_worker` returns a
/// worker's claimed items to `pending` and keeps their `attempts`: the lost claim counts.
///
/// `counts` is one `SELECT count(*) FILTER (…) … WHERE pool = ?` over the pool's rows: one
/// statement reads one snapshot of the database, so the four numbers are consistent with each
/// other. It reads every row of the pool (through the primary key), so it costs O(items kept).
///
/// Item data and results are stored as JSON text.
#[derive(Debug, Clone)]
pub struct SqliteWorkPool {
    db: SqliteDatabase,
    name: String,
}

/// The columns a [`WorkItem`] is read from, in [`Row`]'s order.
const COLUMNS: &str =
    "id, data, claimed_by, claimed_at, attempts, max_retries, status, created_at, error, result";

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// The next queue position of a pool: behind every pending item.
const NEXT_IN_QUEUE: &str = "(SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM work_items \
                             WHERE pool = ?1 AND status = 'pending')";

impl SqliteWorkPool {
    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn decode(&self, row: Row) -> Result<WorkItem> {
        let (id, data, claimed_by, claimed_at, attempts, max_retries, status, created_at) =
            (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
        let json = |field: &str, text: &str| {
            serde_json::from_str::<Value>(text).map_err(|source| Error::Serialization {
                action: "decode",
                what: format!("the {field} of work item `{id}` in pool `{}`", self.name),
                source,
            })
        };
        let status = match status.as_str() {
            "pending" => WorkStatus::Pending,
            "claimed" => WorkStatus::Claimed,
            "done" => WorkStatus::Done,
            "poisoned" => WorkStatus::Poisoned,
            // The table's CHECK constraint admits no other value.
            other => {
                return Err(Error::backend(
                    "sqlite",
                    format!(
                        "work item `{id}` in pool `{}` has unknown status `{other}`",
                        self.name
                    ),
                ));
            }
        };
        Ok(WorkItem {
            data: json("data", &data)?,
            result: row
                .9
                .as_deref()
                .map(|text| json("result", text))
                .transpose()?,
            claimed_by,
            claimed_at,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            max_retries: u32::try_from(max_retries).unwrap_or(u32::MAX),
            status,
            created_at,
            error: row.8,
            id,
        })
    }

    /// Why `item_id` could not change: it does not exist, or it is not claimed.
    async fn refusal(&self, item_id: &str) -> Error {
        let status: Result<Option<String>> = async {
            Ok(retrying!(
                self.db,
                conn = reader,
                format!("read work item `{item_id}` of pool `{}`", self.name),
                sqlx::query_scalar("SELECT status FROM work_items WHERE pool = ?1 AND id = ?2")
                    .bind(&self.name)
                    .bind(item_id)
                    .fetch_optional(&mut *conn)
                    .await
            ))
        }
        .await;
        match status {
            Ok(None) => Error::NotFound {
                what: "work item",
                key: item_id.to_owned(),
            },
            Ok(Some(status)) => Error::Conflict {
                key: item_id.to_owned(),
                message: format!("work item is {status}, not claimed"),
            },
            Err(error) => error,
        }
    }
}

#[async_trait]
impl WorkPool for SqliteWorkPool {
    async fn push(&self, data: Value, options: PushOptions) -> Result<String> {
        let id = Uuid::new_v4().to_string();
        let text = serde_json::to_string(&data).map_err(|source| Error::Serialization {
            action: "encode",
            what: format!("the data of a work item for pool `{}`", self.name),
            source,
        })?;
        let now = now_iso8601();
        let sql = format!(
            "INSERT INTO work_items (pool, id, data, status, attempts, max_retries, created_at, \
                                     updated_at, queue_seq) \
             VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?5, {NEXT_IN_QUEUE})"
        );
        retrying!(
            self.db,
            conn = writer,
            format!("push a work item to pool `{}`", self.name),
            sqlx::query(&sql)
                .bind(&self.name)
                .bind(&id)
                .bind(&text)
                .bind(i64::from(options.max_retries))
                .bind(&now)
                .execute(&mut *conn)
                .await
        );
        Ok(id)
    }

    async fn claim(&self, worker_id: &str) -> Result<Option<WorkItem>> {
        let now = now_iso8601();
        let sql = format!(
            "UPDATE work_items \
             SET status = 'claimed', claimed_by = ?2, claimed_at = ?3, updated_at = ?3, \
                 attempts = attempts + 1 \
             WHERE pool = ?1 AND status = 'pending' AND id = ( \
                 SELECT id FROM work_items WHERE pool = ?1 AND status = 'pending' \
                 ORDER BY queue_seq LIMIT 1) \
             RETURNING {COLUMNS}"
        );
        let row: Option<Row> = retrying!(
            self.db,
            conn = writer,
            format!("claim from pool `{}` as `{worker_id}`", self.name),
            sqlx::query_as(&sql)
                .bind(&self.name)
                .bind(worker_id)
                .bind(&now)
                .fetch_optional(&mut *conn)
                .await
        );
        row.map(|row| self.decode(row)).transpose()
    }

    async fn complete(&self, item_id: &str, result: Option<Value>) -> Result<()> {
        let text = result
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|source| Error::Serialization {
                action: "encode",
                what: format!("the result of work item `{item_id}`"),
                source,
            })?;
        let now = now_iso8601();
        let done = retrying!(
            self.db,
            conn = writer,
            format!("complete work item `{item_id}` of pool `{}`", self.name),
            sqlx::query(
                "UPDATE work_items SET status = 'done', result = ?3, updated_at = ?4 \
                 WHERE pool = ?1 AND id = ?2 AND status = 'claimed'",
            )
            .bind(&self.name)
            .bind(item_id)
            .bind(text.as_deref())
            .bind(&now)
            .execute(&mut *conn)
            .await
        );
        match done.rows_affected() {
            0 => Err(self.refusal(item_id).await),
            _ => Ok(()),
        }
    }

    async fn fail(&self, item_id: &str, error: Option<&str>) -> Result<()> {
        let now = now_iso8601();
        // SET expressions all read the row as it was, so each CASE sees the same attempts.
        let sql = format!(
            "UPDATE work_items SET \
                 error = ?3, updated_at = ?4, \
                 status = CASE WHEN attempts < max_retries THEN 'pending' ELSE 'poisoned' END, \
                 claimed_by = CASE WHEN attempts < max_retries THEN NULL ELSE claimed_by END, \
                 claimed_at = CASE WHEN attempts < max_retries THEN NULL ELSE claimed_at END, \
                 queue_seq = CASE WHEN attempts < max_retries THEN {NEXT_IN_QUEUE} \
                             ELSE queue_seq END \
             WHERE pool = ?1 AND id = ?2 AND status = 'claimed'"
        );
        let failed = retrying!(
            self.db,
            conn = writer,
            format!("fail work item `{item_id}` of pool `{}`", self.name),
            sqlx::query(&sql)
                .bind(&self.name)
                .bind(item_id)
                .bind(error)
                .bind(&now)
                .execute(&mut *conn)
                .await
        );
        match failed.rows_affected() {
            0 => Err(self.refusal(item_id).await),
            _ => Ok(()),
        }
    }

    async fn size(&self) -> Result<u64> {
        let count: i64 = retrying!(
            self.db,
            conn = reader,
            format!("count the pending items of pool `{}`", self.name),
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM work_items WHERE pool = ?1 AND status = 'pending'",
            )
            .bind(&self.name)
            .fetch_one(&mut *conn)
            .await
        );
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn counts(&self) -> Result<WorkCounts> {
        let (pending, claimed, done, poisoned): (i64, i64, i64, i64) = retrying!(
            self.db,
            conn = reader,
            format!("count the items of pool `{}` by status", self.name),
            sqlx::query_as(
                "SELECT count(*) FILTER (WHERE status = 'pending'), \
                        count(*) FILTER (WHERE status = 'claimed'), \
                        count(*) FILTER (WHERE status = 'done'), \
                        count(*) FILTER (WHERE status = 'poisoned') \
                 FROM work_items WHERE pool = ?1",
            )
            .bind(&self.name)
            .fetch_one(&mut *conn)
            .await
        );
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(WorkCounts {
            pending: count(pending),
            claimed: count(claimed),
            done: count(done),
            poisoned: count(poisoned),
        })
    }

    async fn release_by_worker(&self, worker_id: &str) -> Result<u64> {
        let now = now_iso8601();
        let sql = format!(
            "UPDATE work_items SET status = 'pending', claimed_by = NULL, claimed_at = NULL, \
                 updated_at = ?3, queue_seq = {NEXT_IN_QUEUE} \
             WHERE pool = ?1 AND status = 'claimed' AND claimed_by = ?2"
        );
        let released = retrying!(
            self.db,
            conn = writer,
            format!(
                "release the claims of `{worker_id}` in pool `{}`",
                self.name
            ),
            sqlx::query(&sql)
                .bind(&self.name)
                .bind(worker_id)
                .bind(&now)
                .execute(&mut *conn)
                .await
        );
        Ok(released.rows_affected())
    }

    async fn get(&self, item_id: &str) -> Result<Option<WorkItem>> {
        let sql = format!("SELECT {COLUMNS} FROM work_items WHERE pool = ?1 AND id = ?2");
        let row: Option<Row> = retrying!(
            self.db,
            conn = reader,
            format!("read work item `{item_id}` of pool `{}`", self.name),
            sqlx::query_as(&sql)
                .bind(&self.name)
                .bind(item_id)
                .fetch_optional(&mut *conn)
                .await
        );
        row.map(|row| self.decode(row)).transpose()
    }
}
