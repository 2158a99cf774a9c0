//! Work pools: claims read an index of pending items only, and keep order and attempts.

use flatmachines_core::{PushOptions, WorkPool, WorkStatus};
use serde_json::json;

use crate::support::TestEnv;

#[tokio::test]
async fn claims_read_the_pending_index_with_100k_finished_items() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let pool = env.store().work().postgres_pool("jobs");
    pool.push(json!({"n": 0}), PushOptions::default())
        .await
        .unwrap();
    let table = format!("\"{}\".work_items", env.schema);
    env.sql(&format!(
        "INSERT INTO {table} (pool, id, data, status, max_retries, attempts)
         SELECT 'jobs', 'done-' || n, '{{}}', 'done', 3, 1 FROM generate_series(1, 100000) n;
         ANALYZE {table};"
    ))
    .await;
    // The claim's subquery, as the pool sends it.
    let plan = env
        .lines(&format!(
            "EXPLAIN SELECT id FROM {table} WHERE pool = 'jobs' AND status = 'pending'
             ORDER BY queue_order LIMIT 1 FOR UPDATE SKIP LOCKED"
        ))
        .await
        .join("\n");
    assert!(
        plan.contains("work_items_pending"),
        "the claim does not use the pending index:\n{plan}"
    );
    let item = pool.claim("w").await.unwrap().unwrap();
    assert_eq!(item.data, json!({"n": 0}));
    assert_eq!(pool.size().await.unwrap(), 0);
    assert_eq!(pool.claim("w").await.unwrap(), None);
}

#[tokio::test]
async fn items_go_out_oldest_first_and_requeued_ones_wait_their_turn() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let pool = env.store().work().postgres_pool("jobs");
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            pool.push(json!(n), PushOptions { max_retries: 2 })
                .await
                .unwrap(),
        );
    }
    let first = pool.claim("w").await.unwrap().unwrap();
    assert_eq!(first.id, ids[0]);
    pool.fail(&first.id, Some("boom")).await.unwrap();
    let order: Vec<String> = [
        pool.claim("w").await.unwrap(),
        pool.claim("w").await.unwrap(),
        pool.claim("w").await.unwrap(),
    ]
    .into_iter()
    .map(|item| item.map(|i| i.id).unwrap_or_default())
    .collect();
    assert_eq!(order, [ids[1].clone(), ids[2].clone(), ids[0].clone()]);
    let again = pool.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!((again.attempts, again.error.as_deref()), (2, Some("boom")));
    pool.fail(&ids[0], None).await.unwrap();
    let poisoned = pool.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(poisoned.status, WorkStatus::Poisoned);
    assert_eq!(
        poisoned.claimed_by.as_deref(),
        Some("w"),
        "kept for inspection"
    );
    assert_eq!(pool.release_by_worker("w").await.unwrap(), 2);
    let released = pool.get(&ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (released.status, released.attempts),
        (WorkStatus::Pending, 1)
    );
    assert_eq!(released.claimed_by, None);
}
