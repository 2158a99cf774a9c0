//! Keys under the prefix, listing across pages, conditional snapshot creates.

use std::sync::Arc;

use bytes::Bytes;
use flatmachines_core::PersistenceBackend;
use futures::{StreamExt, TryStreamExt};

use crate::fake::{FakeS3, Reply};
use crate::support::TestEnv;

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[tokio::test]
async fn keys_are_stored_under_the_prefix_and_only_there() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = env.backend();
    store.save("exec/latest", bytes("v")).await.unwrap();
    let root = env.root();
    let stored = root.list(env.prefix()).await.unwrap();
    assert_eq!(stored, [format!("{}exec/latest", env.prefix())]);
    // A sibling prefix sees nothing of it, though its object keys share the first bytes.
    let sibling_prefix = format!("{}x", env.prefix().trim_end_matches('/'));
    let sibling =
        flatmachines_s3::S3Backend::new(env.config.clone().with_prefix(&sibling_prefix).unwrap());
    assert!(sibling.list("").await.unwrap().is_empty());
    assert_eq!(store.load("exec/latest").await.unwrap(), Some(bytes("v")));
}

#[tokio::test]
async fn list_follows_continuation_tokens_page_by_page() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = flatmachines_s3::S3Backend::new(env.config.clone().with_list_page_size(3));
    let mut keys: Vec<String> = (0..11)
        .rev()
        .map(|i| format!("e/step_{i:06}_x.json"))
        .collect();
    keys.extend(["e/latest", "f/latest", "e-2/latest"].map(str::to_owned));
    for key in &keys {
        store.save(key, bytes(key)).await.unwrap();
    }
    keys.sort();
    assert_eq!(store.list("").await.unwrap(), keys);
    let under_e: Vec<&String> = keys.iter().filter(|k| k.starts_with("e/")).collect();
    assert_eq!(
        store.list("e/").await.unwrap().iter().collect::<Vec<_>>(),
        under_e
    );
    assert_eq!(store.list("e-").await.unwrap(), ["e-2/latest"]);
    assert_eq!(store.delete_prefix("e/").await.unwrap(), 12);
    assert_eq!(store.list("").await.unwrap(), ["e-2/latest", "f/latest"]);
}

#[tokio::test]
async fn list_is_complete_past_a_thousand_keys() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = Arc::new(env.backend());
    let keys: Vec<String> = (0..1003).map(|i| format!("big/k{i:05}")).collect();
    futures::stream::iter(keys.iter().cloned())
        .map(|key| {
            let store = Arc::clone(&store);
            async move { store.save(&key, Bytes::new()).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    assert_eq!(store.list("big/").await.unwrap(), keys);
    assert_eq!(
        store.list("big/k0100").await.unwrap(),
        ["big/k01000", "big/k01001", "big/k01002"]
    );
    assert_eq!(store.list("big/k0010").await.unwrap().len(), 10);
}

#[tokio::test]
async fn objects_no_key_can_name_are_not_listed() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = env.backend();
    store.save("a/latest", bytes("v")).await.unwrap();
    // A console "folder" marker and an object in the backend's own area, put directly.
    let client = store.sdk_client().await;
    for object in ["a/sub/", ".flatmachines/other", "a/.hidden"] {
        client
            .put_object()
            .bucket(env.config.bucket())
            .key(format!("{}{object}", env.prefix()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(env.root().list(env.prefix()).await.unwrap().len(), 1);
    assert_eq!(store.list("").await.unwrap(), ["a/latest"]);
    assert_eq!(store.list("a/").await.unwrap(), ["a/latest"]);
    assert_eq!(
        store.delete_prefix("").await.unwrap(),
        4,
        "delete_prefix takes them all"
    );
}

#[tokio::test]
async fn snapshots_are_created_once_and_a_second_write_replaces_them_visibly() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = env.backend();
    assert!(
        store.conditional_writes().await.unwrap(),
        "the test server honours If-None-Match"
    );
    let snapshot = "exec/step_000003_execute.json";
    store
        .save_many(&[(snapshot, bytes("first")), ("exec/latest", bytes(snapshot))])
        .await
        .unwrap();
    assert_eq!(store.replaced_snapshots(), 0);
    // The pointer is overwritten as a matter of course; a repeated snapshot is counted.
    store
        .save_many(&[
            (snapshot, bytes("second")),
            ("exec/latest", bytes(snapshot)),
        ])
        .await
        .unwrap();
    assert_eq!(store.replaced_snapshots(), 1);
    assert_eq!(store.load(snapshot).await.unwrap(), Some(bytes("second")));
    assert_eq!(
        store.list("exec/").await.unwrap(),
        ["exec/latest", snapshot]
    );
    // The probe left nothing behind that a key could name.
    assert_eq!(env.root().list(env.prefix()).await.unwrap().len(), 2);

    let plain =
        flatmachines_s3::S3Backend::new(env.config.clone().with_conditional_snapshots(false));
    plain.save(snapshot, bytes("third")).await.unwrap();
    assert!(!plain.conditional_writes().await.unwrap());
    assert_eq!(plain.replaced_snapshots(), 0);
}

#[tokio::test]
async fn a_server_that_ignores_if_none_match_is_detected_and_written_plainly() {
    let fake = FakeS3::start(|_, _| Some(Reply::ok())).await;
    let store = fake.backend(1);
    store
        .save("e/step_000001_x.json", bytes("v"))
        .await
        .unwrap();
    assert!(!store.conditional_writes().await.unwrap());
    let seen = fake.seen();
    let conditional: Vec<bool> = seen
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.header("if-none-match").is_some())
        .collect();
    // Two probe creates, then the snapshot written with a plain put.
    assert_eq!(conditional, [true, true, false], "{seen:#?}");
    assert!(
        seen.iter()
            .any(|r| r.method == "DELETE" && r.path.contains(".flatmachines/probe-"))
    );
}

#[tokio::test]
async fn a_server_that_refuses_the_header_is_written_plainly() {
    let fake = FakeS3::start(|request, _| {
        Some(if request.header("if-none-match").is_some() {
            Reply::error(501, "NotImplemented", "If-None-Match is not implemented")
        } else {
            Reply::ok()
        })
    })
    .await;
    let store = fake.backend(1);
    store
        .save("e/step_000001_x.json", bytes("v"))
        .await
        .unwrap();
    store
        .save("e/step_000002_x.json", bytes("v"))
        .await
        .unwrap();
    assert!(!store.conditional_writes().await.unwrap());
    let puts = fake.seen().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 3, "one refused probe, then two plain puts");
}

#[tokio::test]
async fn the_configured_region_signs_requests_and_an_endpoint_means_path_style() {
    let fake = FakeS3::start(|_, _| Some(Reply::ok())).await;
    let config = fake.config(1).with_region("eu-west-3").unwrap();
    flatmachines_s3::S3Backend::new(config)
        .save("e/latest", bytes("v"))
        .await
        .unwrap();
    let seen = fake.seen();
    let put = seen.iter().find(|r| r.method == "PUT").expect("a PUT");
    // Path-style: the bucket is the first path segment, not part of the host name.
    assert!(put.path.starts_with("/bucket/p/e/latest"), "{put:?}");
    assert!(
        put.header("host")
            .is_some_and(|h| h.starts_with("127.0.0.1:")),
        "{put:?}"
    );
    let authorization = put.header("authorization").unwrap_or_default();
    assert!(
        authorization.contains("/eu-west-3/s3/aws4_request"),
        "{authorization}"
    );
}
