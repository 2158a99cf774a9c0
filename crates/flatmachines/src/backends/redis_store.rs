//! Opening the Redis family from a store URL or from the names configs use.

use std::sync::Arc;

use flatmachines_engine::BackendRequest;
use flatmachines_redis::{DEFAULT_URL, RedisClient, RedisConfig, URL_ENV, redact_url};

use super::{OpenError, Store};

/// `redis://…` or `rediss://…`: checkpoints and a leased lock on one connection. Nothing is
/// connected until the first use.
pub(super) fn open_store(url: &str) -> Result<Store, OpenError> {
    let client = RedisClient::open(url).map_err(|source| OpenError::Open {
        url: redact_url(url),
        source,
    })?;
    Ok(Store {
        results: Some(Arc::new(client.results())),
        registration: Some(Arc::new(client.registration())),
        work: Some(Arc::new(client.work())),
        ..Store::new(Arc::new(client.persistence()), Arc::new(client.lock()))
    })
}

/// The client a config's `backend: redis` (or `locking: redis`, …) means: the server of
/// `settings.backends.redis_url`, else of `FLATMACHINES_REDIS_URL`, else the local default;
/// the namespace of `settings.backends.redis_namespace`, else of the URL, else the default.
pub(super) fn client(request: &BackendRequest<'_>) -> Result<RedisClient, String> {
    let url = super::configured_url(request, "redis_url", URL_ENV, DEFAULT_URL);
    let mut config = RedisConfig::from_url(&url).map_err(|e| e.to_string())?;
    if let Some(namespace) = request.option("redis_namespace") {
        config = config
            .with_namespace(namespace)
            .map_err(|e| e.to_string())?;
    }
    RedisClient::new(config).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use flatmachines_core::PersistenceBackend as _;

    use super::*;
    use crate::Machine;

    /// A machine choosing every Redis part by name runs through [`crate::runtime`], and its
    /// checkpoints land in the namespace its settings give.
    #[tokio::test]
    async fn configs_choose_redis_by_name() {
        let url = super::super::env_url(URL_ENV, DEFAULT_URL);
        let namespace = format!("flatmachines:facade-{}", &uuid_like(std::process::id()));
        let probe = RedisClient::new(
            RedisConfig::from_url(&url)
                .and_then(|c| c.with_namespace(namespace.clone()))
                .expect("the test URL parses"),
        )
        .expect("a client");
        if let Err(e) = probe.ping().await {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "Redis is not reachable under CI: {e}");
            eprintln!("skipped: {e}");
            return;
        }
        let yaml = format!(
            r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: by-name
  persistence: {{enabled: true, backend: redis}}
  settings:
    backends:
      locking: redis
      results: redis
      redis_url: "{url}"
      redis_namespace: "{namespace}"
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
        let store = Arc::new(probe.persistence());
        let keys = store.list("by-name-1/").await.expect("lists");
        assert!(keys.contains(&"by-name-1/latest".to_owned()), "{keys:?}");
        probe.purge().await.expect("purges");
    }

    fn uuid_like(seed: u32) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{seed:x}-{nanos:x}")
    }
}
