//! Execution results as Redis strings, with blocking reads woken by pub/sub.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use flatmachines_core::{Error, ReadOptions, Result, ResultBackend, ResultUri};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::RedisClient;

/// How often a blocked reader looks again even without a notification: a safety net for a
/// notification lost with a subscriber connection, never the way readers normally wake.
const FALLBACK_POLL: Duration = Duration::from_secs(5);

/// A [`ResultBackend`] keeping each result as JSON text at `{namespace}:result:{id}/{path}`.
///
/// `write` stores the value and publishes its key on the namespace's channel in one
/// `MULTI`/`EXEC` transaction. A blocking `read` registers itself, then reads, then sleeps
/// until a notification for its key arrives: because the subscription is live before the
/// read, a write landing between the read and the sleep still wakes it. The subscription is
/// one extra connection per `RedisResultBackend`, opened by the first blocking read and kept
/// until the backend is dropped; when it drops it is opened again, and every blocked reader
/// reads once more, so a write made while it was down is not missed. Blocked readers also look
/// again every 5 seconds in case a notification was lost some other way.
///
/// A blocking read with a timeout fails with [`Error::Timeout`] once it passes; reads,
/// writes and the subscription's connection are bounded by the client's timeouts, and a
/// read whose Redis is unreachable fails rather than waits.
pub struct RedisResultBackend {
    client: RedisClient,
    shared: Arc<Shared>,
    listener: Mutex<Option<AbortHandle>>,
}

/// What the readers and the subscription task share.
struct Shared {
    /// One notifier per key with blocked readers, and how many readers use it.
    waiting: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
    /// Whether the subscription is live; every change wakes all readers.
    live: watch::Sender<bool>,
}

impl RedisResultBackend {
    /// Results in `client`'s namespace.
    pub fn new(client: RedisClient) -> Self {
        RedisResultBackend {
            client,
            shared: Arc::new(Shared {
                waiting: Mutex::default(),
                live: watch::Sender::new(false),
            }),
            listener: Mutex::default(),
        }
    }

    fn key(&self, key: &str) -> String {
        self.client.key("result", key)
    }

    fn channel(&self) -> String {
        self.client.key("results-written", "")
    }

    fn ensure_listener(&self) {
        let mut listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        if listener.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let task = tokio::spawn(listen(
            Arc::downgrade(&self.shared),
            self.client.clone(),
            self.channel(),
        ));
        *listener = Some(task.abort_handle());
    }

    async fn get(&self, uri: &str, key: &str) -> Result<Option<Value>> {
        let stored = self.key(key);
        let text: Option<Vec<u8>> = self
            .client
            .run("read result", key, |mut conn| {
                let stored = &stored;
                async move { redis::cmd("GET").arg(stored).query_async(&mut conn).await }
            })
            .await?;
        text.map(|text| {
            serde_json::from_slice(&text).map_err(|source| Error::Serialization {
                action: "decode",
                what: format!("the result at {uri}"),
                source,
            })
        })
        .transpose()
    }

    async fn wait_for(&self, uri: &str, key: &str, timeout: Option<Duration>) -> Result<Value> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let waiter = Waiter::register(&self.shared, key);
        let mut live = self.shared.live.subscribe();
        self.ensure_listener();
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            // From here on a notification for the key is kept for us, so the read below
            // cannot miss a write.
            notified.as_mut().enable();
            live.borrow_and_update();
            if let Some(value) = self.get(uri, key).await? {
                return Ok(value);
            }
            let expired = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut notified => {}
                // The subscription came up or went down: look again.
                _ = live.changed() => {}
                () = tokio::time::sleep(FALLBACK_POLL) => {}
                () = expired => {
                    // A write may have landed just now; it wins over the timeout.
                    if let Some(value) = self.get(uri, key).await? {
                        return Ok(value);
                    }
                    return Err(Error::Timeout {
                        what: format!("a result at {uri}"),
                        after: timeout.unwrap_or_default(),
                    });
                }
            }
        }
    }
}

impl Drop for RedisResultBackend {
    fn drop(&mut self) {
        if let Some(task) = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl fmt::Debug for RedisResultBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisResultBackend")
            .field("client", &self.client)
            .field("waiting_keys", &waiting(&self.shared).len())
            .finish()
    }
}

fn waiting(shared: &Shared) -> MutexGuard<'_, HashMap<String, (Arc<Notify>, usize)>> {
    // Each update is one insert, removal or count change: never left half-done.
    shared
        .waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A blocked reader's registration; dropping it (on return, timeout or cancellation) removes
/// the key's notifier when it was the last reader.
struct Waiter {
    shared: Arc<Shared>,
    key: String,
    notify: Arc<Notify>,
}

impl Waiter {
    fn register(shared: &Arc<Shared>, key: &str) -> Self {
        let mut waiting = waiting(shared);
        let entry = waiting
            .entry(key.to_owned())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        Waiter {
            shared: Arc::clone(shared),
            key: key.to_owned(),
            notify: Arc::clone(&entry.0),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiting = waiting(&self.shared);
        if let Some(entry) = waiting.get_mut(&self.key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                waiting.remove(&self.key);
            }
        }
    }
}

/// Keeps a subscription to the namespace's channel and wakes the readers of each key
/// published there, until the backend is dropped.
async fn listen(shared: Weak<Shared>, client: RedisClient, channel: String) {
    let mut failures: u32 = 0;
    loop {
        let subscribed = async {
            let mut subscriber = client.subscriber().await?;
            subscriber.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(subscriber)
        }
        .await;
        let Some(state) = shared.upgrade() else {
            return;
        };
        match subscribed {
            Ok(subscriber) => {
                failures = 0;
                state.live.send_replace(true);
                drop(state);
                let mut messages = subscriber.into_on_message();
                while let Some(message) = messages.next().await {
                    let Some(state) = shared.upgrade() else {
                        return;
                    };
                    let Ok(key) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Some((notify, _)) = waiting(&state).get(&key) {
                        notify.notify_waiters();
                    }
                }
                let Some(state) = shared.upgrade() else {
                    return;
                };
                tracing::debug!(%channel, "the result subscription dropped; opening it again");
                state.live.send_replace(false);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(%channel, error = %e, "cannot subscribe to result notifications; blocked reads poll until it works");
                drop(state);
                let pause = Duration::from_millis(100u64 << failures.min(5));
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[async_trait]
impl ResultBackend for RedisResultBackend {
    async fn write(&self, uri: &str, data: Value) -> Result<()> {
        let key = ResultUri::parse(uri)?.key();
        let text = serde_json::to_vec(&data).map_err(|source| Error::Serialization {
            action: "encode",
            what: format!("the result for {uri}"),
            source,
        })?;
        let mut transaction = redis::pipe();
        transaction
            .atomic()
            .set(self.key(&key), text)
            .ignore()
            .publish(self.channel(), &key)
            .ignore();
        self.client
            .run("write result", &key, |mut conn| {
                let transaction = &transaction;
                async move { transaction.query_async::<()>(&mut conn).await }
            })
            .await
    }

    async fn read(&self, uri: &str, options: ReadOptions) -> Result<Option<Value>> {
        let key = ResultUri::parse(uri)?.key();
        if options.block {
            self.wait_for(uri, &key, options.timeout).await.map(Some)
        } else {
            self.get(uri, &key).await
        }
    }

    async fn exists(&self, uri: &str) -> Result<bool> {
        let key = ResultUri::parse(uri)?.key();
        let stored = self.key(&key);
        self.client
            .run("check result", &key, |mut conn| {
                let stored = &stored;
                async move {
                    redis::cmd("EXISTS")
                        .arg(stored)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await
    }

    async fn delete(&self, uri: &str) -> Result<()> {
        let key = ResultUri::parse(uri)?.key();
        let stored = self.key(&key);
        self.client
            .run("delete result", &key, |mut conn| {
                let stored = &stored;
                async move {
                    redis::cmd("DEL")
                        .arg(stored)
                        .query_async::<()>(&mut conn)
                        .await
                }
            })
            .await
    }
}
