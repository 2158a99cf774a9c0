//! Execution locks: session-level advisory locks on a connection of the holder's own.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flatmachines_core::{Error, ExecutionLock, Result};
use futures::StreamExt;
use tokio_postgres::Client;

use crate::error::PgError;
use crate::store::PostgresStore;

/// An [`ExecutionLock`] of PostgreSQL session-level advisory locks.
///
/// Each holder opens one connection of its own (not from the pool) at its first `acquire`,
/// and takes `pg_try_advisory_lock(hashtextextended('{schema}/{key}', 0))` there: the lock
/// belongs to that session, so it is freed by `release`, and by PostgreSQL itself the moment
/// the session ends — the holder dropped, its process killed, its connection terminated.
/// Nothing outlives a dead holder, and no lease has to run out first.
///
/// - **Keys** hash to 64 bits. Two keys with the same hash contend as one: an `acquire` may
///   be refused for a key nobody holds (about one chance in 10¹¹ with a million live keys),
///   but two holders never hold one key.
/// - **Schemas** are part of the hashed name, so stores on different schemas never contend.
/// - **`acquire` of a key this holder already holds** answers `true` without locking twice,
///   so one `release` frees it.
/// - **`ensure_held`** fails with [`Error::LockLost`] once the session is gone (its
///   connection closed) or has not been confirmed alive for the lease
///   ([`PostgresConfig::lock_lease`](crate::PostgresConfig::lock_lease)): while keys are held,
///   a task pings the session every third of the lease, so a holder cut off from the server
///   stops writing within one lease. After a loss, the next `acquire` opens a new session.
pub struct PostgresLock {
    store: PostgresStore,
    session: tokio::sync::Mutex<Option<Session>>,
    held: Arc<Mutex<HashMap<String, Arc<SessionState>>>>,
}

/// One connection and what is known of its health.
struct Session {
    client: Arc<Client>,
    state: Arc<SessionState>,
}

struct SessionState {
    alive: AtomicBool,
    confirmed: Mutex<Instant>,
}

impl SessionState {
    fn confirmed(&self) -> Instant {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn confirm(&self) {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }
}

impl PostgresLock {
    pub(crate) fn new(store: PostgresStore) -> Self {
        PostgresLock {
            store,
            session: tokio::sync::Mutex::new(None),
            held: Arc::default(),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Arc<SessionState>>> {
        // Each update is one insert or remove, so the map is consistent after a panic.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The advisory lock's name: schema and key.
    fn name(&self, key: &str) -> String {
        format!("{}/{key}", self.store.schema())
    }

    /// The live session, opening a new one if there is none or it ended.
    async fn session(
        &self,
        slot: &mut Option<Session>,
    ) -> Result<(Arc<Client>, Arc<SessionState>), PgError> {
        if let Some(session) = slot.as_ref()
            && session.state.alive.load(Ordering::SeqCst)
            && !session.client.is_closed()
        {
            return Ok((Arc::clone(&session.client), Arc::clone(&session.state)));
        }
        self.store.ready().await?;
        let (client, mut messages) = self.store.dedicated().await?;
        let client = Arc::new(client);
        let state = Arc::new(SessionState {
            alive: AtomicBool::new(true),
            confirmed: Mutex::new(Instant::now()),
        });
        let driver_state = Arc::clone(&state);
        tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                if message.is_err() {
                    break;
                }
            }
            driver_state.alive.store(false, Ordering::SeqCst);
        });
        tokio::spawn(keep_alive(
            Arc::downgrade(&client),
            Arc::clone(&state),
            Arc::downgrade(&self.held),
            self.store.config().lock_lease(),
        ));
        *slot = Some(Session {
            client: Arc::clone(&client),
            state: Arc::clone(&state),
        });
        Ok((client, state))
    }

    /// `pg_try_advisory_lock` on `client`, within the query timeout. A timeout counts as a
    /// dropped session: whether the lock was taken is unknown, and only a new session is sure
    /// to hold nothing it does not know of.
    async fn try_lock(&self, client: &Client, name: &str, what: &str) -> Result<bool, PgError> {
        let timeout = self.store.config().query_timeout();
        let query = async {
            client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                    &[&name],
                )
                .await
        };
        match tokio::time::timeout(timeout, query).await {
            Ok(Ok(row)) => Ok(row.get(0)),
            Ok(Err(e)) => Err(PgError::query(what, &e)),
            Err(_) => Err(PgError::timed_out(what, timeout)),
        }
    }

    fn invalid_key(key: &str) -> Result<()> {
        if key.contains('\0') {
            return Err(Error::InvalidKey {
                key: key.escape_debug().to_string(),
                reason: "lock keys may not contain NUL",
            });
        }
        Ok(())
    }
}

/// Pings the session every third of the lease while it holds keys, recording each answer;
/// ends with the session or the lock.
async fn keep_alive(
    client: Weak<Client>,
    state: Arc<SessionState>,
    held: Weak<Mutex<HashMap<String, Arc<SessionState>>>>,
    lease: Duration,
) {
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let (Some(client), Some(held)) = (client.upgrade(), held.upgrade()) else {
            return;
        };
        if !state.alive.load(Ordering::SeqCst) {
            return;
        }
        let holds_keys = held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|owner| Arc::ptr_eq(owner, &state));
        if !holds_keys {
            // Nothing to vouch for; the next acquire starts from a fresh confirmation.
            state.confirm();
            continue;
        }
        match tokio::time::timeout(every, client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => state.confirm(),
            Ok(Err(_)) => {
                state.alive.store(false, Ordering::SeqCst);
                return;
            }
            // No answer: not confirmed; `ensure_held` counts the lease down.
            Err(_) => {}
        }
    }
}

impl fmt::Debug for PostgresLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held: Vec<String> = self.held().keys().cloned().collect();
        f.debug_struct("PostgresLock")
            .field("schema", &self.store.schema())
            .field("held", &held)
            .finish()
    }
}

#[async_trait]
impl ExecutionLock for PostgresLock {
    async fn acquire(&self, key: &str) -> Result<bool> {
        Self::invalid_key(key)?;
        let mut slot = self.session.lock().await;
        if let Some(owner) = self.held().get(key)
            && owner.alive.load(Ordering::SeqCst)
        {
            return Ok(true);
        }
        let what = format!(
            "acquiring the execution lock `{key}` in schema `{}`",
            self.store.schema()
        );
        let name = self.name(key);
        let mut attempt = 0;
        loop {
            let error = match self.session(&mut slot).await {
                Ok((client, state)) => match self.try_lock(&client, &name, &what).await {
                    Ok(acquired) => {
                        if acquired {
                            state.confirm();
                            self.held().insert(key.to_owned(), state);
                        }
                        return Ok(acquired);
                    }
                    Err(error) => {
                        if error.dropped() {
                            // The session is gone, and every key it held with it: say so to
                            // `ensure_held`, and try again on a new session.
                            state.alive.store(false, Ordering::SeqCst);
                            *slot = None;
                        }
                        error
                    }
                },
                Err(error) => error,
            };
            if !self.store.retry(&error, &mut attempt).await {
                return Err(error.into());
            }
        }
    }

    async fn release(&self, key: &str) -> Result<()> {
        Self::invalid_key(key)?;
        let slot = self.session.lock().await;
        let Some(owner) = self.held().remove(key) else {
            return Ok(());
        };
        let Some(session) = slot.as_ref().filter(|s| Arc::ptr_eq(&s.state, &owner)) else {
            // The session that held it ended, and PostgreSQL freed the lock with it.
            return Ok(());
        };
        if !owner.alive.load(Ordering::SeqCst) || session.client.is_closed() {
            return Ok(());
        }
        let what = format!(
            "releasing the execution lock `{key}` in schema `{}`",
            self.store.schema()
        );
        let timeout = self.store.config().query_timeout();
        let name = self.name(key);
        let unlock = async {
            session
                .client
                .query_one(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                    &[&name],
                )
                .await
        };
        match tokio::time::timeout(timeout, unlock).await {
            Ok(Ok(_)) => Ok(()),
            // A session that fails here is ending, and its locks go with it.
            Ok(Err(e)) if e.is_closed() => Ok(()),
            Ok(Err(e)) => Err(PgError::query(&what, &e).into()),
            Err(_) => Err(PgError::timed_out(&what, timeout).into()),
        }
    }

    fn ensure_held(&self, key: &str) -> Result<()> {
        let lost = |reason: String| Error::LockLost {
            key: key.to_owned(),
            reason,
        };
        let Some(owner) = self.held().get(key).cloned() else {
            return Err(lost("this holder does not hold it".to_owned()));
        };
        if !owner.alive.load(Ordering::SeqCst) {
            return Err(lost(format!(
                "its PostgreSQL session at {} ended, and the advisory lock with it",
                self.store.config().redacted_url()
            )));
        }
        let lease = self.store.config().lock_lease();
        let silent = owner.confirmed().elapsed();
        if silent > lease {
            return Err(lost(format!(
                "its PostgreSQL session at {} has not answered for {silent:?} (lease {lease:?})",
                self.store.config().redacted_url()
            )));
        }
        Ok(())
    }
}
