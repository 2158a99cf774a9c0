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

/// Builds the file as a build at schema version 1 left it: only the first migration, plus
/// rows written by that build.
async fn make_version_1_database(path: &Path) {
    let migrations = tempfile::tempdir().unwrap();
    let first = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join("0001_checkpoints_workers_work_items.sql");
    std::fs::copy(&first, migrations.path().join(first.file_name().unwrap())).unwrap();
    let migrator = Migrator::new(migrations.path()).await.unwrap();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .connect()
        .await
        .unwrap();
    migrator.run(&mut conn).await.unwrap();
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
