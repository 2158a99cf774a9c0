//! Faults: processes killed mid-transaction, a database held busy, and files the backends
//! cannot use (read-only, corrupt, not a database, from a newer build).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flatmachines_core::{Error, PersistenceBackend, PushOptions, WorkBackend, WorkStatus};
use flatmachines_sqlite::{SqliteConfig, SqliteDatabase, schema_version};
use serde_json::json;
use sqlx::{ConnectOptions, Connection, Executor};

use crate::support::{HELPER_DB_ENV, HELPER_TASK_ENV, HelperProcess, TempDb, say};

const HELPER: &str = "faults::fault_helper";

/// Entries per batch of the saving helper, and the size of each value.
const BATCH: usize = 16;
const VALUE_LEN: usize = 64 * 1024;

fn batch_value(batch: u64, entry: usize) -> Vec<u8> {
    let mut value = vec![(batch % 251) as u8; VALUE_LEN];
    value[..16].copy_from_slice(&batch.to_be_bytes().repeat(2));
    value[16] = entry as u8;
    value
}

fn batch_key(batch: u64, entry: usize) -> String {
    format!("run/step_{batch:06}_{entry:02}.json")
}

/// Not a test of its own: the fault tests start this binary again to run a task here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_helper() {
    let Ok(task) = std::env::var(HELPER_TASK_ENV) else {
        return;
    };
    let path = PathBuf::from(std::env::var(HELPER_DB_ENV).unwrap());
    match task.as_str() {
        "claim-then-save" => claim_then_save(&path).await,
        "hold-write-transaction" => hold_write_transaction(&path).await,
        "worker" => crate::shared_file::worker_task(&path).await,
        "hold-lock" => crate::takeover::hold_lock(&path).await,
        other => panic!("unknown helper task {other}"),
    }
}

/// Claims five items as `doomed`, then saves batches until it is killed.
async fn claim_then_save(path: &Path) {
    let db = SqliteDatabase::connect(SqliteConfig::new(path))
        .await
        .unwrap();
    let pool = db.work().named_pool("jobs");
    for _ in 0..5 {
        use flatmachines_core::WorkPool;
        pool.claim("doomed").await.unwrap().unwrap();
    }
    say("CLAIMED 5");
    let store = db.persistence();
    for batch in 0u64.. {
        let keys: Vec<String> = (0..BATCH).map(|entry| batch_key(batch, entry)).collect();
        let mut entries: Vec<(&str, Bytes)> = keys
            .iter()
            .enumerate()
            .map(|(entry, key)| (key.as_str(), Bytes::from(batch_value(batch, entry))))
            .collect();
        entries.push(("run/latest", Bytes::from(keys[BATCH - 1].clone())));
        store.save_many(&entries).await.unwrap();
        say(&format!("SAVED {batch}"));
    }
}

/// Writes rows inside a transaction it never commits, and waits to be killed.
async fn hold_write_transaction(path: &Path) {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    conn.execute("BEGIN IMMEDIATE").await.unwrap();
    for n in 0..100 {
        sqlx::query("INSERT INTO checkpoints (key, value) VALUES (?1, ?2)")
            .bind(format!("uncommitted/{n}"))
            .bind(vec![7u8; 4096])
            .execute(&mut conn)
            .await
            .unwrap();
    }
    say("IN_TX");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// `PRAGMA integrity_check` through a connection of its own.
async fn integrity(path: &Path) -> String {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_save_leaves_every_commit_and_its_claims_releasable() {
    use flatmachines_core::WorkPool;
    let tmp = TempDb::new();
    let db = tmp.open().await;
    let pool = db.work().named_pool("jobs");
    for n in 0..20 {
        pool.push(json!({"n": n}), PushOptions::default())
            .await
            .unwrap();
    }
    let helper = HelperProcess::spawn(HELPER, "claim-then-save", &tmp.path);
    assert_eq!(helper.next_line(), "CLAIMED 5");
    // Killed while saving batch after batch: most likely inside a statement.
    let mut last_reported = 0;
    while last_reported < 25 {
        let line = helper.wait_for("SAVED ");
        last_reported = line["SAVED ".len()..].parse().unwrap();
    }
    helper.kill();

    assert_eq!(integrity(&tmp.path).await, "ok");
    let reopened = SqliteDatabase::connect(tmp.config()).await.unwrap();
    let store = reopened.persistence();
    let keys = store.list("run/").await.unwrap();
    // Every batch it reported is there in full, and any later one is whole or absent.
    let mut batches = std::collections::BTreeMap::<u64, usize>::new();
    for key in keys.iter().filter(|k| k.as_str() != "run/latest") {
        let batch: u64 = key["run/step_".len().."run/step_".len() + 6]
            .parse()
            .unwrap();
        *batches.entry(batch).or_default() += 1;
    }
    for batch in 0..=last_reported {
        assert_eq!(
            batches.get(&batch),
            Some(&BATCH),
            "batch {batch} of {batches:?}"
        );
    }
    assert!(batches.values().all(|&n| n == BATCH), "{batches:?}");
    let newest = *batches.keys().last().unwrap();
    assert!(
        newest <= last_reported + 1,
        "{newest} after {last_reported}"
    );
    for entry in [0, BATCH - 1] {
        let value = store
            .load(&batch_key(newest, entry))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(value.as_ref(), batch_value(newest, entry), "entry {entry}");
    }
    let latest = store.load("run/latest").await.unwrap().unwrap();
    assert_eq!(latest.as_ref(), batch_key(newest, BATCH - 1).as_bytes());

    // The dead worker's claims come back, and the pool goes on.
    let pool = reopened.work().named_pool("jobs");
    assert_eq!(pool.size().await.unwrap(), 15);
    assert_eq!(pool.release_by_worker("doomed").await.unwrap(), 5);
    assert_eq!(pool.size().await.unwrap(), 20);
    let mut claimed = 0;
    while let Some(item) = pool.claim("survivor").await.unwrap() {
        pool.complete(&item.id, None).await.unwrap();
        claimed += 1;
    }
    assert_eq!(claimed, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_inside_a_write_transaction_leaves_the_database_writable() {
    let tmp = TempDb::new();
    // A short busy timeout, so the held lock shows quickly as a retryable error.
    let config = tmp.config().busy_timeout(Duration::from_millis(50));
    let db = SqliteDatabase::connect(config).await.unwrap();
    let store = db.persistence();
    store
        .save("before", Bytes::from_static(b"1"))
        .await
        .unwrap();
    let helper = HelperProcess::spawn(HELPER, "hold-write-transaction", &tmp.path);
    helper.wait_for("IN_TX");

    let started = Instant::now();
    let held = store.save("during", Bytes::from_static(b"2")).await;
    let elapsed = started.elapsed();
    match held {
        Err(error @ Error::Backend { .. }) => {
            assert!(error.is_retryable(), "{error}");
            let text = error.to_string();
            println!("{text}");
            assert!(
                text.contains("stayed busy") && text.contains("save `during`"),
                "{text}"
            );
            assert!(text.contains(&*tmp.path.to_string_lossy()), "{text}");
        }
        other => panic!("expected a busy error while another process holds the lock: {other:?}"),
    }
    // Bounded: six attempts of 50 ms plus pauses of at most 240 ms in all.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

    helper.kill();
    store.save("after", Bytes::from_static(b"3")).await.unwrap();
    assert_eq!(integrity(&tmp.path).await, "ok");
    let keys = store.list("").await.unwrap();
    assert_eq!(
        keys,
        ["after", "before"],
        "the killed transaction left rows"
    );
}

/// Makes `path` unwritable even for root (with `chattr +i`), undone on drop.
struct Unwritable {
    path: PathBuf,
    immutable: bool,
}

impl Unwritable {
    fn new(path: &Path) -> Option<Self> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let mut guard = Unwritable {
            path: path.to_owned(),
            immutable: false,
        };
        if std::fs::OpenOptions::new().write(true).open(path).is_err() {
            return Some(guard);
        }
        // Root ignores permission bits; an immutable file refuses it too.
        let chattr = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status();
        guard.immutable = chattr.is_ok_and(|s| s.success());
        let refused = std::fs::OpenOptions::new().write(true).open(path).is_err();
        refused.then_some(guard)
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.path)
                .status();
        }
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o644));
    }
}

#[tokio::test]
async fn a_read_only_database_file_is_refused_with_a_clear_error() {
    let tmp = TempDb::new();
    let db = tmp.open().await;
    db.persistence()
        .save("kept", Bytes::from_static(b"value"))
        .await
        .unwrap();
    drop(db);
    let Some(_unwritable) = Unwritable::new(&tmp.path) else {
        // Neither permissions nor `chattr` can stop this process writing the file.
        eprintln!("skipped: cannot make a file read-only for this user here");
        return;
    };
    let error = SqliteDatabase::open(tmp.config()).unwrap_err();
    let text = error.to_string();
    println!("{text}");
    assert!(
        text.contains("is read-only") && text.contains(&*tmp.path.to_string_lossy()),
        "{text}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let tmp = TempDb::new();
    let content = b"name,value\nthis,is a spreadsheet\n".repeat(200);
    std::fs::write(&tmp.path, &content).unwrap();
    let error = SqliteDatabase::open(tmp.config()).unwrap_err();
    let text = error.to_string();
    println!("{text}");
    assert!(
        text.contains("is not a SQLite database") && text.contains(&*tmp.path.to_string_lossy()),
        "{text}"
    );
    assert_eq!(std::fs::read(&tmp.path).unwrap(), content);
    // A directory is refused too.
    let error = SqliteDatabase::open(SqliteConfig::new(tmp.dir.path())).unwrap_err();
    assert!(error.to_string().contains("is a directory"), "{error}");
}

#[tokio::test]
async fn a_corrupt_database_gives_a_clear_error_naming_the_file() {
    let tmp = TempDb::new();
    let db = tmp.open().await;
    let store = db.persistence();
    let entries: Vec<(String, Bytes)> = (0..200)
        .map(|n| (format!("exec/step_{n:06}"), Bytes::from(vec![b'x'; 3000])))
        .collect();
    for (key, value) in &entries {
        store.save(key, value.clone()).await.unwrap();
    }
    db.close().await;
    drop((store, db));
    // The header and the schema page stay; the table pages after them become noise.
    let mut bytes = std::fs::read(&tmp.path).unwrap();
    assert!(bytes.len() > 64 * 1024, "{}", bytes.len());
    for byte in &mut bytes[4096..64 * 1024] {
        *byte = 0xA5;
    }
    std::fs::write(&tmp.path, &bytes).unwrap();

    let db = SqliteDatabase::open(tmp.config()).unwrap();
    let store = db.persistence();
    let error = match store.list("exec/").await {
        Err(error) => error,
        Ok(keys) => store
            .load(&keys[0])
            .await
            .err()
            .unwrap_or_else(|| panic!("a corrupt database read without error: {keys:?}")),
    };
    let text = error.to_string();
    println!("{text}");
    assert!(
        (text.contains("is corrupt") || text.contains("not a SQLite database"))
            && text.contains(&*tmp.path.to_string_lossy()),
        "{text}"
    );
    assert!(!error.is_retryable(), "{text}");
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let tmp = TempDb::new();
    drop(tmp.open().await);
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&tmp.path)
        .connect()
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999, 'from the future', TRUE, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let error = SqliteDatabase::connect(tmp.config()).await.unwrap_err();
    let text = error.to_string();
    println!("{text}");
    assert!(
        text.contains("schema version 999")
            && text.contains(&format!("newer than this build's {}", schema_version())),
        "{text}"
    );
}

/// A pool's claimed items survive a restart of every handle: claims are rows, not memory.
#[tokio::test]
async fn claims_outlive_the_handles_that_made_them() {
    let tmp = TempDb::new();
    let db = tmp.open().await;
    let pool = db.work().pool("jobs");
    let id = pool.push(json!(1), PushOptions::default()).await.unwrap();
    pool.claim("w").await.unwrap().unwrap();
    drop((pool, db));
    let pool = tmp.open().await.work().pool("jobs");
    let item = pool.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (item.status, item.claimed_by.as_deref()),
        (WorkStatus::Claimed, Some("w"))
    );
}
