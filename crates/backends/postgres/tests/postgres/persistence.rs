//! Checkpoints: `list` agrees with a plain prefix filter on awkward keys, and size limits.

use std::collections::BTreeSet;

use bytes::Bytes;
use flatmachines_core::{Error, PersistenceBackend};
use flatmachines_postgres::MAX_VALUE_BYTES;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use crate::support::TestEnv;

/// Segments drawn from characters that sort around `/` and the `"C"` collation's edges, and
/// that LIKE would treat as wildcards.
fn segment() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('b'),
            Just('-'),
            Just('0'),
            Just('_'),
            Just('%'),
            Just('\\'),
            Just('é'),
            Just('\u{10FFFF}'),
            Just('\u{FFFF}'),
        ],
        1..4,
    )
    .prop_map(|chars| chars.into_iter().collect())
    .prop_filter("no leading dot", |s: &String| !s.starts_with('.'))
}

fn key() -> impl Strategy<Value = String> {
    proptest::collection::vec(segment(), 1..4).prop_map(|segments| segments.join("/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_agrees_with_a_prefix_filter() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = env.store().persistence();
    let strategy = (
        proptest::collection::btree_set(key(), 1..40),
        proptest::collection::vec(0usize..200, 1..8),
    );
    // Values drawn one by one: the runner's closure is synchronous, the store is not. A
    // failure prints the prefix and the keys, which is all a case is.
    let mut runner = TestRunner::default();
    let mut round = 0;
    let cases: Vec<_> = (0..24)
        .map(|_| strategy.new_tree(&mut runner).map(|tree| tree.current()))
        .collect::<Result<_, _>>()
        .unwrap();
    for (keys, cuts) in cases {
        round += 1;
        let keys: BTreeSet<String> = keys.into_iter().map(|k| format!("r{round}x{k}")).collect();
        for key in &keys {
            store.save(key, Bytes::from(key.clone())).await.unwrap();
        }
        let mut prefixes = vec![format!("r{round}x")];
        for (key, cut) in keys.iter().zip(cuts.iter().cycle()) {
            let mut end = (*cut).min(key.len());
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            prefixes.push(key[..end].to_owned());
        }
        for prefix in prefixes {
            if flatmachines_core::validate_prefix(&prefix).is_err() {
                continue;
            }
            let expected: Vec<&String> = keys
                .iter()
                .filter(|key| key.starts_with(prefix.as_str()))
                .collect();
            let listed = store.list(&prefix).await.unwrap();
            let listed: Vec<&String> = listed
                .iter()
                .filter(|key| key.starts_with(&format!("r{round}x")))
                .collect();
            assert_eq!(listed, expected, "prefix {prefix:?} of keys {keys:?}");
        }
    }
}

#[tokio::test]
async fn oversized_values_are_refused_before_sending() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = env.store().persistence();
    store.save("e/k", Bytes::from_static(b"old")).await.unwrap();
    let huge = Bytes::from(vec![0u8; MAX_VALUE_BYTES + 1]);
    let error = store.save("e/k", huge.clone()).await.unwrap_err();
    assert!(matches!(error, Error::TooLarge { .. }), "{error}");
    let error = store
        .save_many(&[("e/a", Bytes::from_static(b"1")), ("e/k", huge)])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::TooLarge { .. }), "{error}");
    assert_eq!(
        store.load("e/k").await.unwrap().as_deref(),
        Some(&b"old"[..])
    );
    assert_eq!(
        store.load("e/a").await.unwrap(),
        None,
        "save_many wrote a part"
    );
}

#[tokio::test]
async fn a_key_with_and_without_children_and_odd_characters() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = env.store().persistence();
    for key in ["a", "a/b", "a-b/c", "a_b/%", "a\\/x"] {
        store.save(key, Bytes::from(key)).await.unwrap();
    }
    assert_eq!(
        store.list("a").await.unwrap(),
        ["a", "a-b/c", "a/b", "a\\/x", "a_b/%"]
    );
    assert_eq!(store.list("a/").await.unwrap(), ["a/b"]);
    assert_eq!(store.list("a_").await.unwrap(), ["a_b/%"]);
    assert_eq!(store.load("a").await.unwrap().as_deref(), Some(&b"a"[..]));
}
