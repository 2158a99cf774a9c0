//! The `LISTEN` session of a result backend, and the readers waiting on it.
//!
//! Readers register a [`Waiter`] for their key *before* they look at the table, and the
//! listener is listening before they look, so a write that commits after the look sends a
//! notification that reaches the waiter: there is no gap between check and wait. When the
//! session ends, every waiter is woken to look again (and to listen anew), since the
//! notifications sent while nobody listened are gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client};

use crate::error::PgError;
use crate::store::PostgresStore;

/// PostgreSQL refuses payloads of 8000 bytes and more; longer keys are cut to this many
/// bytes, which can only wake a few readers needlessly.
const MAX_PAYLOAD: usize = 4000;

/// The notification payload for `key`.
pub(crate) fn payload(key: &str) -> &str {
    if key.len() <= MAX_PAYLOAD {
        return key;
    }
    let mut end = MAX_PAYLOAD;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

type Slots = Arc<Mutex<HashMap<String, Slot>>>;

struct Slot {
    notify: Arc<Notify>,
    waiters: usize,
}

fn slots(slots: &Slots) -> MutexGuard<'_, HashMap<String, Slot>> {
    // Updates are single inserts and counter changes: consistent after a panic.
    slots.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One `LISTEN` session, opened on the first blocking read and again after it ends.
pub(crate) struct Listener {
    store: PostgresStore,
    channel: String,
    slots: Slots,
    session: tokio::sync::Mutex<Option<Session>>,
}

struct Session {
    _client: Client,
    alive: Arc<AtomicBool>,
    driver: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Listener {
    pub(crate) fn new(store: PostgresStore, channel: String) -> Self {
        Listener {
            store,
            channel,
            slots: Arc::default(),
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// Registers interest in `key`; notifications for it wake the returned waiter.
    pub(crate) fn waiter(&self, key: &str) -> Waiter {
        let key = payload(key).to_owned();
        let notify = {
            let mut slots = slots(&self.slots);
            let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
                notify: Arc::new(Notify::new()),
                waiters: 0,
            });
            slot.waiters += 1;
            Arc::clone(&slot.notify)
        };
        Waiter {
            slots: Arc::clone(&self.slots),
            key,
            notify,
        }
    }

    /// Makes sure the session is listening, opening it if needed.
    pub(crate) async fn listening(&self) -> Result<(), PgError> {
        let mut session = self.session.lock().await;
        if session
            .as_ref()
            .is_some_and(|s| s.alive.load(Ordering::SeqCst))
        {
            return Ok(());
        }
        *session = None;
        let (client, mut messages) = self.store.dedicated().await?;
        let alive = Arc::new(AtomicBool::new(true));
        let driver = {
            let (alive, slots) = (Arc::clone(&alive), Arc::clone(&self.slots));
            tokio::spawn(async move {
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(note)) => wake(&slots, note.payload()),
                        Ok(_) => {}
                        Err(error) => {
                            tracing::debug!(target: "flatmachines::postgres", %error, "the LISTEN session ended");
                            break;
                        }
                    }
                }
                alive.store(false, Ordering::SeqCst);
                // Whatever was notified while this session was down is lost: everyone looks
                // again.
                wake_all(&slots);
            })
        };
        let what = format!("listening on channel `{}`", self.channel);
        let listen = format!("LISTEN \"{}\"", self.channel);
        let timeout = self.store.config().query_timeout();
        match tokio::time::timeout(timeout, client.batch_execute(&listen)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(PgError::query(&what, &e)),
            Err(_) => return Err(PgError::timed_out(&what, timeout)),
        }
        *session = Some(Session {
            _client: client,
            alive,
            driver,
        });
        Ok(())
    }
}

fn wake(slots_: &Slots, payload: &str) {
    if let Some(slot) = slots(slots_).get(payload) {
        slot.notify.notify_waiters();
    }
}

fn wake_all(slots_: &Slots) {
    for slot in slots(slots_).values() {
        slot.notify.notify_waiters();
    }
}

/// A reader's registration for one key; dropping it unregisters.
pub(crate) struct Waiter {
    slots: Slots,
    key: String,
    notify: Arc<Notify>,
}

impl Waiter {
    /// The `Notify` woken for this key. Enable a `notified()` future *before* checking the
    /// table, then await it.
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut slots = slots(&self.slots);
        if let Some(slot) = slots.get_mut(&self.key) {
            slot.waiters -= 1;
            if slot.waiters == 0 {
                slots.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_cut_on_a_character_boundary() {
        assert_eq!(payload("exec/result"), "exec/result");
        let long = "é".repeat(3000);
        let cut = payload(&long);
        assert!(cut.len() <= MAX_PAYLOAD && long.starts_with(cut));
        assert_eq!(cut.len(), MAX_PAYLOAD);
    }
}
