//! Contract tests of [`MemoryResultBackend`], here rather than in `tests/` because they check
//! the crate-internal waiter bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use flatmachines_core::{Error, ReadOptions, ResultBackend};
use serde_json::json;

use super::MemoryResultBackend;

const URI: &str = "flatagents://exec-1/result";
/// Bounds every wait that should end promptly, so a lost wakeup fails the test instead of
/// hanging it.
const PROMPT: Duration = Duration::from_secs(10);

fn blocking() -> ReadOptions {
    ReadOptions::blocking(None)
}

/// Waits until `n` keys have blocked readers, so a write is known to come after the reads
/// started.
async fn until_waiting(backend: &MemoryResultBackend, n: usize) {
    tokio::time::timeout(PROMPT, async {
        while backend.waiting_keys() != n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("readers never started waiting");
}

/// Waits until the key of `URI` has `n` subscribed readers.
async fn until_readers(backend: &MemoryResultBackend, n: usize) {
    tokio::time::timeout(PROMPT, async {
        loop {
            let count = backend
                .lock()
                .get("exec-1/result")
                .map_or(0, |tx| tx.receiver_count());
            if count == n {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("readers never subscribed");
}

#[tokio::test]
async fn clause1_malformed_uris_fail_in_every_method() {
    let backend = MemoryResultBackend::new();
    for uri in [
        "http://x/result",
        "flatagents://",
        "flatagents://a/../b",
        "x",
    ] {
        let invalid = |r: Result<_, Error>| matches!(r, Err(Error::InvalidUri { .. }));
        assert!(
            invalid(backend.write(uri, json!(1)).await.map(|()| 0)),
            "{uri}"
        );
        assert!(invalid(
            backend.read(uri, ReadOptions::now()).await.map(|_| 0)
        ));
        assert!(invalid(backend.read(uri, blocking()).await.map(|_| 0)));
        assert!(invalid(backend.exists(uri).await.map(|_| 0)));
        assert!(invalid(backend.delete(uri).await.map(|()| 0)));
    }
    assert_eq!(backend.tracked_keys(), 0);
}

#[tokio::test]
async fn clause1_uris_naming_the_same_key_share_the_value() {
    let backend = MemoryResultBackend::new();
    backend
        .write("flatagents://exec-1", json!("v"))
        .await
        .unwrap();
    let read = backend.read(URI, ReadOptions::now()).await.unwrap();
    assert_eq!(read, Some(json!("v")));
    assert!(backend.exists("flatagents://exec-1/").await.unwrap());
    assert!(!backend.exists("flatagents://exec-1/other").await.unwrap());
}

#[tokio::test]
async fn clause2_write_stores_and_replaces() {
    let backend = MemoryResultBackend::new();
    backend.write(URI, json!({"a": 1})).await.unwrap();
    assert_eq!(
        backend.read(URI, ReadOptions::now()).await.unwrap(),
        Some(json!({"a": 1}))
    );
    backend.write(URI, json!([2])).await.unwrap();
    assert_eq!(
        backend.read(URI, blocking()).await.unwrap(),
        Some(json!([2]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clause2_one_write_wakes_all_50_blocked_readers() {
    let backend = MemoryResultBackend::new();
    let readers: Vec<_> = (0..50)
        .map(|_| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.read(URI, blocking()).await })
        })
        .collect();
    until_readers(&backend, 50).await;
    backend.write(URI, json!("done")).await.unwrap();
    for reader in readers {
        let read = tokio::time::timeout(PROMPT, reader)
            .await
            .expect("reader never woke");
        assert_eq!(read.unwrap().unwrap(), Some(json!("done")));
    }
    assert_eq!(backend.waiting_keys(), 0);
    assert_eq!(backend.tracked_keys(), 1, "only the stored value remains");
}

#[tokio::test]
async fn clause3_non_blocking_read_of_nothing_is_none() {
    let backend = MemoryResultBackend::new();
    let timeout = ReadOptions {
        block: false,
        timeout: Some(Duration::from_secs(3600)),
    };
    assert_eq!(backend.read(URI, ReadOptions::now()).await.unwrap(), None);
    assert_eq!(
        backend.read(URI, timeout).await.unwrap(),
        None,
        "timeout ignored"
    );
    assert_eq!(
        backend.tracked_keys(),
        0,
        "a non-blocking read leaves no state"
    );
}

#[tokio::test]
async fn clause4_blocking_read_of_a_stored_value_returns_at_once() {
    let backend = MemoryResultBackend::new();
    backend.write(URI, json!(7)).await.unwrap();
    let read = backend
        .read(URI, ReadOptions::blocking(Some(Duration::ZERO)))
        .await;
    assert_eq!(read.unwrap(), Some(json!(7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clause4_blocking_read_started_before_the_write_wakes() {
    let backend = MemoryResultBackend::new();
    let reader = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.read(URI, blocking()).await })
    };
    until_waiting(&backend, 1).await;
    assert!(!reader.is_finished(), "read returned before any write");
    backend.write(URI, json!({"ok": true})).await.unwrap();
    let read = tokio::time::timeout(PROMPT, reader)
        .await
        .expect("reader never woke");
    assert_eq!(read.unwrap().unwrap(), Some(json!({"ok": true})));
    assert_eq!(backend.waiting_keys(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clause4_no_lost_wakeup_when_read_and_write_race() {
    for round in 0..300 {
        let backend = MemoryResultBackend::new();
        let uri = format!("flatagents://race-{round}/result");
        let reader = {
            let (backend, uri) = (backend.clone(), uri.clone());
            tokio::spawn(async move { backend.read(&uri, blocking()).await })
        };
        let writer = {
            let (backend, uri) = (backend.clone(), uri.clone());
            tokio::spawn(async move { backend.write(&uri, json!(round)).await })
        };
        writer.await.unwrap().unwrap();
        let read = tokio::time::timeout(PROMPT, reader).await;
        let read = read.unwrap_or_else(|_| panic!("lost wakeup in round {round}"));
        assert_eq!(read.unwrap().unwrap(), Some(json!(round)));
        assert_eq!(backend.waiting_keys(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn clause4_blocking_read_times_out_with_the_uri_and_duration() {
    let backend = MemoryResultBackend::new();
    let after = Duration::from_secs(30);
    let started = tokio::time::Instant::now();
    let err = backend
        .read(URI, ReadOptions::blocking(Some(after)))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= after, "gave up early");
    match err {
        Error::Timeout {
            what,
            after: waited,
        } => {
            assert_eq!(what, URI);
            assert_eq!(waited, after);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        backend.tracked_keys(),
        0,
        "a timed-out read leaves no state"
    );
}

#[tokio::test(start_paused = true)]
async fn clause4_write_before_the_timeout_wins() {
    let backend = MemoryResultBackend::new();
    let writer = {
        let backend = backend.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            backend.write(URI, json!("late")).await
        })
    };
    let read = backend
        .read(URI, ReadOptions::blocking(Some(Duration::from_secs(10))))
        .await;
    assert_eq!(read.unwrap(), Some(json!("late")));
    writer.await.unwrap().unwrap();
}

#[tokio::test]
async fn clause5_exists_and_delete() {
    let backend = MemoryResultBackend::new();
    assert!(!backend.exists(URI).await.unwrap());
    backend.delete(URI).await.unwrap();
    backend.write(URI, json!(null)).await.unwrap();
    assert!(
        backend.exists(URI).await.unwrap(),
        "JSON null is a stored value"
    );
    backend.delete(URI).await.unwrap();
    assert!(!backend.exists(URI).await.unwrap());
    assert_eq!(backend.read(URI, ReadOptions::now()).await.unwrap(), None);
    assert_eq!(backend.tracked_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn clause5_a_blocking_read_after_delete_waits_again() {
    let backend = MemoryResultBackend::new();
    backend.write(URI, json!(1)).await.unwrap();
    backend.delete(URI).await.unwrap();
    let read = backend
        .read(URI, ReadOptions::blocking(Some(Duration::from_secs(1))))
        .await;
    assert!(matches!(read, Err(Error::Timeout { .. })), "{read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clause5_delete_keeps_blocked_readers_waiting_for_the_next_write() {
    let backend = MemoryResultBackend::new();
    let reader = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.read(URI, blocking()).await })
    };
    until_waiting(&backend, 1).await;
    backend.delete(URI).await.unwrap();
    assert_eq!(
        backend.waiting_keys(),
        1,
        "the reader's state survived the delete"
    );
    assert!(!reader.is_finished());
    backend.write(URI, json!("next")).await.unwrap();
    let read = tokio::time::timeout(PROMPT, reader)
        .await
        .expect("reader never woke");
    assert_eq!(read.unwrap().unwrap(), Some(json!("next")));
}

#[tokio::test(start_paused = true)]
async fn waiter_state_is_removed_after_timeouts_and_cancellation() {
    let backend = MemoryResultBackend::new();
    let short = ReadOptions::blocking(Some(Duration::from_millis(10)));
    let reads = (0..20).map(|i| {
        let backend = backend.clone();
        async move {
            backend
                .read(&format!("flatagents://e{i}/result"), short)
                .await
        }
    });
    for read in futures::future::join_all(reads).await {
        assert!(matches!(read, Err(Error::Timeout { .. })));
    }
    assert_eq!(backend.tracked_keys(), 0);

    let cancelled = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.read(URI, blocking()).await })
    };
    until_waiting(&backend, 1).await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    assert_eq!(backend.tracked_keys(), 0, "a dropped read leaves no state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiter_state_is_removed_when_one_of_many_readers_is_left() {
    let backend = MemoryResultBackend::new();
    let patient = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.read(URI, blocking()).await })
    };
    until_readers(&backend, 1).await;
    let short = ReadOptions::blocking(Some(Duration::from_millis(20)));
    let impatient = backend.read(URI, short).await;
    assert!(matches!(impatient, Err(Error::Timeout { .. })));
    assert_eq!(
        backend.waiting_keys(),
        1,
        "the patient reader still needs its state"
    );
    until_readers(&backend, 1).await;
    patient.abort();
    let _ = patient.await;
    assert_eq!(backend.tracked_keys(), 0);
}

#[tokio::test]
async fn clones_share_values() {
    let backend = MemoryResultBackend::new();
    let clone = backend.clone();
    clone.write(URI, json!("shared")).await.unwrap();
    assert_eq!(
        backend.read(URI, ReadOptions::now()).await.unwrap(),
        Some(json!("shared"))
    );
    let dynamic: Arc<dyn ResultBackend> = Arc::new(backend);
    assert!(format!("{dynamic:?}").contains("MemoryResultBackend"));
}
