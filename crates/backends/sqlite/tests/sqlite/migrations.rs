//! Schema versions: a database written by an older build is upgraded in place, and
//! processes opening a new file at once create the schema once.

use std::path::Path;

use bytes::Bytes;
use flatmachines_core::{
    ExecutionLock, PersistenceBackend, RegistrationBackend, ResultBackend, WorkBackend, WorkStatus,
};
use flatmachines_sqlite::{SqliteDatabase, schema_version};
use sqlx::migrate::Migrator;
use sqlx::{ConnectOptions, Connection};

use crate::support::TempDb;

/// Creates the file with the schema of an older build: the embedded migrations up to
/// `version`, and nothing newer.
async fn make_database_at(path: &Path, version: i64) -> sqlx::SqliteConnection {
    let migrations = tempfile::tempdir().unwrap();
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&all).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let number: i64 = name[..4].parse().unwrap();
        if number <= version {
            std::fs::copy(&file, migrations.path().join(name)).unwrap();
        }
    }
    let migrator = Migrator::new(migrations.path()).await.unwrap();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .connect()
        .await
        .unwrap();
    migrator.run(&mut conn).await.unwrap();
    conn
}

/// Builds the file as a build at schema version 1 left it: only the first migration, plus
/// rows written by that build.
async fn make_version_1_database(path: &Path) {
    let mut conn = make_database_at(path, 1).await;
    for sql in [
        "INSERT INTO checkpoints (key, value) VALUES ('exec-1/latest', 'exec-1/step_000003_execute.json')",
        "INSERT INTO workers (worker_id, status, last_heartbeat, pool_id, metadata) \
         VALUES ('old-worker', 'active', '2024-05-01T12:00:00+00:00', 'jobs', '{\"v\": 1}')",
        "INSERT INTO work_items (pool, id, data, status, attempts, max_retries, created_at, \
                                 updated_at, queue_seq) \
         VALUES ('jobs', 'item-1', '{\"n\": 1}', 'pending', 0, 3, '2024-05-01T12:00:00+00:00', \
                 '2024-05-01T12:00:00+00:00', 1)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_database_at_schema_version_1_is_upgraded_in_place_keeping_its_rows() {
    let tmp = TempDb::new();
    make_version_1_database(&tmp.path).await;
    let db = SqliteDatabase::open(tmp.config()).unwrap();
    assert_eq!(db.stored_schema_version().await.unwrap(), 1);
    db.ready().await.unwrap();
    assert_eq!(db.stored_schema_version().await.unwrap(), schema_version());

    let latest = db.persistence().load("exec-1/latest").await.unwrap();
    assert_eq!(
        latest,
        Some(Bytes::from_static(b"exec-1/step_000003_execute.json"))
    );
    let worker = db.registration().get("old-worker").await.unwrap().unwrap();
    assert_eq!(worker.metadata.unwrap()["v"], 1);
    let pool = db.work().pool("jobs");
    let item = pool.claim("new-worker").await.unwrap().unwrap();
    assert_eq!(
        (item.id.as_str(), item.status),
        ("item-1", WorkStatus::Claimed)
    );
    // Version 2 added the execution locks.
    let lock = db.lock();
    assert!(lock.acquire("exec-1").await.unwrap());
    assert!(!db.lock().acquire("exec-1").await.unwrap());
    // Version 3 added the results.
    let results = db.results();
    results
        .write("flatagents://exec-1/result", serde_json::json!([1]))
        .await
        .unwrap();
    assert!(results.exists("flatagents://exec-1").await.unwrap());

    // Opening again finds nothing to do.
    let again = SqliteDatabase::connect(tmp.config()).await.unwrap();
    assert_eq!(
        again.stored_schema_version().await.unwrap(),
        schema_version()
    );
}

/// Version 4 added the holder of each execution lock; rows of older builds have none and
/// keep their lease, whoever asks.
#[tokio::test]
async fn execution_locks_of_a_version_3_database_are_kept_and_freed_by_their_lease_only() {
    let tmp = TempDb::new();
    let mut conn = make_database_at(&tmp.path, 3).await;
    let now = chrono::Utc::now().timestamp_millis();
    for (key, owner, expires_at) in [
        ("exec-held", "old-runner", now + 600_000),
        ("exec-expired", "old-runner", now - 1),
    ] {
        sqlx::query(
            "INSERT INTO execution_locks (key, owner, expires_at, acquired_at) \
             VALUES (?1, ?2, ?3, '2024-05-01T12:00:00+00:00')",
        )
        .bind(key)
        .bind(owner)
        .bind(expires_at)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let db = SqliteDatabase::open(tmp.config()).unwrap();
    assert_eq!(db.stored_schema_version().await.unwrap(), 3);
    db.ready().await.unwrap();
    assert_eq!(db.stored_schema_version().await.unwrap(), schema_version());
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&tmp.path)
        .connect()
        .await
        .unwrap();
    let rows: Vec<LockRow> = sqlx::query_as(
        "SELECT key, owner, expires_at, holder_host, holder_pid FROM execution_locks ORDER BY key",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (
                "exec-expired".into(),
                "old-runner".into(),
                now - 1,
                None,
                None
            ),
            (
                "exec-held".into(),
                "old-runner".into(),
                now + 600_000,
                None,
                None
            ),
        ]
    );
    // No holder to look up: the unexpired row is kept, the expired one is free.
    let lock = db.lock();
    assert!(!lock.acquire("exec-held").await.unwrap());
    assert!(lock.acquire("exec-expired").await.unwrap());
    let pid: Option<i64> =
        sqlx::query_scalar("SELECT holder_pid FROM execution_locks WHERE key = 'exec-expired'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if cfg!(target_os = "linux") {
        assert_eq!(pid, Some(i64::from(std::process::id())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_opening_a_new_file_at_once_create_the_schema_once() {
    for round in 0..5 {
        let tmp = TempDb::new();
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let config = tmp.config();
                tokio::spawn(async move { SqliteDatabase::connect(config).await })
            })
            .collect();
        for open in opens {
            let db = open
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(db.stored_schema_version().await.unwrap(), schema_version());
        }
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&tmp.path)
            .connect()
            .await
            .unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(applied, schema_version(), "round {round}");
    }
}

/// One row of `execution_locks`: key, owner, expiry, holder host and holder pid.
type LockRow = (String, String, i64, Option<String>, Option<i64>);
