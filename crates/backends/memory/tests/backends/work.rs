use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flatmachines_core::distributed::DEFAULT_MAX_RETRIES;
use flatmachines_core::{Error, PushOptions, WorkBackend, WorkPool, WorkStatus};
use flatmachines_memory::{MemoryWorkBackend, MemoryWorkPool};
use serde_json::json;

fn pool() -> Arc<dyn WorkPool> {
    MemoryWorkBackend::new().pool("jobs")
}

fn retries(max_retries: u32) -> PushOptions {
    PushOptions { max_retries }
}

async fn status(pool: &dyn WorkPool, id: &str) -> WorkStatus {
    pool.get(id).await.unwrap().expect("item exists").status
}

fn assert_conflict(result: Result<(), Error>, id: &str, status: &str) {
    match result {
        Err(Error::Conflict { key, message }) => {
            assert_eq!(key, id);
            assert!(message.contains(status), "{message:?} should name {status}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn push_options_default_to_three_retries() {
    assert_eq!(PushOptions::default().max_retries, 3);
    assert_eq!(DEFAULT_MAX_RETRIES, 3);
}

#[tokio::test]
async fn push_creates_a_pending_item_with_a_uuid_v4_id() {
    let pool = pool();
    let id = pool
        .push(json!({"n": 1}), PushOptions::default())
        .await
        .unwrap();
    let uuid = uuid::Uuid::parse_str(&id).expect("a uuid");
    assert_eq!(uuid.get_version_num(), 4);
    let item = pool.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (item.status, item.attempts, item.max_retries),
        (WorkStatus::Pending, 0, 3)
    );
    assert_eq!(item.data, json!({"n": 1}));
    assert!(item.created_at.ends_with("+00:00"), "{}", item.created_at);
    assert_eq!(
        (item.claimed_by, item.claimed_at, item.error, item.result),
        (None, None, None, None)
    );
    let other = pool.push(json!(2), PushOptions::default()).await.unwrap();
    assert_ne!(id, other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clause1_16_claimers_of_2000_items_get_each_exactly_once() {
    let pool = pool();
    let mut pushed = HashSet::new();
    for i in 0..2000 {
        pushed.insert(pool.push(json!(i), PushOptions::default()).await.unwrap());
    }
    let claimers: Vec<_> = (0..16)
        .map(|worker| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(item) = pool.claim(&format!("w{worker}")).await.unwrap() {
                    assert_eq!(item.claimed_by, Some(format!("w{worker}")));
                    claimed.push(item.id);
                    tokio::task::yield_now().await;
                }
                claimed
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut count = 0;
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            count += 1;
            assert!(seen.insert(id), "an item was claimed twice");
        }
    }
    assert_eq!(count, 2000);
    assert_eq!(seen, pushed);
    assert_eq!(pool.size().await.unwrap(), 0);
    assert_eq!(pool.claim("late").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clause1_concurrent_pushes_and_claims_lose_and_duplicate_nothing() {
    let pool = pool();
    let pushing_done = Arc::new(AtomicBool::new(false));
    let pushers: Vec<_> = (0..8)
        .map(|p| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..250 {
                    ids.push(
                        pool.push(json!([p, i]), PushOptions::default())
                            .await
                            .unwrap(),
                    );
                    tokio::task::yield_now().await;
                }
                ids
            })
        })
        .collect();
    let claimers: Vec<_> = (0..8)
        .map(|c| {
            let (pool, done) = (Arc::clone(&pool), Arc::clone(&pushing_done));
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    // Read the flag before claiming: a `None` after pushing ended is final.
                    let finished = done.load(Ordering::SeqCst);
                    match pool.claim(&format!("c{c}")).await.unwrap() {
                        Some(item) => claimed.push(item.id),
                        None if finished => return claimed,
                        None => tokio::task::yield_now().await,
                    }
                }
            })
        })
        .collect();
    let mut pushed = HashSet::new();
    for pusher in pushers {
        pushed.extend(pusher.await.unwrap());
    }
    pushing_done.store(true, Ordering::SeqCst);
    let mut claimed = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            assert!(claimed.insert(id), "an item was claimed twice");
        }
    }
    assert_eq!(pushed.len(), 2000);
    assert_eq!(claimed, pushed);
}

#[tokio::test]
async fn clause1_claim_of_an_empty_pool_is_none() {
    let pool = pool();
    assert_eq!(pool.claim("w").await.unwrap(), None);
    pool.push(json!(1), PushOptions::default()).await.unwrap();
    assert!(pool.claim("w").await.unwrap().is_some());
    assert_eq!(
        pool.claim("w").await.unwrap(),
        None,
        "claimed items are not pending"
    );
}

#[tokio::test]
async fn clause1_claim_takes_the_oldest_pending_item_first() {
    let pool = pool();
    let ids: Vec<String> =
        futures::future::try_join_all((0..5).map(|i| pool.push(json!(i), PushOptions::default())))
            .await
            .unwrap();
    for (i, id) in ids.iter().enumerate() {
        let item = pool.claim("w").await.unwrap().unwrap();
        assert_eq!(item.data, json!(i));
        assert_eq!(&item.id, id);
    }
}

#[tokio::test]
async fn clause1_claims_stay_fast_with_100k_items() {
    let pool = MemoryWorkPool::new("big");
    for i in 0..100_000 {
        pool.push(json!(i), PushOptions::default()).await.unwrap();
    }
    // A claim that scanned the pool would make this quadratic: minutes, not milliseconds.
    let started = Instant::now();
    for i in 0..100_000 {
        let item = pool.claim("w").await.unwrap().unwrap();
        assert_eq!(item.data, json!(i));
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(pool.claim("w").await.unwrap(), None);
}

#[tokio::test]
async fn clause2_claim_marks_records_and_counts_the_attempt() {
    let pool = pool();
    let id = pool.push(json!("x"), PushOptions::default()).await.unwrap();
    let item = pool.claim("worker-7").await.unwrap().unwrap();
    assert_eq!(item.id, id);
    assert_eq!(item.status, WorkStatus::Claimed);
    assert_eq!(item.claimed_by.as_deref(), Some("worker-7"));
    let claimed_at = item.claimed_at.clone().expect("claim time");
    assert!(
        chrono::DateTime::parse_from_rfc3339(&claimed_at).is_ok(),
        "{claimed_at}"
    );
    assert_eq!(item.attempts, 1);
    assert_eq!(pool.get(&id).await.unwrap(), Some(item));
}

#[tokio::test]
async fn clause3_complete_marks_done_stores_the_result_and_keeps_the_item() {
    let pool = pool();
    let id = pool.push(json!(1), PushOptions::default()).await.unwrap();
    pool.claim("w").await.unwrap();
    pool.complete(&id, Some(json!({"answer": 42})))
        .await
        .unwrap();
    let item = pool.get(&id).await.unwrap().unwrap();
    assert_eq!(item.status, WorkStatus::Done);
    assert_eq!(item.result, Some(json!({"answer": 42})));
    assert_eq!(
        pool.claim("w").await.unwrap(),
        None,
        "done items are not claimed again"
    );
}

#[tokio::test]
async fn clause4_fail_returns_to_pending_until_max_retries_then_poisons() {
    let pool = pool();
    let id = pool.push(json!("flaky"), retries(3)).await.unwrap();
    for attempt in 1..=3 {
        let item = pool.claim("w").await.unwrap().expect("still claimable");
        assert_eq!((item.id.as_str(), item.attempts), (id.as_str(), attempt));
        pool.fail(&id, Some(&format!("boom {attempt}")))
            .await
            .unwrap();
        let item = pool.get(&id).await.unwrap().unwrap();
        assert_eq!(
            item.error.as_deref(),
            Some(format!("boom {attempt}").as_str())
        );
        if attempt < 3 {
            assert_eq!(item.status, WorkStatus::Pending);
            assert_eq!((item.claimed_by, item.claimed_at), (None, None));
            assert_eq!(pool.size().await.unwrap(), 1);
        } else {
            assert_eq!(item.status, WorkStatus::Poisoned);
        }
    }
    assert_eq!(pool.size().await.unwrap(), 0);
    assert_eq!(
        pool.claim("w").await.unwrap(),
        None,
        "poisoned items are never claimed"
    );
    let poisoned = pool
        .get(&id)
        .await
        .unwrap()
        .expect("poisoned items are kept");
    assert_eq!(
        (poisoned.status, poisoned.attempts),
        (WorkStatus::Poisoned, 3)
    );
}

#[tokio::test]
async fn clause4_a_failed_item_queues_behind_waiting_items() {
    let pool = pool();
    let first = pool.push(json!(1), PushOptions::default()).await.unwrap();
    let second = pool.push(json!(2), PushOptions::default()).await.unwrap();
    pool.claim("w").await.unwrap();
    pool.fail(&first, None).await.unwrap();
    assert_eq!(pool.get(&first).await.unwrap().unwrap().error, None);
    assert_eq!(pool.claim("w").await.unwrap().unwrap().id, second);
    assert_eq!(pool.claim("w").await.unwrap().unwrap().id, first);
}

#[tokio::test]
async fn clause4_zero_or_one_retries_poison_on_the_first_failure() {
    let pool = pool();
    for max in [0, 1] {
        let id = pool.push(json!(max), retries(max)).await.unwrap();
        pool.claim("w").await.unwrap();
        pool.fail(&id, Some("e")).await.unwrap();
        assert_eq!(
            status(&*pool, &id).await,
            WorkStatus::Poisoned,
            "max_retries {max}"
        );
    }
}

#[tokio::test]
async fn complete_and_fail_of_an_item_that_is_not_claimed_conflict() {
    let pool = pool();
    let pending = pool.push(json!(1), PushOptions::default()).await.unwrap();
    assert_conflict(pool.complete(&pending, None).await, &pending, "pending");
    assert_conflict(pool.fail(&pending, None).await, &pending, "pending");
    assert_eq!(
        status(&*pool, &pending).await,
        WorkStatus::Pending,
        "unchanged"
    );

    pool.claim("w").await.unwrap();
    pool.complete(&pending, Some(json!("r"))).await.unwrap();
    assert_conflict(pool.complete(&pending, None).await, &pending, "done");
    assert_conflict(pool.fail(&pending, Some("late")).await, &pending, "done");
    let done = pool.get(&pending).await.unwrap().unwrap();
    assert_eq!(
        (done.result, done.error),
        (Some(json!("r")), None),
        "unchanged"
    );

    let poisoned = pool.push(json!(2), retries(1)).await.unwrap();
    pool.claim("w").await.unwrap();
    pool.fail(&poisoned, None).await.unwrap();
    assert_conflict(pool.fail(&poisoned, None).await, &poisoned, "poisoned");
    assert_conflict(pool.complete(&poisoned, None).await, &poisoned, "poisoned");
}

#[tokio::test]
async fn clause5_size_counts_pending_items_only() {
    let pool = pool();
    let ids: Vec<String> =
        futures::future::try_join_all((0..5).map(|i| pool.push(json!(i), retries(1))))
            .await
            .unwrap();
    assert_eq!(pool.size().await.unwrap(), 5);
    for _ in 0..3 {
        pool.claim("w").await.unwrap();
    }
    assert_eq!(
        pool.size().await.unwrap(),
        2,
        "claimed items are not counted"
    );
    pool.complete(&ids[0], None).await.unwrap();
    pool.fail(&ids[1], None).await.unwrap();
    assert_eq!(status(&*pool, &ids[1]).await, WorkStatus::Poisoned);
    assert_eq!(
        pool.size().await.unwrap(),
        2,
        "done and poisoned items are not counted"
    );
    pool.release_by_worker("w").await.unwrap();
    assert_eq!(pool.size().await.unwrap(), 3, "released items count again");
}

#[tokio::test]
async fn clause6_release_by_worker_returns_only_that_workers_claims() {
    let pool = pool();
    for i in 0..6 {
        pool.push(json!(i), PushOptions::default()).await.unwrap();
    }
    let a1 = pool.claim("a").await.unwrap().unwrap();
    let b1 = pool.claim("b").await.unwrap().unwrap();
    let a2 = pool.claim("a").await.unwrap().unwrap();
    let a3 = pool.claim("a").await.unwrap().unwrap();
    pool.complete(&a3.id, None).await.unwrap();

    assert_eq!(pool.release_by_worker("a").await.unwrap(), 2);
    for id in [&a1.id, &a2.id] {
        let item = pool.get(id).await.unwrap().unwrap();
        assert_eq!(
            (item.status, item.claimed_by, item.attempts),
            (WorkStatus::Pending, None, 1)
        );
    }
    assert_eq!(status(&*pool, &b1.id).await, WorkStatus::Claimed);
    assert_eq!(status(&*pool, &a3.id).await, WorkStatus::Done);
    assert_eq!(pool.size().await.unwrap(), 4);
    assert_eq!(pool.release_by_worker("a").await.unwrap(), 0);
    assert_eq!(pool.release_by_worker("nobody").await.unwrap(), 0);

    let mut reclaimed = HashSet::new();
    while let Some(item) = pool.claim("c").await.unwrap() {
        reclaimed.insert(item.id);
    }
    assert!(reclaimed.contains(&a1.id) && reclaimed.contains(&a2.id));
    assert_eq!(reclaimed.len(), 4);
}

#[tokio::test]
async fn clause7_unknown_items() {
    let pool = pool();
    for result in [
        pool.complete("nope", None).await,
        pool.fail("nope", Some("e")).await,
    ] {
        match result {
            Err(Error::NotFound { what, key }) => {
                assert_eq!((what, key.as_str()), ("work item", "nope"))
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert_eq!(pool.get("nope").await.unwrap(), None);
}

#[tokio::test]
async fn clause8_pools_with_different_names_share_nothing() {
    let backend = MemoryWorkBackend::new();
    let (a, b) = (backend.pool("a"), backend.pool("b"));
    let id = a.push(json!(1), PushOptions::default()).await.unwrap();
    assert_eq!((a.size().await.unwrap(), b.size().await.unwrap()), (1, 0));
    assert_eq!(b.get(&id).await.unwrap(), None);
    assert_eq!(b.claim("w").await.unwrap(), None);
    assert!(matches!(
        b.complete(&id, None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(a.claim("w").await.unwrap().is_some());
}

#[tokio::test]
async fn the_same_name_gives_the_same_pool_across_clones() {
    let backend = MemoryWorkBackend::default();
    let first = backend.pool("jobs");
    let id = first.push(json!(1), PushOptions::default()).await.unwrap();
    let again = backend.clone().pool("jobs");
    assert!(Arc::ptr_eq(&first, &again));
    assert!(again.get(&id).await.unwrap().is_some());
    let pool = MemoryWorkPool::new("named");
    assert_eq!(pool.name(), "named");
    assert!(format!("{pool:?} {backend:?}").contains("named"));
}
