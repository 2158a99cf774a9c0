//! Work-pool counts over data written before the pools kept counters.

use flatmachines_core::{PushOptions, WorkCounts, WorkPool};
use flatmachines_redis::RedisWorkPool;
use serde_json::json;

use crate::support::TestEnv;

fn counts(pending: u64, claimed: u64, done: u64, poisoned: u64) -> WorkCounts {
    WorkCounts {
        pending,
        claimed,
        done,
        poisoned,
    }
}

/// Drives `pool` to one item in each status and returns the ids of the finished ones.
async fn one_of_each(pool: &RedisWorkPool) -> Vec<String> {
    for n in 0..4 {
        pool.push(json!(n), PushOptions { max_retries: 1 })
            .await
            .unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.claim("w").await.unwrap().unwrap().id);
    }
    pool.complete(&held[0], None).await.unwrap();
    pool.fail(&held[1], Some("boom")).await.unwrap();
    assert_eq!(pool.counts().await.unwrap(), counts(1, 1, 1, 1));
    held.truncate(2);
    held
}

#[tokio::test]
async fn items_finished_before_counters_existed_are_counted_once() {
    let Some(env) = TestEnv::new() else { return };
    let backend = env.client().work();
    // A `:` in a pool name must not confuse which pool an item key belongs to.
    let (plain, nested) = (backend.redis_pool("jobs"), backend.redis_pool("jobs:x"));
    let finished = [one_of_each(&plain).await, one_of_each(&nested).await];
    // What an older version left behind: no counters, no `tallied` marks, no namespace marker.
    let ns = &env.namespace;
    for (pool, ids) in ["jobs", "jobs:x"].iter().zip(&finished) {
        env.raw::<()>(redis::cmd("DEL").arg(format!("{{{ns}}}:counts:{pool}")));
        for id in ids {
            let item = format!("{{{ns}}}:items:{pool}:{id}");
            env.raw::<()>(redis::cmd("HDEL").arg(item).arg("tallied"));
        }
    }
    env.raw::<()>(redis::cmd("DEL").arg(format!("{{{ns}}}:work-counts:tallied")));
    let fresh = env.client().work();
    assert_eq!(
        fresh.redis_pool("jobs").counts().await.unwrap(),
        counts(1, 1, 1, 1),
        "the first counts tallies the namespace"
    );
    assert_eq!(
        fresh.redis_pool("jobs:x").counts().await.unwrap(),
        counts(1, 1, 1, 1)
    );
    assert_eq!(
        fresh.tally_uncounted_items().await.unwrap(),
        0,
        "a second tally finds nothing new"
    );
    let pool = fresh.redis_pool("jobs");
    let last = pool.claim("w").await.unwrap().unwrap();
    pool.complete(&last.id, None).await.unwrap();
    assert_eq!(pool.counts().await.unwrap(), counts(0, 1, 2, 1));
    assert_eq!(
        fresh.redis_pool("jobs:x").counts().await.unwrap(),
        counts(1, 1, 1, 1)
    );
}

#[tokio::test]
async fn a_refused_complete_or_fail_counts_nothing() {
    let Some(env) = TestEnv::new() else { return };
    let pool = env.client().work().redis_pool("jobs");
    for n in 0..2 {
        pool.push(json!(n), PushOptions { max_retries: 1 })
            .await
            .unwrap();
    }
    let (a, b) = (
        pool.claim("w").await.unwrap().unwrap(),
        pool.claim("w").await.unwrap().unwrap(),
    );
    pool.complete(&a.id, None).await.unwrap();
    pool.fail(&b.id, None).await.unwrap();
    // A second call on a finished item is refused and counts nothing.
    assert!(pool.complete(&a.id, None).await.is_err());
    assert!(pool.fail(&b.id, None).await.is_err());
    assert_eq!(pool.counts().await.unwrap(), counts(0, 0, 1, 1));
}
