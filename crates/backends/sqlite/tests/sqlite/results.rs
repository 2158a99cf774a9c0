//! Results shared between processes: a blocked reader wakes when another process writes, in
//! either direction, and rows are laid out as documented.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flatmachines_core::{Error, ReadOptions, ResultBackend};
use flatmachines_sqlite::{SqliteConfig, SqliteDatabase};
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection};

use crate::support::{HELPER_DB_ENV, HELPER_TASK_ENV, HelperProcess, TempDb, say};

const HELPER: &str = "results::results_helper";

/// What the helper writes, and the parent reads, across processes.
fn child_output() -> Value {
    json!({"status": "done", "items": [1, "two", null], "nested": {"ok": true}})
}

/// Milliseconds since the Unix epoch: the one clock both processes read.
fn wall_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Not a test of its own: the tests below start this binary again to run a task here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_helper() {
    let Ok(task) = std::env::var(HELPER_TASK_ENV) else {
        return;
    };
    let path = PathBuf::from(std::env::var(HELPER_DB_ENV).unwrap());
    let db = SqliteDatabase::connect(SqliteConfig::new(&path))
        .await
        .unwrap();
    let results = db.results();
    match task.as_str() {
        // Writes the child's output after a pause, so the parent's readers are asleep.
        "write" => {
            say("READY");
            tokio::time::sleep(Duration::from_millis(300)).await;
            results
                .write("flatagents://child-1/result", child_output())
                .await
                .unwrap();
            say(&format!("WROTE {}", wall_millis()));
        }
        // Waits for the parent's output and says when it arrived and what it was.
        "wait" => {
            say("WAITING");
            let read = results
                .read(
                    "flatagents://parent-1/result",
                    ReadOptions::blocking(Some(Duration::from_secs(30))),
                )
                .await
                .unwrap()
                .unwrap();
            say(&format!("GOT {} {read}", wall_millis()));
        }
        other => panic!("unknown helper task {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_readers_on_two_handles_wake_when_another_process_writes() {
    let tmp = TempDb::new();
    let (first, second) = (tmp.open().await.results(), tmp.open().await.results());
    let handles = [Arc::new(first), Arc::new(second)];
    let readers: Vec<_> = (0..6)
        .map(|n| {
            let results = Arc::clone(&handles[n % 2]);
            tokio::spawn(async move {
                let read = results
                    .read(
                        "flatagents://child-1/result",
                        ReadOptions::blocking(Some(Duration::from_secs(30))),
                    )
                    .await;
                (read, wall_millis())
            })
        })
        .collect();
    // Waits on another key of the same execution: the helper's write must not end it.
    let other_key = {
        let results = Arc::clone(&handles[0]);
        tokio::spawn(async move {
            results
                .read(
                    "flatagents://child-1/other",
                    ReadOptions::blocking(Some(Duration::from_secs(2))),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(readers.iter().all(|reader| !reader.is_finished()));

    let helper = HelperProcess::spawn(HELPER, "write", &tmp.path);
    let wrote: u128 = helper
        .wait_for("WROTE ")
        .trim_start_matches("WROTE ")
        .parse()
        .unwrap();
    let mut latencies = Vec::new();
    for reader in readers {
        let (read, woke) = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("a blocked reader missed another process's write")
            .unwrap();
        assert_eq!(read.unwrap(), Some(child_output()));
        latencies.push(woke.saturating_sub(wrote));
    }
    helper.finish();
    println!("wake-up after another process's write: {latencies:?} ms");
    // Readers look again at most 100 ms apart; the rest is slack for a loaded machine.
    assert!(
        latencies.iter().all(|ms| *ms < 1000),
        "readers woke late: {latencies:?} ms"
    );
    let other = other_key.await.unwrap();
    assert!(
        matches!(other, Err(Error::Timeout { .. })),
        "a write to another key ended a read: {other:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_in_another_process_wakes_when_this_process_writes() {
    let tmp = TempDb::new();
    let results = tmp.open().await.results();
    let helper = HelperProcess::spawn(HELPER, "wait", &tmp.path);
    assert_eq!(helper.next_line(), "WAITING");
    // Long enough for the helper's pauses between looks to reach their cap.
    tokio::time::sleep(Duration::from_millis(400)).await;
    results
        .write(
            "flatagents://parent-1/result",
            json!({"from": "parent", "n": 7}),
        )
        .await
        .unwrap();
    let wrote = wall_millis();
    let line = helper.wait_for("GOT ");
    helper.finish();
    let (woke, value) = line["GOT ".len()..].split_once(' ').unwrap();
    let value: Value = serde_json::from_str(value).unwrap();
    assert_eq!(value, json!({"from": "parent", "n": 7}));
    let latency = woke.parse::<u128>().unwrap().saturating_sub(wrote);
    println!("wake-up of another process's reader: {latency} ms");
    assert!(
        latency < 1000,
        "the reader woke {latency} ms after the write"
    );
}

/// A reader asleep between looks is woken by a write of its own process at once, not at
/// its next look: on average well under the 50 ms that looking alone would take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_this_process_wakes_readers_without_waiting_for_their_next_look() {
    let tmp = TempDb::new();
    let db = tmp.open().await;
    // Another handle on the file: the wake-up goes by file, not by handle.
    let writer = tmp.open().await.results();
    let reader = Arc::new(db.results());
    let mut latencies = Vec::new();
    for round in 0..10 {
        let uri = format!("flatagents://round-{round}/result");
        let waiting = {
            let (reader, uri) = (Arc::clone(&reader), uri.clone());
            tokio::spawn(async move {
                let read = reader
                    .read(&uri, ReadOptions::blocking(Some(Duration::from_secs(30))))
                    .await;
                (read, Instant::now())
            })
        };
        // By now the reader's pauses have reached their 100 ms cap; the write lands at a
        // different point of the pause each round, so looking alone would average ~50 ms.
        tokio::time::sleep(Duration::from_millis(300 + 10 * round)).await;
        writer.write(&uri, json!(round)).await.unwrap();
        let written = Instant::now();
        let (read, woke) = waiting.await.unwrap();
        assert_eq!(read.unwrap(), Some(json!(round)));
        latencies.push(woke.saturating_duration_since(written));
    }
    let mean = latencies.iter().sum::<Duration>() / 10;
    println!("wake-up after a write of this process: mean {mean:?}, all {latencies:?}");
    assert!(mean < Duration::from_millis(25), "{latencies:?}");
}

async fn raw_connection(path: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_row_holds_the_uri_key_the_json_text_and_when_it_was_written() {
    let tmp = TempDb::new();
    let results = tmp.open().await.results();
    results
        .write("flatagents://exec-1/a/b", json!({"k": [1, 2]}))
        .await
        .unwrap();
    results
        .write("flatagents://exec-1", json!("done"))
        .await
        .unwrap();
    let mut conn = raw_connection(&tmp.path).await;
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT key, value, written_at FROM results ORDER BY key")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    let keys: Vec<(&str, &str)> = rows
        .iter()
        .map(|(key, value, _)| (key.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("exec-1/a/b", r#"{"k":[1,2]}"#),
            ("exec-1/result", r#""done""#)
        ]
    );
    for (_, _, written_at) in &rows {
        assert!(
            chrono::DateTime::parse_from_rfc3339(written_at).is_ok(),
            "{written_at}"
        );
    }
}

#[tokio::test]
async fn a_stored_value_that_is_not_json_fails_to_decode_naming_the_uri() {
    let tmp = TempDb::new();
    let results = tmp.open().await.results();
    let mut conn = raw_connection(&tmp.path).await;
    sqlx::query("INSERT INTO results (key, value, written_at) VALUES ('e/result', '{oops', 'x')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    for options in [
        ReadOptions::now(),
        ReadOptions::blocking(Some(Duration::from_secs(5))),
    ] {
        let read = results.read("flatagents://e/result", options).await;
        let Err(error @ Error::Serialization { .. }) = read else {
            panic!("expected a decode error, got {read:?}");
        };
        let text = error.to_string();
        assert!(text.contains("flatagents://e/result"), "{text}");
    }
    // The bad row is still a stored value, and can be replaced or removed.
    assert!(results.exists("flatagents://e/result").await.unwrap());
    results.write("flatagents://e", json!(1)).await.unwrap();
    assert_eq!(
        results
            .read("flatagents://e/result", ReadOptions::now())
            .await
            .unwrap(),
        Some(json!(1))
    );
}
