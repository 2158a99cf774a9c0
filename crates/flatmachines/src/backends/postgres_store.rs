//! Opening the PostgreSQL family from a store URL or from the names configs use.

use std::sync::Arc;

use flatmachines_engine::BackendRequest;
use flatmachines_postgres::{DEFAULT_URL, PostgresConfig, PostgresStore, URL_ENV, redact_url};

use super::{OpenError, Store};

/// `postgres://…` or `postgresql://…`: checkpoints and an advisory-lock holder on the
/// process's store for that URL. Nothing is connected until the first use, which creates
/// (or checks) the schema.
pub(super) fn open_store(url: &str) -> Result<Store, OpenError> {
    let store = PostgresConfig::from_url(url)
        .and_then(PostgresStore::open_shared)
        .map_err(|source| OpenError::Open {
            url: redact_url(url),
            source,
        })?;
    Ok(Store {
        results: Some(Arc::new(store.results())),
        registration: Some(Arc::new(store.registration())),
        work: Some(Arc::new(store.work())),
        ..Store::new(Arc::new(store.persistence()), Arc::new(store.lock()))
    })
}

/// The store a config's `backend: postgres` (or `locking`, `results`, `registration`,
/// `work: postgres`) means: the server of `settings.backends.postgres_url`, else of
/// `FLATMACHINES_POSTGRES_URL`, else the local default; the schema of
/// `settings.backends.postgres_schema`, else of the URL, else `flatmachines`. Every backend
/// of the process naming one server and schema shares one pool.
pub(super) fn store(request: &BackendRequest<'_>) -> Result<PostgresStore, String> {
    let url = super::configured_url(request, "postgres_url", URL_ENV, DEFAULT_URL);
    let mut config = PostgresConfig::from_url(&url).map_err(|e| e.to_string())?;
    if let Some(schema) = request.option("postgres_schema") {
        config = config.with_schema(schema).map_err(|e| e.to_string())?;
    }
    PostgresStore::open_shared(config).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flatmachines_core::{PersistenceBackend as _, ReadOptions, ResultBackend as _};

    use super::*;
    use crate::Machine;

    /// A machine choosing every PostgreSQL part by name runs through [`crate::runtime`], and
    /// its checkpoints and result land in the schema its settings give.
    #[tokio::test]
    async fn configs_choose_postgres_by_name() {
        let url = super::super::env_url(URL_ENV, DEFAULT_URL);
        // Unique per run, so parallel runs on one server never share a schema.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let schema = format!("fm_facade_{}_{nanos}", std::process::id());
        let probe = PostgresConfig::from_url(&url)
            .and_then(|c| c.with_schema(schema.clone()))
            .and_then(PostgresStore::new)
            .expect("the test URL parses");
        if let Err(e) = probe.ping().await {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "PostgreSQL is not reachable under CI: {e}");
            eprintln!("skipped: {e}");
            return;
        }
        let yaml = format!(
            r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: by-name
  persistence: {{enabled: true, backend: postgres}}
  settings:
    backends:
      locking: postgres
      results: postgres
      registration: postgres
      work: postgres
      postgres_url: "{url}"
      postgres_schema: "{schema}"
  states:
    start: {{type: initial, transitions: [{{to: done}}]}}
    done: {{type: final, output: {{ok: true}}}}
"#
        );
        let machine = Machine::from_yaml(&yaml, ".").expect("loads");
        let runtime = crate::runtime().build();
        let options = crate::RunOptions {
            execution_id: Some("by-name-1".to_owned()),
            max_steps: None,
            parent_execution_id: None,
            ..Default::default()
        };
        let outcome = runtime
            .run(&machine, serde_json::Map::new(), options)
            .await
            .expect("runs");
        assert_eq!(outcome.output, serde_json::json!({"ok": true}));
        let keys = Arc::new(probe.persistence())
            .list("by-name-1/")
            .await
            .expect("lists");
        assert!(keys.contains(&"by-name-1/latest".to_owned()), "{keys:?}");
        // Only child machines leave results, so write through what the same settings open.
        let mut settings = flatmachines_core::config::BackendConfig::default();
        settings
            .extra
            .insert("postgres_url".to_owned(), serde_json::json!(url));
        settings
            .extra
            .insert("postgres_schema".to_owned(), serde_json::json!(schema));
        let request = BackendRequest {
            settings: Some(&settings),
            ..BackendRequest::named("postgres")
        };
        let results =
            flatmachines_engine::BackendProvider::results(&crate::backends::Provider, &request)
                .expect("postgres results are in this build")
                .expect("opens");
        results
            .write(
                "flatagents://by-name-1/result",
                serde_json::json!({"ok": true}),
            )
            .await
            .expect("writes");
        let result = probe
            .results()
            .read("flatagents://by-name-1/result", ReadOptions::now())
            .await
            .expect("reads");
        assert_eq!(result, Some(serde_json::json!({"ok": true})));
        probe.drop_schema().await.expect("drops the schema");
    }
}
