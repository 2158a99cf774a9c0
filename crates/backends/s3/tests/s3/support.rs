//! A test's own prefix in the test bucket, removed when the test ends.

use std::time::Duration;

use flatmachines_s3::{S3Backend, S3Config};

/// The bucket the tests use unless `FLATMACHINES_TEST_S3_URL` names one.
pub(crate) const DEFAULT_URL: &str =
    "s3://flatmachines-test?endpoint=http://127.0.0.1:5000&region=us-east-1";

/// The store the tests use: `FLATMACHINES_TEST_S3_URL`, else the local emulator that
/// `cargo xtask test` starts.
pub(crate) fn url() -> String {
    std::env::var("FLATMACHINES_TEST_S3_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// Whether `CI` says this is a CI run, where a missing server fails instead of skipping.
pub(crate) fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The test configuration: the URL's, with short timeouts. An emulator on loopback accepts
/// any credentials, so dummy ones stand in when the environment has none.
pub(crate) fn base_config() -> S3Config {
    let url = url();
    let mut config = S3Config::from_url(&url)
        .expect("FLATMACHINES_TEST_S3_URL parses")
        .with_connect_timeout(Duration::from_secs(2))
        .with_attempt_timeout(Duration::from_secs(10))
        .with_operation_timeout(Duration::from_secs(30));
    let loopback = config
        .endpoint()
        .or(std::env::var("AWS_ENDPOINT_URL").ok().as_deref())
        .is_some_and(|e| e.contains("127.0.0.1") || e.contains("localhost"));
    if loopback && std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        config = config.with_credentials("test", "test");
    }
    config
}

/// One test's prefix: `{url prefix}test-{random}/`.
pub(crate) struct TestEnv {
    pub(crate) config: S3Config,
}

impl TestEnv {
    /// `let Some(env) = TestEnv::new().await else { return };` — `None` (skip) without a
    /// server, except under `CI=true`, where that fails. Creates the bucket on an emulator
    /// that lacks it.
    pub(crate) async fn new() -> Option<TestEnv> {
        let base = base_config();
        let prefix = format!(
            "{}test-{}",
            base.prefix(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let config = base.with_prefix(&prefix).expect("a valid prefix");
        let backend = S3Backend::new(config.clone());
        if let Err(e) = backend.check().await {
            let missing_bucket =
                matches!(kind(&e), Some(flatmachines_s3::S3ErrorKind::NoSuchBucket));
            let created = missing_bucket && backend.create_bucket().await.is_ok();
            if !created {
                assert!(
                    !is_ci(),
                    "the S3 test store {} is not usable under CI: {e}",
                    url()
                );
                eprintln!("skipped: the S3 test store {} is not usable: {e}", url());
                return None;
            }
        }
        Some(TestEnv { config })
    }

    /// A new backend (a connection of its own) on the test's prefix.
    pub(crate) fn backend(&self) -> S3Backend {
        S3Backend::new(self.config.clone())
    }

    /// A backend on the bucket's root, to see the objects as they are stored.
    pub(crate) fn root(&self) -> S3Backend {
        S3Backend::new(self.config.clone().with_prefix("").expect("the root"))
    }

    /// The test prefix, as object keys start with it.
    pub(crate) fn prefix(&self) -> &str {
        self.config.prefix()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let config = self.config.clone();
        // A thread of its own, so dropping works inside or outside a runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime
                .block_on(S3Backend::new(config).delete_prefix(""))
                .ok()
        })
        .join();
    }
}

/// The S3 error kind behind a backend error, if it is one.
pub(crate) fn kind(error: &flatmachines_core::Error) -> Option<flatmachines_s3::S3ErrorKind> {
    match error {
        flatmachines_core::Error::Backend { source, .. } => source
            .downcast_ref::<flatmachines_s3::S3Error>()
            .map(flatmachines_s3::S3Error::kind),
        _ => None,
    }
}
