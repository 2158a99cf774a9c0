//! Blocking reads: woken by another pool's write, and across a terminated LISTEN session.

use std::sync::Arc;
use std::time::Duration;

use flatmachines_core::{ReadOptions, ResultBackend};
use serde_json::json;

use crate::support::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_another_store_wakes_every_reader() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let reader = Arc::new(env.store().results());
    let writer = env.store().results();
    let readers: Vec<_> = (0..20)
        .map(|n| {
            let reader = Arc::clone(&reader);
            tokio::spawn(async move {
                let uri = format!("flatagents://exec-{}/result", n % 4);
                reader
                    .read(&uri, ReadOptions::blocking(Some(Duration::from_secs(30))))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 0..4 {
        writer
            .write(
                &format!("flatagents://exec-{n}/result"),
                json!({"n": n, "b": [1]}),
            )
            .await
            .unwrap();
    }
    for (n, reader) in readers.into_iter().enumerate() {
        let value = reader.await.unwrap().unwrap();
        assert_eq!(value, Some(json!({"n": n % 4, "b": [1]})));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_survives_its_listen_session_being_terminated() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let reader = Arc::new(env.store().results());
    let uri = "flatagents://exec-1/result";
    let waiting = {
        let reader = Arc::clone(&reader);
        tokio::spawn(async move {
            reader
                .read(uri, ReadOptions::blocking(Some(Duration::from_secs(30))))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listening: i64 = env
        .scalar(&format!(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = '{}' AND query LIKE 'LISTEN%'",
            env.application
        ))
        .await;
    assert_eq!(listening, 1, "one LISTEN session");
    assert!(env.kill_connections().await > 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Written by another store while the reader's session is being replaced.
    env.store()
        .results()
        .write(uri, json!("after"))
        .await
        .unwrap();
    let value = waiting.await.unwrap().unwrap();
    assert_eq!(value, Some(json!("after")));
}

#[tokio::test]
async fn key_order_and_odd_text_come_back_as_written() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let results = env.store().results();
    let value = json!({"z": 1, "a": {"y": "\u{0}nul", "b": 1.5e300}, "m": null});
    results
        .write("flatagents://e/x/y", value.clone())
        .await
        .unwrap();
    let read = results
        .read("flatagents://e/x/y", ReadOptions::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::to_string(&read).unwrap(),
        serde_json::to_string(&value).unwrap()
    );
}
