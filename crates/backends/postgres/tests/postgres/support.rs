//! A test's own schema and application name on the shared server, removed when it ends.

use std::time::Duration;

use flatmachines_postgres::{DEFAULT_URL, PostgresConfig, PostgresStore};
use tokio_postgres::{Client, NoTls};

/// The server the tests use.
pub(crate) fn url() -> String {
    std::env::var("FLATMACHINES_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// One test's corner of the server: a schema, and an application name that marks every
/// connection the test's stores open, so the test can terminate exactly those.
pub(crate) struct TestEnv {
    admin: Client,
    /// The test's schema.
    pub(crate) schema: String,
    /// The application name of the test's connections.
    pub(crate) application: String,
}

impl TestEnv {
    /// `let Some(env) = TestEnv::new().await else { return };` — `None` (skip) without a
    /// server, except under `CI=true`, where that fails.
    pub(crate) async fn new() -> Option<TestEnv> {
        let admin = match admin().await {
            Ok(admin) => admin,
            Err(e) => {
                assert!(
                    !ci(),
                    "PostgreSQL at {} is not reachable under CI: {e}",
                    url()
                );
                eprintln!("skipped: PostgreSQL at {} is not reachable: {e}", url());
                return None;
            }
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        Some(TestEnv {
            admin,
            schema: format!("fmt_{}", &id[..12]),
            application: format!("fm-test-{}", &id[..12]),
        })
    }

    /// The configuration of a store in the test's schema.
    pub(crate) fn config(&self) -> PostgresConfig {
        PostgresConfig::from_url(&url())
            .and_then(|c| c.with_schema(self.schema.clone()))
            .expect("the test URL parses")
            .with_application_name(&self.application)
            .with_connect_timeout(Duration::from_secs(3))
            .with_query_timeout(Duration::from_secs(10))
    }

    /// A new store (a pool of its own) in the test's schema.
    pub(crate) fn store(&self) -> PostgresStore {
        PostgresStore::new(self.config()).expect("a store")
    }

    /// Terminates every connection of the test's stores, as a network failure or a DBA
    /// would; says how many.
    pub(crate) async fn kill_connections(&self) -> u64 {
        self.terminate("application_name = $1", &self.application)
            .await
    }

    /// Terminates the sessions running `LISTEN` or holding advisory locks of the test.
    pub(crate) async fn terminate(&self, condition: &str, value: &str) -> u64 {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
             FROM pg_stat_activity WHERE {condition} AND pid <> pg_backend_pid()"
        );
        let row = self
            .admin
            .query_one(&sql, &[&value])
            .await
            .expect("pg_terminate_backend");
        u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)
    }

    /// Runs SQL as the administrator.
    pub(crate) async fn sql(&self, sql: &str) {
        self.admin.batch_execute(sql).await.expect("admin SQL");
    }

    /// The first column of every row of a query, as text, as the administrator.
    pub(crate) async fn lines(&self, sql: &str) -> Vec<String> {
        self.admin
            .query(sql, &[])
            .await
            .expect("admin query")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// One value of a query, as the administrator.
    pub(crate) async fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        self.admin
            .query_one(sql, &[])
            .await
            .expect("admin query")
            .get(0)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let (schema, application) = (self.schema.clone(), self.application.clone());
        // The test's runtime may be gone, or blocked right here with the test's own
        // connections on it: a thread and a connection of their own, which first ends the
        // test's sessions so that no lock they hold keeps the schema from being dropped.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = admin().await.ok()?;
                admin
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = $1",
                        &[&application],
                    )
                    .await
                    .ok()?;
                admin
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                    ))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// An administrator's connection, driven on the current runtime.
async fn admin() -> Result<Client, String> {
    let config: tokio_postgres::Config = url().parse().map_err(|e| format!("{e}"))?;
    let mut config = config;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(client)
}
