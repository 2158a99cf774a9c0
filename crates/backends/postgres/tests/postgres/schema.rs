//! The embedded schema: migrations apply once however many stores start together, and a
//! missing or newer schema is refused with a message that says what to do.

use flatmachines_core::{Error, PersistenceBackend as _};
use flatmachines_postgres::{PostgresStore, SCHEMA_VERSION};

use crate::support::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_starting_together_migrate_once() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let store = env.store();
            tokio::spawn(async move { store.ping().await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let store = env.store();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(
        store.migrate().await.unwrap(),
        Vec::<i32>::new(),
        "already there"
    );
    let recorded: i64 = env
        .scalar(&format!(
            "SELECT count(*) FROM \"{}\".schema_migrations",
            env.schema
        ))
        .await;
    assert_eq!(recorded, i64::from(SCHEMA_VERSION));
}

#[tokio::test]
async fn without_migrate_a_missing_schema_is_refused_and_nothing_is_created() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = PostgresStore::new(env.config().with_migrate(false)).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 0);
    let error = store.persistence().load("e/k").await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "schema `{}` has no flatmachines tables",
            env.schema
        )),
        "{text}"
    );
    assert!(text.contains("migrate=true"), "{text}");
    assert!(!error.is_retryable());
    let exists: bool = env
        .scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{}')",
            env.schema
        ))
        .await;
    assert!(!exists, "a check created the schema");
    // Once migrated, the same store works.
    env.store().migrate().await.unwrap();
    assert_eq!(store.persistence().load("e/k").await.unwrap(), None);
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    env.store().ping().await.unwrap();
    let next = SCHEMA_VERSION + 1;
    env.sql(&format!(
        "INSERT INTO \"{}\".schema_migrations (version, description) VALUES ({next}, 'future')",
        env.schema
    ))
    .await;
    for store in [
        env.store(),
        PostgresStore::new(env.config().with_migrate(false)).unwrap(),
    ] {
        let text = store.ping().await.unwrap_err().to_string();
        assert!(
            text.contains(&format!("at version {next}, newer")),
            "{text}"
        );
    }
    assert!(matches!(
        env.store().migrate().await,
        Err(Error::Backend { .. })
    ));
}

#[tokio::test]
async fn the_tables_live_in_the_configured_schema_only() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    env.store().ping().await.unwrap();
    let tables: Vec<String> = {
        let text: String = env
            .scalar(&format!(
                "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables
                 WHERE schemaname = '{}'",
                env.schema
            ))
            .await;
        text.split(',').map(str::to_owned).collect()
    };
    assert_eq!(
        tables,
        [
            "checkpoints",
            "results",
            "schema_migrations",
            "work_items",
            "workers"
        ]
    );
    env.store().drop_schema().await.unwrap();
    assert_eq!(env.store().schema_version().await.unwrap(), 0);
}
