//! Worker registration: one row per worker in `{schema}.workers`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use flatmachines_core::distributed::status;
use flatmachines_core::{
    Error, JsonMap, RegistrationBackend, Result, WorkerFilter, WorkerRecord, WorkerRegistration,
};
use serde_json::Value;
use tokio_postgres::Row;

use crate::store::{PostgresStore, with_client};

/// A [`RegistrationBackend`] on a `{schema}.workers` table.
///
/// Heartbeats are the server's clock (`now()`), so workers on hosts whose clocks differ
/// still compare fairly, and `list` with `stale_threshold_seconds` measures age on the same
/// clock. Timestamps come back as RFC 3339 with microseconds and `+00:00`, the shape the
/// in-memory backend and the Python runtime write.
///
/// - `register` of a known id replaces its record (fresh status, heartbeat and metadata)
///   and keeps its place: `list` returns workers in the order they first registered.
/// - `heartbeat` merges the metadata's top-level keys into the stored ones (`jsonb ||`), in
///   one statement, so concurrent heartbeats never lose each other's keys.
/// - A `status` filter of an empty list matches no worker.
#[derive(Clone)]
pub struct PostgresRegistrationBackend {
    store: PostgresStore,
    sql: Arc<Sql>,
}

struct Sql {
    table: String,
    register: String,
    heartbeat: String,
    update_status: String,
    get: String,
    list: String,
}

const COLUMNS: &str = "worker_id, status, last_heartbeat, host, pid, capabilities, pool_id, \
                       started_at, current_task_id, metadata";

impl PostgresRegistrationBackend {
    pub(crate) fn new(store: PostgresStore) -> Self {
        let table = store.table("workers");
        let sql = Sql {
            register: format!(
                "INSERT INTO {table} (worker_id, status, last_heartbeat, host, pid, capabilities,
                                      pool_id, started_at, current_task_id, metadata)
                 VALUES ($1, $2, now(), $3, $4, $5, $6, $7, NULL, NULL)
                 ON CONFLICT (worker_id) DO UPDATE SET
                     status = EXCLUDED.status, last_heartbeat = EXCLUDED.last_heartbeat,
                     host = EXCLUDED.host, pid = EXCLUDED.pid,
                     capabilities = EXCLUDED.capabilities, pool_id = EXCLUDED.pool_id,
                     started_at = EXCLUDED.started_at, current_task_id = NULL, metadata = NULL
                 RETURNING {COLUMNS}"
            ),
            heartbeat: format!(
                "UPDATE {table} SET last_heartbeat = now(),
                     metadata = CASE WHEN $2::jsonb IS NULL THEN metadata
                                     ELSE coalesce(metadata, '{{}}'::jsonb) || $2::jsonb END
                 WHERE worker_id = $1"
            ),
            update_status: format!("UPDATE {table} SET status = $2 WHERE worker_id = $1"),
            get: format!("SELECT {COLUMNS} FROM {table} WHERE worker_id = $1"),
            list: format!(
                "SELECT {COLUMNS} FROM {table}
                 WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))
                   AND ($2::text IS NULL OR $2::text = ANY(capabilities))
                   AND ($3::text IS NULL OR pool_id = $3::text)
                   AND ($4::float8 IS NULL
                        OR extract(epoch FROM now() - last_heartbeat)::float8 > $4::float8)
                 ORDER BY registered"
            ),
            table,
        };
        PostgresRegistrationBackend {
            store,
            sql: Arc::new(sql),
        }
    }

    /// The store this backend writes to.
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }

    fn not_found(worker_id: &str) -> Error {
        Error::NotFound {
            what: "worker",
            key: worker_id.to_owned(),
        }
    }
}

impl fmt::Debug for PostgresRegistrationBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresRegistrationBackend")
            .field("table", &self.sql.table)
            .field("server", &self.store.config().redacted_url())
            .finish()
    }
}

/// A timestamp as the runtime writes them: RFC 3339, microseconds, `+00:00`.
pub(crate) fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, false)
}

fn record(row: &Row) -> WorkerRecord {
    let metadata = match row.get::<_, Option<Value>>("metadata") {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    };
    WorkerRecord {
        worker_id: row.get("worker_id"),
        status: row.get("status"),
        last_heartbeat: timestamp(row.get("last_heartbeat")),
        host: row.get("host"),
        pid: row
            .get::<_, Option<i64>>("pid")
            .and_then(|pid| u32::try_from(pid).ok()),
        capabilities: row.get("capabilities"),
        pool_id: row.get("pool_id"),
        started_at: row.get("started_at"),
        current_task_id: row.get("current_task_id"),
        metadata,
    }
}

#[async_trait]
impl RegistrationBackend for PostgresRegistrationBackend {
    async fn register(&self, worker: WorkerRegistration) -> Result<WorkerRecord> {
        let what = format!(
            "registering worker `{}` in {}",
            worker.worker_id, self.sql.table
        );
        let pid = worker.pid.map(i64::from);
        let row = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.register).await?;
            client
                .query_one(
                    &statement,
                    &[
                        &worker.worker_id,
                        &status::ACTIVE,
                        &worker.host,
                        &pid,
                        &worker.capabilities,
                        &worker.pool_id,
                        &worker.started_at,
                    ],
                )
                .await
        })?;
        Ok(record(&row))
    }

    async fn heartbeat(&self, worker_id: &str, metadata: Option<JsonMap>) -> Result<()> {
        let what = format!(
            "recording a heartbeat of worker `{worker_id}` in {}",
            self.sql.table
        );
        let metadata = metadata.map(Value::Object);
        let changed = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.heartbeat).await?;
            client.execute(&statement, &[&worker_id, &metadata]).await
        })?;
        if changed == 0 {
            return Err(Self::not_found(worker_id));
        }
        Ok(())
    }

    async fn update_status(&self, worker_id: &str, status: &str) -> Result<()> {
        let what = format!(
            "setting the status of worker `{worker_id}` in {}",
            self.sql.table
        );
        let changed = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.update_status).await?;
            client.execute(&statement, &[&worker_id, &status]).await
        })?;
        if changed == 0 {
            return Err(Self::not_found(worker_id));
        }
        Ok(())
    }

    async fn get(&self, worker_id: &str) -> Result<Option<WorkerRecord>> {
        let what = format!("reading worker `{worker_id}` from {}", self.sql.table);
        let row = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.get).await?;
            client.query_opt(&statement, &[&worker_id]).await
        })?;
        Ok(row.as_ref().map(record))
    }

    async fn list(&self, filter: &WorkerFilter) -> Result<Vec<WorkerRecord>> {
        let what = format!("listing workers in {}", self.sql.table);
        let rows = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.list).await?;
            client
                .query(
                    &statement,
                    &[
                        &filter.status,
                        &filter.capability,
                        &filter.pool_id,
                        &filter.stale_threshold_seconds,
                    ],
                )
                .await
        })?;
        Ok(rows.iter().map(record).collect())
    }
}
