//! Worker registration as rows of the `workers` table.

use async_trait::async_trait;
use chrono::Utc;
use flatmachines_core::{
    Error, JsonMap, RegistrationBackend, Result, WorkerFilter, WorkerRecord, WorkerRegistration,
};
use sqlx::Connection;

use crate::database::{SqliteDatabase, retrying};
use crate::time::now_iso8601;

/// A [`RegistrationBackend`] keeping one row per worker in a [`SqliteDatabase`].
///
/// Every change is one statement, except a heartbeat with metadata, which reads and merges
/// the stored metadata in one `BEGIN IMMEDIATE` transaction so that concurrent heartbeats
/// never lose each other's keys. Capabilities and metadata are stored as JSON text.
///
/// `register` of a known id replaces its record (status, heartbeat, details; metadata and
/// current task cleared) but keeps its place: `list` returns workers in the order their ids
/// were first registered. A `stale_threshold_seconds` filter returns workers whose last
/// heartbeat is more than that many seconds old; a heartbeat that is not an ISO 8601 time
/// counts as stale, and a `status` filter of an empty list matches no worker.
///
/// `Clone` is cheap and shares the database's connections.
#[derive(Debug, Clone)]
pub struct SqliteRegistration {
    db: SqliteDatabase,
}

/// The columns a [`WorkerRecord`] is read from, in [`Row`]'s order.
const COLUMNS: &str = "worker_id, status, last_heartbeat, host, pid, capabilities, pool_id, \
                       started_at, current_task_id, metadata";

type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl SqliteRegistration {
    pub(crate) fn new(db: SqliteDatabase) -> Self {
        SqliteRegistration { db }
    }

    /// The database holding the workers.
    pub fn database(&self) -> &SqliteDatabase {
        &self.db
    }
}

fn not_found(worker_id: &str) -> Error {
    Error::NotFound {
        what: "worker",
        key: worker_id.to_owned(),
    }
}

fn encode_error(worker_id: &str, source: serde_json::Error) -> Error {
    Error::Serialization {
        action: "encode",
        what: format!("the record of worker `{worker_id}`"),
        source,
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    worker_id: &str,
    field: &str,
    text: Option<String>,
) -> Result<Option<T>> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|source| Error::Serialization {
            action: "decode",
            what: format!("the {field} of worker `{worker_id}`"),
            source,
        })
    })
    .transpose()
}

fn record(row: Row) -> Result<WorkerRecord> {
    let (worker_id, status, last_heartbeat, host, pid, capabilities, pool_id, started_at) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
    let capabilities = decode(&worker_id, "capabilities", capabilities)?;
    let metadata = decode(&worker_id, "metadata", row.9)?;
    Ok(WorkerRecord {
        // A pid outside u32 cannot have been written by this crate; it reads as unknown.
        pid: pid.and_then(|pid| u32::try_from(pid).ok()),
        worker_id,
        status,
        last_heartbeat,
        host,
        capabilities,
        pool_id,
        started_at,
        current_task_id: row.8,
        metadata,
    })
}

#[async_trait]
impl RegistrationBackend for SqliteRegistration {
    async fn register(&self, worker: WorkerRegistration) -> Result<WorkerRecord> {
        let record = WorkerRecord::from_registration(worker, now_iso8601());
        let capabilities = record
            .capabilities
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| encode_error(&record.worker_id, e))?;
        let id = &record.worker_id;
        retrying!(
            self.db,
            conn = writer,
            format!("register worker `{id}`"),
            sqlx::query(
                "INSERT INTO workers (worker_id, status, last_heartbeat, host, pid, capabilities, \
                                      pool_id, started_at, current_task_id, metadata) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL) \
                 ON CONFLICT (worker_id) DO UPDATE SET \
                     status = excluded.status, last_heartbeat = excluded.last_heartbeat, \
                     host = excluded.host, pid = excluded.pid, \
                     capabilities = excluded.capabilities, pool_id = excluded.pool_id, \
                     started_at = excluded.started_at, current_task_id = NULL, metadata = NULL",
            )
            .bind(id)
            .bind(&record.status)
            .bind(&record.last_heartbeat)
            .bind(record.host.as_deref())
            .bind(record.pid.map(i64::from))
            .bind(capabilities.as_deref())
            .bind(record.pool_id.as_deref())
            .bind(record.started_at.as_deref())
            .execute(&mut *conn)
            .await
        );
        Ok(record)
    }

    async fn heartbeat(&self, worker_id: &str, metadata: Option<JsonMap>) -> Result<()> {
        let now = now_iso8601();
        let what = || format!("record a heartbeat of worker `{worker_id}`");
        let Some(metadata) = metadata else {
            let updated = retrying!(
                self.db,
                conn = writer,
                what(),
                sqlx::query("UPDATE workers SET last_heartbeat = ?2 WHERE worker_id = ?1")
                    .bind(worker_id)
                    .bind(&now)
                    .execute(&mut *conn)
                    .await
            );
            return match updated.rows_affected() {
                0 => Err(not_found(worker_id)),
                _ => Ok(()),
            };
        };
        // The merge reads what it writes back, so it holds the write lock from the start.
        let merged: Option<Result<()>> = retrying!(self.db, conn = writer, what(), {
            async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let stored: Option<Option<String>> =
                    sqlx::query_scalar("SELECT metadata FROM workers WHERE worker_id = ?1")
                        .bind(worker_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(stored) = stored else {
                    return Ok(None);
                };
                let merged = decode::<JsonMap>(worker_id, "metadata", stored).and_then(|old| {
                    let mut merged = old.unwrap_or_default();
                    merged.extend(metadata.clone());
                    serde_json::to_string(&merged).map_err(|e| encode_error(worker_id, e))
                });
                let text = match merged {
                    Ok(text) => text,
                    // Nothing was written; the transaction rolls back as it is dropped.
                    Err(error) => return Ok(Some(Err(error))),
                };
                sqlx::query(
                    "UPDATE workers SET last_heartbeat = ?2, metadata = ?3 WHERE worker_id = ?1",
                )
                .bind(worker_id)
                .bind(&now)
                .bind(text)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(Ok(())))
            }
            .await
        });
        merged.unwrap_or_else(|| Err(not_found(worker_id)))
    }

    async fn update_status(&self, worker_id: &str, status: &str) -> Result<()> {
        let updated = retrying!(
            self.db,
            conn = writer,
            format!("set the status of worker `{worker_id}`"),
            sqlx::query("UPDATE workers SET status = ?2 WHERE worker_id = ?1")
                .bind(worker_id)
                .bind(status)
                .execute(&mut *conn)
                .await
        );
        match updated.rows_affected() {
            0 => Err(not_found(worker_id)),
            _ => Ok(()),
        }
    }

    async fn get(&self, worker_id: &str) -> Result<Option<WorkerRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM workers WHERE worker_id = ?1");
        let row: Option<Row> = retrying!(
            self.db,
            conn = reader,
            format!("read worker `{worker_id}`"),
            sqlx::query_as(&sql)
                .bind(worker_id)
                .fetch_optional(&mut *conn)
                .await
        );
        row.map(record).transpose()
    }

    async fn list(&self, filter: &WorkerFilter) -> Result<Vec<WorkerRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM workers WHERE ?1 IS NULL OR pool_id = ?1 ORDER BY rowid"
        );
        let rows: Vec<Row> = retrying!(
            self.db,
            conn = reader,
            "list workers".to_owned(),
            sqlx::query_as(&sql)
                .bind(filter.pool_id.as_deref())
                .fetch_all(&mut *conn)
                .await
        );
        let now = Utc::now();
        let mut workers = Vec::new();
        for row in rows {
            let record = record(row)?;
            if filter.matches(&record, now) {
                workers.push(record);
            }
        }
        Ok(workers)
    }
}
