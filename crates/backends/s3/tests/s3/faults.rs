//! Failures name the bucket, the key and the cause, and come within the configured limits.

use std::time::Duration;

use bytes::Bytes;
use flatmachines_core::{Error, PersistenceBackend};
use flatmachines_s3::{S3Backend, S3ErrorKind};

use crate::fake::{FakeS3, Reply};
use crate::support::{TestEnv, base_config, kind};

/// Far beyond every limit the tests configure; only a hang would reach it.
const BOUND: Duration = Duration::from_secs(60);

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}"))
}

fn expect_kind(result: Result<impl std::fmt::Debug, Error>, expected: S3ErrorKind) -> String {
    let error = result.expect_err("the operation should fail");
    assert_eq!(kind(&error), Some(expected), "{error}");
    eprintln!("{expected:?}: {error}");
    error.to_string()
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_clearly() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = flatmachines_s3::S3Config::from_url(&format!(
        "s3://some-bucket/p?endpoint=http://127.0.0.1:{port}"
    ))
    .unwrap()
    .with_credentials("test", "test")
    .with_connect_timeout(Duration::from_millis(500));
    let store = S3Backend::new(config);
    let message = expect_kind(
        bounded("save", store.save("e/latest", Bytes::new())).await,
        S3ErrorKind::Unreachable,
    );
    assert!(message.contains("s3://some-bucket/p/e/latest"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("unreachable"), "{message}");
    let error = bounded("check", store.check()).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
}

#[tokio::test]
async fn a_silent_server_times_out_with_the_limit_named() {
    let fake = FakeS3::start(|_, _| None).await;
    let store = fake.backend(2);
    let message = expect_kind(
        bounded("load", store.load("e/latest")).await,
        S3ErrorKind::TimedOut,
    );
    assert!(message.contains("no answer"), "{message}");
    assert!(message.contains("s3://bucket/p/e/latest"), "{message}");
    assert_eq!(fake.seen().len(), 2, "one request per attempt");
}

#[tokio::test]
async fn a_missing_bucket_is_named_by_every_operation() {
    let Some(_env) = TestEnv::new().await else {
        return;
    };
    let bucket = format!(
        "fm-missing-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    // The test server, endpoint and credentials, on a bucket that does not exist.
    let config = base_config()
        .with_bucket(&bucket)
        .unwrap()
        .with_prefix("x")
        .unwrap()
        .with_max_attempts(1);
    let store = S3Backend::new(config);
    let check = expect_kind(
        bounded("check", store.check()).await,
        S3ErrorKind::NoSuchBucket,
    );
    assert!(
        check.contains(&format!("`{bucket}` does not exist")),
        "{check}"
    );
    let save = expect_kind(
        bounded("save", store.save("e/latest", Bytes::new())).await,
        S3ErrorKind::NoSuchBucket,
    );
    assert!(
        save.contains(&format!("s3://{bucket}/x/e/latest")),
        "{save}"
    );
    expect_kind(
        bounded("load", store.load("e/latest")).await,
        S3ErrorKind::NoSuchBucket,
    );
    expect_kind(
        bounded("list", store.list("")).await,
        S3ErrorKind::NoSuchBucket,
    );
    let error = store.check().await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_and_reported_when_it_persists() {
    // Two refusals, then success: three attempts absorb it.
    let fake = FakeS3::start(|_, index| {
        Some(if index < 2 {
            Reply::error(503, "SlowDown", "Please reduce your request rate.")
        } else {
            Reply::ok()
        })
    })
    .await;
    bounded("save", fake.backend(3).save("e/latest", Bytes::new()))
        .await
        .unwrap();
    assert_eq!(fake.seen().len(), 3);

    let always = FakeS3::start(|_, _| {
        Some(Reply::error(
            503,
            "SlowDown",
            "Please reduce your request rate.",
        ))
    })
    .await;
    let message = expect_kind(
        bounded("save", always.backend(2).save("e/latest", Bytes::new())).await,
        S3ErrorKind::Throttled,
    );
    assert!(message.contains("throttling"), "{message}");
    assert!(message.contains("2 attempts"), "{message}");
    assert_eq!(always.seen().len(), 2);
}

#[tokio::test]
async fn refused_credentials_are_named() {
    let fake = FakeS3::start(|_, _| Some(Reply::error(403, "AccessDenied", "Access Denied"))).await;
    let store = fake.backend(3);
    let message = expect_kind(
        bounded("save", store.save("e/latest", Bytes::new())).await,
        S3ErrorKind::AccessDenied,
    );
    assert!(
        message.contains("access denied to bucket `bucket`"),
        "{message}"
    );
    assert!(message.contains("s3://bucket/p/e/latest"), "{message}");
    assert_eq!(fake.seen().len(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn a_bucket_in_another_region_names_that_region() {
    let fake = FakeS3::start(|_, _| {
        let mut reply = Reply::error(301, "PermanentRedirect", "Use the right endpoint.");
        reply
            .headers
            .push(("x-amz-bucket-region", "eu-central-1".to_owned()));
        Some(reply)
    })
    .await;
    let message = expect_kind(
        bounded("load", fake.backend(1).load("e/latest")).await,
        S3ErrorKind::WrongRegion,
    );
    assert!(message.contains("AWS_REGION=eu-central-1"), "{message}");
}

#[tokio::test]
async fn bad_keys_touch_nothing() {
    let fake = FakeS3::start(|_, _| Some(Reply::ok())).await;
    let store = fake.backend(1);
    for key in ["../x", "/abs", "a//b", ".hidden"] {
        assert!(matches!(
            store.save(key, Bytes::new()).await,
            Err(Error::InvalidKey { .. })
        ));
    }
    assert!(matches!(
        store.list("/").await,
        Err(Error::InvalidKey { .. })
    ));
    assert!(fake.seen().is_empty(), "nothing was sent");
}
