//! Opening the S3 family from a store URL or from the names configs use.

use std::sync::Arc;

use flatmachines_engine::BackendRequest;
use flatmachines_memory::NoOpLock;
use flatmachines_s3::{S3Backend, S3Config, URL_ENV};

use super::{OpenError, Store};

/// `s3://BUCKET/PREFIX?…`: checkpoints in the bucket, and no lock, since S3 has none (run one
/// runner per execution, or pick a lock with `settings.backends.locking`). Nothing is
/// connected until the first use.
pub(super) fn open_store(url: &str) -> Result<Store, OpenError> {
    let backend = S3Backend::open(url).map_err(|source| OpenError::Open {
        url: url.to_owned(),
        source,
    })?;
    Ok(Store::new(Arc::new(backend), Arc::new(NoOpLock)))
}

/// The store a config's `backend: s3` means: bucket `settings.backends.s3_bucket` under
/// `s3_prefix` (with `s3_region` and `s3_endpoint` if given), else the store of the
/// `FLATMACHINES_S3_URL` environment variable (whose prefix `s3_prefix` replaces).
pub(super) fn backend(request: &BackendRequest<'_>) -> Result<S3Backend, String> {
    let prefix = request.option("s3_prefix");
    let mut config = match (request.option("s3_bucket"), std::env::var(URL_ENV)) {
        (Some(bucket), _) => S3Config::new(bucket, prefix.unwrap_or("")),
        (None, Ok(url)) if !url.is_empty() => S3Config::from_url(&url).and_then(|config| {
            match prefix {
                Some(prefix) => config.with_prefix(prefix),
                None => Ok(config),
            }
        }),
        _ => {
            return Err(format!(
                "`s3` needs a bucket: set settings.backends.s3_bucket (and s3_prefix), or the {URL_ENV} environment variable to s3://BUCKET/PREFIX"
            ));
        }
    }
    .map_err(|e| e.to_string())?;
    if let Some(region) = request.option("s3_region") {
        config = config.with_region(region).map_err(|e| e.to_string())?;
    }
    if let Some(endpoint) = request.option("s3_endpoint") {
        config = config.with_endpoint(endpoint).map_err(|e| e.to_string())?;
    }
    Ok(S3Backend::new(config))
}

/// Why `locking: s3` cannot be opened.
pub(super) fn no_lock() -> String {
    "S3 has no execution lock: use `locking: none` (and run one runner per execution), or `redis` or `postgres`".to_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use flatmachines_core::config::BackendConfig;
    use flatmachines_engine::BackendProvider;

    use super::super::{Provider, available_schemes};
    use super::*;

    #[test]
    fn s3_urls_open_lazily_without_a_lock() {
        // Nothing connects until the first use, so an unreachable endpoint still opens.
        let store = open_store("s3://bucket/prefix?endpoint=http://127.0.0.1:1").unwrap();
        assert!(format!("{:?}", store.persistence).contains("bucket"));
        assert!(format!("{:?}", store.lock).contains("NoOpLock"));
        let error = open_store("s3://Bad_Bucket/x").err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("invalid bucket name `Bad_Bucket`")),
            "{error:?}"
        );
        assert!(available_schemes().contains(&"s3"));
        assert!(Provider.persistence_names().contains(&"s3"));
    }

    #[test]
    fn configs_name_the_bucket_in_settings() {
        let settings: BackendConfig = serde_json::from_value(serde_json::json!({
            "persistence": "s3",
            "s3_bucket": "checkpoints",
            "s3_prefix": "team/a",
            "s3_region": "eu-west-1",
            "s3_endpoint": "http://127.0.0.1:9000",
        }))
        .unwrap();
        let request = BackendRequest {
            name: "s3",
            settings: Some(&settings),
            config_dir: Path::new("."),
        };
        let opened = backend(&request).unwrap();
        assert_eq!(
            opened.config().url(),
            "s3://checkpoints/team/a/?region=eu-west-1&endpoint=http://127.0.0.1:9000"
        );
        assert!(matches!(Provider.persistence(&request), Some(Ok(_))));
        let lock = Provider.lock(&request).map(|l| l.err().unwrap_or_default());
        assert!(
            lock.as_deref()
                .is_some_and(|m| m.contains("S3 has no execution lock")),
            "{lock:?}"
        );
        let bad: BackendConfig =
            serde_json::from_value(serde_json::json!({"s3_bucket": "x"})).unwrap();
        let request = BackendRequest {
            settings: Some(&bad),
            ..request
        };
        let error = backend(&request).err().unwrap_or_default();
        assert!(error.contains("invalid bucket name `x`"), "{error}");
        if std::env::var(URL_ENV).is_err() {
            let error = backend(&BackendRequest::named("s3"))
                .err()
                .unwrap_or_default();
            assert!(error.contains("settings.backends.s3_bucket"), "{error}");
            assert!(error.contains(URL_ENV), "{error}");
        }
    }
}
