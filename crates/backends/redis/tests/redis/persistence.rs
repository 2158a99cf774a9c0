//! Checkpoint keys with glob characters, listing by SCAN, transactions.

use bytes::Bytes;
use flatmachines_core::PersistenceBackend;
use proptest::prelude::*;

use crate::support::TestEnv;

#[tokio::test]
async fn glob_characters_in_keys_and_prefixes_are_literal() {
    let Some(env) = TestEnv::new() else { return };
    let store = env.client().persistence();
    let keys = ["a*/1", "a[b]/1", "a?/1", "a\\x/1", "ab/1", "a^/1"];
    for key in keys {
        store.save(key, Bytes::from_static(b"v")).await.unwrap();
    }
    assert_eq!(store.list("a*").await.unwrap(), ["a*/1"]);
    assert_eq!(store.list("a[").await.unwrap(), ["a[b]/1"]);
    assert_eq!(store.list("a?").await.unwrap(), ["a?/1"]);
    assert_eq!(store.list("a\\").await.unwrap(), ["a\\x/1"]);
    assert_eq!(store.list("a").await.unwrap().len(), keys.len());
    // Nothing outside the namespace is listed, nor stored.
    let other = env
        .client()
        .with_namespace("flatmachines:elsewhere")
        .unwrap();
    assert!(other.persistence().list("").await.unwrap().is_empty());
    assert_eq!(env.keys().len(), keys.len());
}

#[tokio::test]
async fn save_many_lands_whole() {
    let Some(env) = TestEnv::new() else { return };
    let store = env.client().persistence();
    let entries = [
        ("e/step_000001_execute.json", Bytes::from_static(b"{}")),
        (
            "e/latest",
            Bytes::from_static(b"e/step_000001_execute.json"),
        ),
    ];
    let refs: Vec<(&str, Bytes)> = entries.iter().map(|(k, v)| (*k, v.clone())).collect();
    store.save_many(&refs).await.unwrap();
    assert_eq!(
        store.list("e/").await.unwrap(),
        ["e/latest", "e/step_000001_execute.json"]
    );
    // A bad key anywhere refuses the whole batch before anything is sent.
    let bad = [("f/ok", Bytes::new()), ("../f", Bytes::new())];
    assert!(store.save_many(&bad).await.is_err());
    assert!(store.load("f/ok").await.unwrap().is_none());
}

fn key_segment() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-c*?\\[\\]\\\\^:{}]{1,4}").expect("a regex")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Whatever characters keys hold, `list(prefix)` is exactly the keys starting with it.
    #[test]
    fn list_is_a_literal_prefix_match(
        keys in proptest::collection::btree_set(
            (key_segment(), key_segment()).prop_map(|(a, b)| format!("{a}/{b}")),
            1..8,
        ),
        prefix in "[a-c*?\\[\\]\\\\^]{0,2}",
    ) {
        let Some(env) = TestEnv::new() else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = env.client().persistence();
            for key in &keys {
                store.save(key, Bytes::from(key.clone())).await.unwrap();
            }
            let listed = store.list(&prefix).await.unwrap();
            let expected: Vec<String> =
                keys.iter().filter(|k| k.starts_with(&prefix)).cloned().collect();
            assert_eq!(listed, expected);
        });
    }
}
