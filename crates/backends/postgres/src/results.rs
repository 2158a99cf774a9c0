//! Results: one row per URI in `{schema}.results`, blocking reads woken by `NOTIFY`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use flatmachines_core::{Error, ReadOptions, Result, ResultBackend, ResultUri};
use serde_json::Value;
use tokio_postgres::types::Json;

use crate::error::BACKEND;
use crate::listener::{Listener, payload};
use crate::store::{PostgresStore, with_client};

/// Largest result [`PostgresResultBackend`] stores, as JSON text (256 MiB).
pub const MAX_RESULT_BYTES: usize = 256 * 1024 * 1024;

/// A [`ResultBackend`] on a `{schema}.results` table.
///
/// `flatagents://{execution_id}/{path}` is the row `(execution_id, path)`; the value is
/// `json`, which keeps the text as written (object key order included). A `write` upserts the
/// row and calls `pg_notify('{schema}.results', '{execution_id}/{path}')` in the same
/// statement, so the notification goes out when the write commits, and only then.
///
/// A blocking `read` opens (once per backend, and again if it ends) a connection of its own
/// that `LISTEN`s on the channel. It registers for its key, makes sure the session is
/// listening, and only then looks at the table; it sleeps until a notification for its key
/// (or the end of the session) wakes it to look again, or its timeout passes. It never polls
/// on a timer. Handles on one schema — in one process or many — wake each other.
#[derive(Clone)]
pub struct PostgresResultBackend {
    store: PostgresStore,
    listener: Arc<Listener>,
    sql: Arc<Sql>,
}

struct Sql {
    table: String,
    channel: String,
    write: String,
    read: String,
    exists: String,
    delete: String,
}

impl PostgresResultBackend {
    pub(crate) fn new(store: PostgresStore) -> Self {
        let table = store.table("results");
        let channel = format!("{}.results", store.schema());
        let sql = Sql {
            write: format!(
                "WITH written AS (
                     INSERT INTO {table} (execution_id, path, value) VALUES ($1, $2, $3)
                     ON CONFLICT (execution_id, path)
                     DO UPDATE SET value = EXCLUDED.value, written_at = now()
                     RETURNING 1)
                 SELECT pg_notify($4, $5) FROM written"
            ),
            read: format!("SELECT value FROM {table} WHERE execution_id = $1 AND path = $2"),
            exists: format!(
                "SELECT EXISTS (SELECT 1 FROM {table} WHERE execution_id = $1 AND path = $2)"
            ),
            delete: format!("DELETE FROM {table} WHERE execution_id = $1 AND path = $2"),
            table,
            channel: channel.clone(),
        };
        PostgresResultBackend {
            listener: Arc::new(Listener::new(store.clone(), channel)),
            store,
            sql: Arc::new(sql),
        }
    }

    /// The store this backend writes to.
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }

    async fn fetch(&self, uri: &ResultUri<'_>) -> Result<Option<Value>> {
        let what = format!("reading {uri} from {}", self.sql.table);
        let (execution_id, path) = (uri.execution_id, uri.path);
        let row = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.read).await?;
            client.query_opt(&statement, &[&execution_id, &path]).await
        })?;
        Ok(row.map(|row| row.get::<_, Json<Value>>(0).0))
    }
}

impl fmt::Debug for PostgresResultBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresResultBackend")
            .field("table", &self.sql.table)
            .field("channel", &self.sql.channel)
            .field("server", &self.store.config().redacted_url())
            .finish()
    }
}

#[async_trait]
impl ResultBackend for PostgresResultBackend {
    async fn write(&self, uri: &str, data: Value) -> Result<()> {
        let parsed = ResultUri::parse(uri)?;
        // Encoded here only to hold the size limit; the driver encodes `data` again as `json`.
        parsed.encode(&data, MAX_RESULT_BYTES, BACKEND)?;
        let key = parsed.key();
        let (execution_id, path) = (parsed.execution_id, parsed.path);
        let what = format!("writing {parsed} to {}", self.sql.table);
        let value = Json(&data);
        let note = payload(&key);
        with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.write).await?;
            client
                .execute(
                    &statement,
                    &[&execution_id, &path, &value, &self.sql.channel, &note],
                )
                .await
                .map(drop)
        })
    }

    async fn read(&self, uri: &str, options: ReadOptions) -> Result<Option<Value>> {
        let parsed = ResultUri::parse(uri)?;
        if !options.block {
            return self.fetch(&parsed).await;
        }
        let deadline = options.timeout.map(|t| tokio::time::Instant::now() + t);
        let waiter = self.listener.waiter(&parsed.key());
        loop {
            let notified = waiter.notify().notified();
            tokio::pin!(notified);
            // Registered before the look: a wake-up from now on is not lost.
            notified.as_mut().enable();
            let looked = async {
                self.listener.listening().await?;
                self.fetch(&parsed).await
            };
            let found = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, looked).await.ok(),
                None => Some(looked.await),
            };
            match found {
                Some(Ok(Some(value))) => return Ok(Some(value)),
                Some(Ok(None)) => {}
                Some(Err(error)) => return Err(error),
                None => return Err(timeout(&parsed, options)),
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(timeout(&parsed, options));
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn exists(&self, uri: &str) -> Result<bool> {
        let parsed = ResultUri::parse(uri)?;
        let what = format!("checking {parsed} in {}", self.sql.table);
        let (execution_id, path) = (parsed.execution_id, parsed.path);
        let row = with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.exists).await?;
            client.query_one(&statement, &[&execution_id, &path]).await
        })?;
        Ok(row.get(0))
    }

    async fn delete(&self, uri: &str) -> Result<()> {
        let parsed = ResultUri::parse(uri)?;
        let what = format!("deleting {parsed} from {}", self.sql.table);
        let (execution_id, path) = (parsed.execution_id, parsed.path);
        with_client!(self.store, what, |client| {
            let statement = client.prepare_cached(&self.sql.delete).await?;
            client
                .execute(&statement, &[&execution_id, &path])
                .await
                .map(drop)
        })
    }
}

fn timeout(uri: &ResultUri<'_>, options: ReadOptions) -> Error {
    Error::Timeout {
        what: format!("a result at {uri}"),
        after: options.timeout.unwrap_or_default(),
    }
}
