use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use flatmachines_core::{Error, PersistenceBackend};
use flatmachines_memory::MemoryBackend;

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clause1_concurrent_loads_see_the_old_or_the_new_value_never_a_mix() {
    let backend = MemoryBackend::new();
    let a = Bytes::from(vec![b'a'; 64 * 1024]);
    let b = Bytes::from(vec![b'b'; 64 * 1024]);
    backend.save("k", a.clone()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (backend, stop) = (backend.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut loads = 0_u32;
                while !stop.load(Ordering::Relaxed) || loads == 0 {
                    let value = backend.load("k").await.unwrap().unwrap();
                    let first = value[0];
                    assert!(value.len() == 64 * 1024 && value.iter().all(|&x| x == first));
                    loads += 1;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for round in 0..2000 {
        let value = if round % 2 == 0 { &b } else { &a };
        backend.save("k", value.clone()).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test]
async fn clause2_save_overwrites() {
    let backend = MemoryBackend::new();
    backend.save("exec/latest", bytes("one")).await.unwrap();
    backend.save("exec/latest", bytes("two")).await.unwrap();
    assert_eq!(
        backend.load("exec/latest").await.unwrap(),
        Some(bytes("two"))
    );
    assert_eq!(backend.len(), 1);
}

#[tokio::test]
async fn clause3_load_of_a_missing_key_is_none() {
    let backend = MemoryBackend::new();
    assert_eq!(backend.load("missing").await.unwrap(), None);
    backend.save("present", bytes("x")).await.unwrap();
    backend.delete("present").await.unwrap();
    assert_eq!(backend.load("present").await.unwrap(), None);
}

#[tokio::test]
async fn clause4_delete_of_a_missing_key_succeeds() {
    let backend = MemoryBackend::new();
    backend.delete("missing").await.unwrap();
    backend.save("a", bytes("x")).await.unwrap();
    backend.delete("a").await.unwrap();
    backend.delete("a").await.unwrap();
    assert!(backend.is_empty());
}

#[tokio::test]
async fn clause5_list_returns_exactly_the_prefixed_keys_sorted() {
    let backend = MemoryBackend::new();
    let mut expected = Vec::new();
    // Saved in reverse so that insertion order cannot pass for sorting.
    for i in (0..1000).rev() {
        let key = format!("exec-1/step_{i:06}_execute.json");
        backend.save(&key, bytes("{}")).await.unwrap();
        expected.push(key);
    }
    expected.sort();
    for other in [
        "exec-10/step_000001_execute.json",
        "exec-2/latest",
        "exec-",
        "a",
    ] {
        backend.save(other, bytes("{}")).await.unwrap();
    }
    assert_eq!(backend.list("exec-1/").await.unwrap(), expected);
    assert_eq!(
        backend.list("exec-1/step_0009").await.unwrap(),
        expected[900..].to_vec()
    );
    assert_eq!(backend.list("nothing").await.unwrap(), Vec::<String>::new());
    assert_eq!(
        backend.list("").await.unwrap().len(),
        1004,
        "empty prefix lists all"
    );
}

#[tokio::test]
async fn clause5_list_sorts_by_bytes() {
    let backend = MemoryBackend::new();
    for key in ["p/é", "p/z", "p/Z", "p/a", "p/ä", "p/a.b", "p/a b", "p/1"] {
        backend.save(key, bytes("")).await.unwrap();
    }
    let listed = backend.list("p/").await.unwrap();
    assert_eq!(
        listed,
        ["p/1", "p/Z", "p/a", "p/a b", "p/a.b", "p/z", "p/ä", "p/é"]
    );
}

#[tokio::test]
async fn clause6_every_byte_value_round_trips() {
    let backend = MemoryBackend::new();
    let all: Bytes = (0..=255_u8).collect::<Vec<_>>().into();
    backend.save("binary", all.clone()).await.unwrap();
    assert_eq!(backend.load("binary").await.unwrap(), Some(all));
    backend.save("empty", Bytes::new()).await.unwrap();
    assert_eq!(backend.load("empty").await.unwrap(), Some(Bytes::new()));
}

#[tokio::test]
async fn clause6_a_5_mb_value_round_trips() {
    let backend = MemoryBackend::new();
    let big: Bytes = (0..5 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    backend.save("big", big.clone()).await.unwrap();
    assert_eq!(backend.load("big").await.unwrap(), Some(big));
}

#[tokio::test]
async fn clause7_unusual_legal_keys_are_stored_as_given() {
    let backend = MemoryBackend::new();
    let keys = [
        "with space/step 1.json",
        "ünïcødé/ключ/键",
        "dots.in.name/x.y.z",
        "emoji/🦀",
        &vec!["k".repeat(255); 4].join("/"),
    ];
    for (i, key) in keys.iter().enumerate() {
        backend.save(key, Bytes::from(vec![i as u8])).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            backend.load(key).await.unwrap(),
            Some(Bytes::from(vec![i as u8]))
        );
    }
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    assert_eq!(backend.list("").await.unwrap(), sorted);
}

#[tokio::test]
async fn clause7_rejected_keys_fail_in_every_method_and_touch_nothing() {
    let backend = MemoryBackend::new();
    backend.save("keep", bytes("v")).await.unwrap();
    let long = "k".repeat(1025);
    for key in [
        "",
        "../x",
        "a/../b",
        "/abs",
        "a\0b",
        "line\nbreak",
        long.as_str(),
    ] {
        let invalid = |r: Result<(), Error>| matches!(r, Err(Error::InvalidKey { .. }));
        assert!(invalid(backend.save(key, bytes("x")).await), "save {key:?}");
        assert!(invalid(backend.load(key).await.map(drop)), "load {key:?}");
        assert!(invalid(backend.delete(key).await), "delete {key:?}");
        if !key.is_empty() {
            assert!(invalid(backend.list(key).await.map(drop)), "list {key:?}");
        }
    }
    assert_eq!(backend.list("").await.unwrap(), ["keep"]);
}

#[tokio::test]
async fn clones_share_the_store_and_debug_hides_values() {
    let backend = MemoryBackend::default();
    let clone = backend.clone();
    clone.save("k", bytes("secret-value")).await.unwrap();
    assert_eq!(
        backend.load("k").await.unwrap(),
        Some(bytes("secret-value"))
    );
    assert_eq!((backend.len(), backend.is_empty()), (1, false));
    let debug = format!("{backend:?}");
    assert!(
        debug.contains("MemoryBackend") && !debug.contains("secret"),
        "{debug}"
    );
}
