//! Execution locks as Redis keys with a lease, renewed in the background.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flatmachines_core::{Error, ExecutionLock, Result, validate_key};
use redis::Script;
use tokio::task::AbortHandle;

use crate::RedisClient;

/// Takes a free key, or confirms one this token already holds (a retried acquire whose first
/// answer was lost), with `SET NX PX`.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// Deletes the key only if it still holds this token.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Extends each key still holding its token (ARGV[i]) by the lease (the last ARGV); answers 1
/// or 0 per key.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local lease = ARGV[#ARGV]
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    redis.call('PEXPIRE', key, lease)
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
",
    )
});

/// An [`ExecutionLock`] made of Redis keys `{namespace}:lock:{key}` holding a random token,
/// with a lease.
///
/// - `acquire` is `SET key token NX PX lease`: it never waits for the holder.
/// - `release` deletes the key only if it still holds this holder's token (a Lua
///   compare-and-delete), so a holder whose lease ran out cannot free a key someone else took
///   since.
/// - While a key is held, a background task renews its lease every third of it. If the holder
///   dies, renewals stop and the key frees itself once the lease ends.
/// - [`ensure_held`](ExecutionLock::ensure_held) fails with [`Error::LockLost`] once a renewal
///   found the key taken by someone else, or when less than a third of the lease is left since
///   the last confirmed renewal (Redis unreachable): the runtime checks it before every
///   checkpoint, so a runner that lost its lease stops writing.
///
/// Each `RedisLock` is one holder: two of them contend for the same keys even in one process.
/// A holder asking for a key it holds already is refused, as any other would be. Dropping a
/// `RedisLock` stops its renewals without releasing: its keys free themselves when their
/// leases end, exactly as if the process had died. Release explicitly to free them at once.
///
/// The lease is [`RedisConfig::lease`](crate::RedisConfig::lease) (30 s by default). Leases
/// are measured by the server; this holder's view of its lease is measured from the moment it
/// sent each renewal, so it always errs on the side of "lost".
pub struct RedisLock {
    client: RedisClient,
    lease: Duration,
    held: Arc<Mutex<Held>>,
    renewer: Mutex<Option<AbortHandle>>,
}

type Held = HashMap<String, Lease>;

/// What this holder knows about one key it acquired.
struct Lease {
    token: String,
    /// The server keeps the key at least until then, unless it was taken away.
    confirmed_until: Instant,
    /// Why the key is known to be lost, once it is.
    lost: Option<String>,
}

impl RedisLock {
    /// A new holder in `client`'s namespace.
    pub fn new(client: RedisClient) -> Self {
        RedisLock {
            lease: client.config().lease(),
            client,
            held: Arc::default(),
            renewer: Mutex::default(),
        }
    }

    /// The lease of its keys.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn key(&self, key: &str) -> String {
        self.client.key("lock", key)
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        lock(&self.held)
    }

    /// Starts the renewal task if it is not running.
    fn ensure_renewer(&self) {
        let mut renewer = self.renewer.lock().unwrap_or_else(PoisonError::into_inner);
        if renewer.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let task = tokio::spawn(renew(
            Arc::downgrade(&self.held),
            self.client.clone(),
            self.lease,
        ));
        *renewer = Some(task.abort_handle());
    }
}

fn lock(held: &Mutex<Held>) -> MutexGuard<'_, Held> {
    // Every update is one insert, remove or field assignment: a panic elsewhere cannot leave
    // the map half-changed.
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        if let Some(task) = self
            .renewer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLock")
            .field("client", &self.client)
            .field("lease", &self.lease)
            .field("held", &self.held().len())
            .finish()
    }
}

/// Renews every held key each third of the lease (sooner after a failed attempt) until the
/// lock is dropped.
async fn renew(held: Weak<Mutex<Held>>, client: RedisClient, lease: Duration) {
    let period = lease / 3;
    let mut wait = period;
    loop {
        tokio::time::sleep(wait).await;
        let Some(held) = held.upgrade() else { return };
        let leases: Vec<(String, String)> = lock(&held)
            .iter()
            .filter(|(_, lease)| lease.lost.is_none())
            .map(|(key, lease)| (key.clone(), lease.token.clone()))
            .collect();
        if leases.is_empty() {
            wait = period;
            continue;
        }
        let keys: Vec<String> = leases
            .iter()
            .map(|(key, _)| client.key("lock", key))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let lease_ms = lease.as_millis().to_string();
        let mut args: Vec<&str> = leases.iter().map(|(_, token)| token.as_str()).collect();
        args.push(&lease_ms);
        let sent = Instant::now();
        let subject = format!("{} lock(s)", keys.len());
        match client
            .script::<Vec<i64>>("renew", &subject, &RENEW, &keys, &args)
            .await
        {
            Ok(answers) => {
                let mut held = lock(&held);
                for ((key, token), renewed) in leases.iter().zip(answers) {
                    // Skip keys released (or released and acquired again) meanwhile.
                    let Some(entry) = held.get_mut(key).filter(|entry| &entry.token == token)
                    else {
                        continue;
                    };
                    if renewed == 1 {
                        entry.confirmed_until = sent + lease;
                    } else {
                        tracing::warn!(lock = %key, "the execution lock was lost: its lease ended or another holder took it");
                        entry.lost = Some(
                            "its lease ended before it could be renewed, and the key expired or another holder took it".to_owned(),
                        );
                    }
                }
                wait = period;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not renew execution locks; retrying");
                wait = (period / 4).max(Duration::from_millis(20));
            }
        }
    }
}

#[async_trait]
impl ExecutionLock for RedisLock {
    async fn acquire(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        {
            let mut held = self.held();
            match held.get(key) {
                Some(lease) if lease.lost.is_none() => return Ok(false),
                // A lost key may be taken again, with a new token.
                Some(_) => {
                    held.remove(key);
                }
                None => {}
            }
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let lease_ms = self.lease.as_millis().to_string();
        let stored = self.key(key);
        let sent = Instant::now();
        let acquired: i64 = self
            .client
            .script("acquire", key, &ACQUIRE, &[&stored], &[&token, &lease_ms])
            .await?;
        if acquired != 1 {
            return Ok(false);
        }
        self.held().insert(
            key.to_owned(),
            Lease {
                token,
                confirmed_until: sent + self.lease,
                lost: None,
            },
        );
        self.ensure_renewer();
        Ok(true)
    }

    async fn release(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        // Renewals stop first; if the delete below fails, the lease still runs out.
        let Some(lease) = self.held().remove(key) else {
            return Ok(());
        };
        let stored = self.key(key);
        self.client
            .script::<i64>("release", key, &RELEASE, &[&stored], &[&lease.token])
            .await
            .map(drop)
    }

    fn ensure_held(&self, key: &str) -> Result<()> {
        let lost = |reason: String| Error::LockLost {
            key: key.to_owned(),
            reason,
        };
        let held = self.held();
        let Some(lease) = held.get(key) else {
            return Err(lost("this holder does not hold it".to_owned()));
        };
        if let Some(reason) = &lease.lost {
            return Err(lost(reason.clone()));
        }
        // Less than a third of the lease left means at least one renewal failed: a write
        // started now might land after the key expired.
        let left = lease
            .confirmed_until
            .saturating_duration_since(Instant::now());
        if left < self.lease / 3 {
            return Err(lost(format!(
                "its lease of {:?} could not be renewed (Redis at {} did not confirm it in time)",
                self.lease,
                self.client.server()
            )));
        }
        Ok(())
    }
}
