//! Leases: renewed while held, reported lost when taken or unconfirmable, never stolen back.

use std::time::{Duration, Instant};

use flatmachines_core::{Error, ExecutionLock};
use flatmachines_redis::RedisLock;

use crate::support::TestEnv;

const LEASE: Duration = Duration::from_millis(600);

fn lock(env: &TestEnv) -> RedisLock {
    flatmachines_redis::RedisClient::new(env.config().with_lease(LEASE))
        .expect("a client")
        .lock()
}

/// Polls `ensure_held` until it fails, for at most `limit`.
async fn until_lost(lock: &RedisLock, key: &str, limit: Duration) -> Error {
    let started = Instant::now();
    loop {
        if let Err(e) = lock.ensure_held(key) {
            return e;
        }
        assert!(
            started.elapsed() < limit,
            "the lock still claimed to hold `{key}` after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn renewals_keep_a_key_held_for_many_leases() {
    let Some(env) = TestEnv::new() else { return };
    let (holder, other) = (lock(&env), lock(&env));
    assert!(holder.acquire("exec-1").await.unwrap());
    for _ in 0..5 {
        tokio::time::sleep(LEASE).await;
        assert!(
            !other.acquire("exec-1").await.unwrap(),
            "the lease ran out while renewed"
        );
        holder.ensure_held("exec-1").unwrap();
    }
    holder.release("exec-1").await.unwrap();
    assert!(other.acquire("exec-1").await.unwrap());
    other.release("exec-1").await.unwrap();
    assert!(
        matches!(other.ensure_held("exec-1"), Err(Error::LockLost { .. })),
        "a released key is not held"
    );
}

#[tokio::test]
async fn a_taken_key_is_reported_lost_and_not_released_by_the_loser() {
    let Some(env) = TestEnv::new() else { return };
    let holder = lock(&env);
    assert!(holder.acquire("exec-1").await.unwrap());
    holder.ensure_held("exec-1").unwrap();
    // Someone else owns the key now, as after an expiry and a new acquire.
    let key = format!("{{{}}}:lock:exec-1", env.namespace);
    env.raw::<()>(
        redis::cmd("SET")
            .arg(&key)
            .arg("someone-else")
            .arg("PX")
            .arg(60_000),
    );
    let error = until_lost(&holder, "exec-1", LEASE * 3).await;
    let message = error.to_string();
    assert!(message.contains("`exec-1` was lost"), "{message}");
    assert!(!error.is_retryable());
    // The compare-and-delete leaves the new owner's key alone.
    holder.release("exec-1").await.unwrap();
    let owner: Option<String> = env.raw(redis::cmd("GET").arg(&key));
    assert_eq!(owner.as_deref(), Some("someone-else"));
}

#[tokio::test]
async fn an_unreachable_server_makes_the_lease_unsure_and_calls_fail_in_time() {
    let Some(env) = TestEnv::new() else { return };
    let holder = lock(&env);
    assert!(holder.acquire("exec-1").await.unwrap());
    // Every connection of this test goes, and no new one is let in.
    env.set_user(false);
    env.kill_connections();
    let error = until_lost(&holder, "exec-1", LEASE * 3).await;
    assert!(
        error.to_string().contains("could not be renewed"),
        "{error}"
    );
    let started = Instant::now();
    let refused = holder.acquire("exec-2").await;
    assert!(refused.is_err(), "acquire without a server: {refused:?}");
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("cannot acquire `exec-2` on Redis at"),
        "{message}"
    );
    assert!(
        !message.contains(&env.user_url()),
        "the password leaked: {message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "acquire took {:?}",
        started.elapsed()
    );
    // Back online, the holder is sure of the key again: a renewal finds its token still
    // there, or the key expired and it takes it anew.
    env.set_user(true);
    let started = Instant::now();
    while holder.ensure_held("exec-1").is_err() && !holder.acquire("exec-1").await.unwrap() {
        assert!(
            started.elapsed() < LEASE * 10,
            "the holder never recovered the key"
        );
        tokio::time::sleep(LEASE / 10).await;
    }
}

#[tokio::test]
async fn a_holder_dropped_without_release_frees_its_key_after_the_lease() {
    let Some(env) = TestEnv::new() else { return };
    let (holder, other) = (lock(&env), lock(&env));
    assert!(holder.acquire("exec-1").await.unwrap());
    drop(holder);
    let started = Instant::now();
    while !other.acquire("exec-1").await.unwrap() {
        assert!(started.elapsed() < LEASE * 5, "the key outlived its lease");
        tokio::time::sleep(LEASE / 10).await;
    }
}
