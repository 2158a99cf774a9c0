//! One database file holding checkpoints, results, workers, pools and locks, shared by
//! handles and processes; behaviour the contracts leave to the backend.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use flatmachines_core::{
    Error, ExecutionLock, JsonMap, PersistenceBackend, PushOptions, ReadOptions,
    RegistrationBackend, ResultBackend, WorkBackend, WorkStatus, WorkerFilter, WorkerRegistration,
};
use flatmachines_sqlite::{SqliteConfig, SqliteDatabase};
use serde_json::json;

use crate::support::{HelperProcess, TempDb, say};

fn registration(worker_id: &str) -> WorkerRegistration {
    WorkerRegistration {
        worker_id: worker_id.to_owned(),
        host: Some("localhost".into()),
        pid: Some(std::process::id()),
        capabilities: Some(vec!["gpu".into()]),
        pool_id: Some("jobs".into()),
        started_at: "2024-05-01T12:00:00+00:00".into(),
    }
}

/// The helper side of [`two_processes_share_checkpoints_workers_and_a_pool`].
pub(crate) async fn worker_task(path: &Path) {
    let db = SqliteDatabase::connect(SqliteConfig::new(path))
        .await
        .unwrap();
    let workers = db.registration();
    workers.register(registration("child")).await.unwrap();
    let mut metadata = JsonMap::new();
    metadata.insert("role".into(), json!("helper"));
    workers.heartbeat("child", Some(metadata)).await.unwrap();
    say("READY");
    let pool = db.work().pool("jobs");
    let mut claimed = 0;
    while let Some(item) = pool.claim("child").await.unwrap() {
        pool.complete(&item.id, Some(json!({"by": "child"})))
            .await
            .unwrap();
        claimed += 1;
        tokio::task::yield_now().await;
    }
    db.persistence()
        .save("child/latest", Bytes::from(format!("{claimed}")))
        .await
        .unwrap();
    workers.update_status("child", "terminated").await.unwrap();
    say(&format!("DONE {claimed}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_checkpoints_workers_and_a_pool() {
    let tmp = TempDb::new();
    let db = tmp.open().await;
    let pool = db.work().pool("jobs");
    let mut pushed = HashSet::new();
    for n in 0..400 {
        pushed.insert(
            pool.push(json!({"n": n}), PushOptions::default())
                .await
                .unwrap(),
        );
    }
    let helper = HelperProcess::spawn("faults::fault_helper", "worker", &tmp.path);
    assert_eq!(helper.next_line(), "READY");
    let mut mine = 0;
    while let Some(item) = pool.claim("parent").await.unwrap() {
        pool.complete(&item.id, Some(json!({"by": "parent"})))
            .await
            .unwrap();
        mine += 1;
        tokio::task::yield_now().await;
    }
    let done = helper.wait_for("DONE ");
    let theirs: usize = done["DONE ".len()..].parse().unwrap();
    helper.finish();
    assert_eq!(mine + theirs, 400, "mine {mine}, theirs {theirs}");
    for id in &pushed {
        let item = pool.get(id).await.unwrap().unwrap();
        assert_eq!(item.status, WorkStatus::Done);
        let by = item.result.unwrap()["by"].clone();
        assert!(by == "parent" || by == "child", "{by}");
    }
    assert_eq!(
        db.persistence()
            .load("child/latest")
            .await
            .unwrap()
            .unwrap(),
        Bytes::from(theirs.to_string())
    );
    let child = db.registration().get("child").await.unwrap().unwrap();
    assert_eq!(child.status, "terminated");
    assert_eq!(child.metadata.unwrap()["role"], "helper");
    assert_eq!(child.capabilities, Some(vec!["gpu".to_owned()]));
}

#[tokio::test]
async fn one_file_holds_checkpoints_results_workers_pools_and_locks() {
    let tmp = TempDb::new();
    let db = SqliteDatabase::open(tmp.config()).unwrap();
    // Nothing is created before the first operation.
    assert!(!tmp.path.exists());
    db.persistence()
        .save("exec/latest", Bytes::from_static(b"k"))
        .await
        .unwrap();
    db.registration()
        .register(registration("w1"))
        .await
        .unwrap();
    db.work()
        .pool("p")
        .push(json!(null), PushOptions::default())
        .await
        .unwrap();
    assert!(db.lock().acquire("exec").await.unwrap());
    db.results()
        .write("flatagents://exec/result", json!({"out": 1}))
        .await
        .unwrap();
    assert!(tmp.path.is_file());
    let files: Vec<String> = std::fs::read_dir(tmp.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with("-wal") && !name.ends_with("-shm"))
        .collect();
    assert_eq!(files, ["db.sqlite"]);
    let other = tmp.open().await;
    assert!(
        other
            .persistence()
            .load("exec/latest")
            .await
            .unwrap()
            .is_some()
    );
    assert!(other.registration().get("w1").await.unwrap().is_some());
    assert_eq!(other.work().pool("p").size().await.unwrap(), 1);
    assert!(!other.lock().acquire("exec").await.unwrap());
    let result = other
        .results()
        .read("flatagents://exec", ReadOptions::now())
        .await
        .unwrap();
    assert_eq!(result, Some(json!({"out": 1})));
    assert_eq!(
        other.stored_schema_version().await.unwrap(),
        flatmachines_sqlite::schema_version()
    );
    let debug = format!("{db:?}");
    assert!(debug.contains("db.sqlite"), "{debug}");
}

#[tokio::test]
async fn pending_items_are_claimed_in_queue_order_and_a_failed_one_waits_behind() {
    let tmp = TempDb::new();
    let pool = tmp.open().await.work().pool("jobs");
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(pool.push(json!(n), PushOptions::default()).await.unwrap());
    }
    let first = pool.claim("w").await.unwrap().unwrap();
    assert_eq!(first.id, ids[0]);
    pool.fail(&first.id, Some("flaky")).await.unwrap();
    let mut claimed = Vec::new();
    while let Some(item) = pool.claim("w").await.unwrap() {
        claimed.push(item.id);
    }
    assert_eq!(claimed, [&*ids[1], &*ids[2], &*ids[3], &*ids[0]]);
    // A failed item keeps its error and attempts; the next claim counts one more.
    let retried = pool.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (retried.attempts, retried.error.as_deref()),
        (2, Some("flaky"))
    );
}

#[tokio::test]
async fn items_carry_timestamps_and_their_json_comes_back_unchanged() {
    let tmp = TempDb::new();
    let pool = tmp.open().await.work().pool("jobs");
    let data = json!({"nested": {"list": [1, 2.5, "three", null, true]}, "unicode": "ключ"});
    let id = pool
        .push(data.clone(), PushOptions { max_retries: 7 })
        .await
        .unwrap();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    let pushed = pool.get(&id).await.unwrap().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(&pushed.created_at).is_ok());
    assert!(
        pushed.created_at.ends_with("+00:00"),
        "{}",
        pushed.created_at
    );
    let claimed = pool.claim("w").await.unwrap().unwrap();
    assert_eq!(claimed.data, data);
    assert_eq!(claimed.max_retries, 7);
    let claimed_at = chrono::DateTime::parse_from_rfc3339(claimed.claimed_at.as_deref().unwrap());
    assert!(
        claimed_at.unwrap() >= chrono::DateTime::parse_from_rfc3339(&pushed.created_at).unwrap()
    );
    pool.complete(&id, Some(json!(null))).await.unwrap();
    let done = pool.get(&id).await.unwrap().unwrap();
    assert_eq!(done.result, Some(json!(null)));
    let other = pool.push(json!(1), PushOptions::default()).await.unwrap();
    pool.claim("w").await.unwrap().unwrap();
    pool.complete(&other, None).await.unwrap();
    assert_eq!(pool.get(&other).await.unwrap().unwrap().result, None);
}

#[tokio::test]
async fn complete_or_fail_of_an_item_not_claimed_is_a_conflict_that_changes_nothing() {
    let tmp = TempDb::new();
    let pool = tmp.open().await.work().pool("jobs");
    let id = pool.push(json!(1), PushOptions::default()).await.unwrap();
    let conflict = |result: Result<(), Error>, status: &str| match result {
        Err(Error::Conflict { key, message }) => {
            assert_eq!(key, id);
            assert!(message.contains(status), "{message}");
        }
        other => panic!("expected a conflict naming {status}, got {other:?}"),
    };
    conflict(pool.complete(&id, None).await, "pending");
    conflict(pool.fail(&id, None).await, "pending");
    pool.claim("w").await.unwrap().unwrap();
    pool.complete(&id, Some(json!("first"))).await.unwrap();
    conflict(pool.complete(&id, Some(json!("second"))).await, "done");
    conflict(pool.fail(&id, Some("late")).await, "done");
    let item = pool.get(&id).await.unwrap().unwrap();
    assert_eq!((item.result, item.error), (Some(json!("first")), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_heartbeats_on_separate_handles_keep_every_metadata_key() {
    let tmp = TempDb::new();
    tmp.open()
        .await
        .registration()
        .register(registration("w"))
        .await
        .unwrap();
    let beats: Vec<_> = (0..8)
        .map(|n| {
            let config = tmp.config();
            tokio::spawn(async move {
                let workers = SqliteDatabase::open(config).unwrap().registration();
                for round in 0..5 {
                    let mut metadata = JsonMap::new();
                    metadata.insert(format!("k{n}"), json!(round));
                    workers.heartbeat("w", Some(metadata)).await.unwrap();
                }
            })
        })
        .collect();
    for beat in beats {
        beat.await.unwrap();
    }
    let record = tmp
        .open()
        .await
        .registration()
        .get("w")
        .await
        .unwrap()
        .unwrap();
    let metadata = record.metadata.unwrap();
    for n in 0..8 {
        assert_eq!(metadata[&format!("k{n}")], json!(4), "{metadata:?}");
    }
    let listed = tmp
        .open()
        .await
        .registration()
        .list(&WorkerFilter {
            capability: Some("gpu".into()),
            ..WorkerFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn large_batches_are_atomic_and_a_repeated_key_keeps_its_last_value() {
    let tmp = TempDb::new();
    let store = tmp.open().await.persistence();
    let keys: Vec<String> = (0..100).map(|n| format!("exec/step_{n:06}")).collect();
    let mut entries: Vec<(&str, Bytes)> = keys
        .iter()
        .map(|key| (key.as_str(), Bytes::from(key.clone())))
        .collect();
    entries.push(("exec/step_000000", Bytes::from_static(b"again")));
    store.save_many(&entries).await.unwrap();
    assert_eq!(store.list("exec/").await.unwrap(), keys);
    assert_eq!(
        store.load("exec/step_000000").await.unwrap().unwrap(),
        Bytes::from_static(b"again")
    );
    // A bad key anywhere in the batch writes nothing.
    let bad = [("fresh/a", Bytes::new()), ("../escape", Bytes::new())];
    assert!(matches!(
        store.save_many(&bad).await,
        Err(Error::InvalidKey { .. })
    ));
    assert!(store.list("fresh/").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lock_holder_keeps_its_key_past_the_lease_while_it_lives() {
    let tmp = TempDb::new();
    let config = tmp
        .config()
        .lock_lease(std::time::Duration::from_millis(1000));
    let db = SqliteDatabase::connect(config).await.unwrap();
    let holder: Arc<dyn ExecutionLock> = Arc::new(db.lock());
    let other = db.lock();
    assert!(holder.acquire("exec-1").await.unwrap());
    // Three leases: the key stays only if the renewals kept coming.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    assert!(!other.acquire("exec-1").await.unwrap(), "renewals lapsed");
    holder.release("exec-1").await.unwrap();
    assert!(other.acquire("exec-1").await.unwrap());
}

/// With the shortest lease a config may set, a live holder keeps its key for a minute while
/// other handles write checkpoints to the same file as fast as they can: the renewal, which
/// waits for SQLite's write lock like every writer, must still land within a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_minimum_lease_a_holder_keeps_its_key_for_a_minute_under_write_load() {
    use std::time::{Duration, Instant};
    const HOLD: Duration = Duration::from_secs(60);
    let tmp = TempDb::new();
    let config = tmp.config().lock_lease(Duration::from_millis(1));
    assert_eq!(config.lock_lease_duration(), Duration::from_millis(1000));
    let db = SqliteDatabase::connect(config.clone()).await.unwrap();
    let holder = db.lock();
    assert!(holder.acquire("exec-held").await.unwrap());
    let started = Instant::now();
    // Two writers on handles of their own, each with its own write connection.
    let mut writers = Vec::new();
    for writer in 0..2 {
        let store = SqliteDatabase::connect(config.clone())
            .await
            .unwrap()
            .persistence();
        writers.push(tokio::spawn(async move {
            let payload = Bytes::from(vec![b'x'; 16 * 1024]);
            let mut saves = 0u64;
            // Bounded in time and in count.
            while started.elapsed() < HOLD && saves < 2_000_000 {
                let key = format!("load-{writer}/step_{:06}", saves % 64);
                store
                    .save_many(&[
                        (key.as_str(), payload.clone()),
                        ("load/latest", payload.clone()),
                    ])
                    .await
                    .unwrap();
                saves += 1;
            }
            saves
        }));
    }
    let rival = SqliteDatabase::connect(config.clone())
        .await
        .unwrap()
        .lock();
    let mut attempts = 0u32;
    while started.elapsed() < HOLD {
        assert!(
            !rival.acquire("exec-held").await.unwrap(),
            "the key was taken from its live holder after {:?}",
            started.elapsed()
        );
        // What a runner asks before every checkpoint: it must stay sure all along.
        if let Err(error) = holder.ensure_held("exec-held") {
            panic!(
                "the holder lost confidence after {:?}: {error}",
                started.elapsed()
            );
        }
        attempts += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut saves = 0;
    for writer in writers {
        saves += writer.await.unwrap();
    }
    assert!(saves > 100, "the writers made no load: {saves} saves");
    assert!(attempts > 100, "{attempts} attempts");
    holder.release("exec-held").await.unwrap();
    assert!(rival.acquire("exec-held").await.unwrap());
}

#[tokio::test]
async fn a_holder_learns_at_its_next_renewal_that_its_key_was_taken_over() {
    let tmp = TempDb::new();
    let config = tmp
        .config()
        .lock_lease(std::time::Duration::from_millis(3000));
    let db = SqliteDatabase::connect(config).await.unwrap();
    let holder = db.lock();
    assert!(matches!(
        holder.ensure_held("exec-1"),
        Err(Error::LockLost { .. })
    ));
    assert!(holder.acquire("exec-1").await.unwrap());
    holder.ensure_held("exec-1").unwrap();
    // Another holder's takeover, as if this one's lease had run out unseen.
    let mut conn = sqlx::ConnectOptions::connect(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&tmp.path),
    )
    .await
    .unwrap();
    sqlx::query("UPDATE execution_locks SET owner = 'someone-else' WHERE key = 'exec-1'")
        .execute(&mut conn)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let error = loop {
        match holder.ensure_held("exec-1") {
            Err(error) => break error,
            Ok(()) => {
                assert!(started.elapsed() < std::time::Duration::from_secs(60));
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    let text = error.to_string();
    assert!(
        text.contains("exec-1") && text.contains("another holder"),
        "{text}"
    );
    // Its release leaves the new holder's row alone.
    holder.release("exec-1").await.unwrap();
    let owner: String =
        sqlx::query_scalar("SELECT owner FROM execution_locks WHERE key = 'exec-1'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(owner, "someone-else");
}

#[tokio::test]
async fn a_holder_that_cannot_renew_is_unsure_of_its_key_until_a_renewal_gets_through() {
    let tmp = TempDb::new();
    let config = tmp
        .config()
        .lock_lease(std::time::Duration::from_millis(1000))
        .busy_timeout(std::time::Duration::from_millis(1));
    let db = SqliteDatabase::connect(config).await.unwrap();
    let holder = db.lock();
    assert!(holder.acquire("exec-1").await.unwrap());
    holder.ensure_held("exec-1").unwrap();
    // Another connection holds the write lock, so every renewal finds the database busy.
    let mut blocker = sqlx::ConnectOptions::connect(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&tmp.path),
    )
    .await
    .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let error = loop {
        match holder.ensure_held("exec-1") {
            Err(error) => break error,
            Ok(()) => {
                assert!(started.elapsed() < std::time::Duration::from_secs(60));
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    let text = error.to_string();
    assert!(
        matches!(error, Error::LockLost { .. }) && text.contains("renewed in time"),
        "{text}"
    );
    // Once a renewal gets through, the row was still this holder's: it holds the key again.
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let started = std::time::Instant::now();
    while holder.ensure_held("exec-1").is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!db.lock().acquire("exec-1").await.unwrap());
    holder.release("exec-1").await.unwrap();
}
