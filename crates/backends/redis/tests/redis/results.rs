//! Blocking reads: many readers, and a subscription whose connection is killed.

use std::sync::Arc;
use std::time::Duration;

use flatmachines_core::{ReadOptions, ResultBackend};
use serde_json::json;

use crate::support::TestEnv;

const PATIENCE: Option<Duration> = Some(Duration::from_secs(20));

#[tokio::test]
async fn one_write_wakes_every_blocked_reader() {
    let Some(env) = TestEnv::new() else { return };
    let results = Arc::new(env.client().results());
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let results = Arc::clone(&results);
            tokio::spawn(async move {
                results
                    .read(
                        "flatagents://exec-1/result",
                        ReadOptions::blocking(PATIENCE),
                    )
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let writer = env.client().results();
    writer
        .write("flatagents://exec-1/result", json!({"ok": [1, 2.5, {}]}))
        .await
        .unwrap();
    for reader in readers {
        let value = reader.await.unwrap().unwrap();
        assert_eq!(value, Some(json!({"ok": [1, 2.5, {}]})));
    }
}

#[tokio::test]
async fn a_reader_survives_its_subscription_being_killed() {
    let Some(env) = TestEnv::new() else { return };
    let results = Arc::new(env.client().results());
    let reader = {
        let results = Arc::clone(&results);
        tokio::spawn(async move {
            results
                .read(
                    "flatagents://exec-2/result",
                    ReadOptions::blocking(PATIENCE),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(env.kill_connections() > 0, "no connection to kill");
    // Written by another user's connection, while the reader's subscription is down or
    // coming back.
    let writer = flatmachines_redis::RedisClient::open(&format!(
        "{}{}namespace={}",
        crate::support::url(),
        if crate::support::url().contains('?') {
            '&'
        } else {
            '?'
        },
        env.namespace
    ))
    .unwrap()
    .results();
    writer
        .write("flatagents://exec-2/result", json!("done"))
        .await
        .unwrap();
    assert_eq!(reader.await.unwrap().unwrap(), Some(json!("done")));
}
