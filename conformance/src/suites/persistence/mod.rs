//! The [`PersistenceBackend`] suite: one case per contract clause, and then some.
//!
//! The cases on keys and listing live in `keys.rs`, those that race or use a second process
//! in `concurrent.rs`.

mod concurrent;
mod keys;

use std::sync::Arc;

use bytes::Bytes;
use flatmachines_core::PersistenceBackend;

use crate::PersistenceFactory;
use crate::case::{Case, CaseResult, Context, Env, case, ensure_eq};

const SUITE: &str = "persistence";

type E<'a> = Env<'a, PersistenceFactory>;
type Store = Arc<dyn PersistenceBackend>;

static CASES: &[Case<PersistenceFactory>] = &[
    case!(
        "round_trip",
        "a saved value loads back; a key never saved loads as None (clause 3)",
        [],
        round_trip
    ),
    case!(
        "overwrite",
        "save replaces the value, longer or shorter, and keeps one key (clause 2)",
        [],
        overwrite
    ),
    case!(
        "delete_missing_key",
        "delete of a missing or already deleted key succeeds (clause 4)",
        [],
        delete_missing_key
    ),
    case!(
        "list_by_prefix",
        "list returns exactly the keys with the prefix, sorted, over 1000+ keys and prefixes that cut inside a segment (clause 5)",
        [],
        keys::list_by_prefix
    ),
    case!(
        "list_sorts_by_bytes",
        "list sorts by UTF-8 byte order, not by path segment or locale (clause 5)",
        [],
        keys::list_sorts_by_bytes
    ),
    case!(
        "binary_values",
        "all 256 byte values, invalid UTF-8 and the empty value come back unchanged (clause 6)",
        [],
        binary_values
    ),
    case!(
        "large_values",
        "a value over 5 MB round-trips and can be replaced by a small one (clause 6)",
        [LargeValues],
        large_values
    ),
    case!(
        "unusual_keys",
        "legal keys with spaces, unicode, dots, symbols and maximum lengths are stored as given (clause 7)",
        [],
        keys::unusual_keys
    ),
    case!(
        "rejected_keys",
        "keys and prefixes validate_key refuses fail with InvalidKey in every method and change nothing (clause 7)",
        [],
        keys::rejected_keys
    ),
    case!(
        "save_many_order",
        "save_many saves in order: later duplicates win, and a reader never sees an entry before the ones ahead of it (clause 8)",
        [],
        concurrent::save_many_order
    ),
    case!(
        "namespace_isolation",
        "two namespaces share nothing; two handles on one namespace share everything (factory contract)",
        [],
        namespace_isolation
    ),
    case!(
        "atomic_overwrite",
        "concurrent loads see the old or the new value, never a mix (clause 1)",
        [],
        concurrent::atomic_overwrite
    ),
    case!(
        "cross_process_visibility",
        "another process sees this one's saves and this one sees its saves",
        [CrossProcess],
        concurrent::cross_process_visibility
    ),
];

/// The cases of the persistence suite, in order.
pub fn cases() -> &'static [Case<PersistenceFactory>] {
    CASES
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn save(store: &Store, key: &str, value: Bytes) -> CaseResult {
    store.save(key, value).await.ctx(format!("save {key:?}"))
}

async fn load(store: &Store, key: &str) -> Result<Option<Bytes>, String> {
    store.load(key).await.ctx(format!("load {key:?}"))
}

async fn list(store: &Store, prefix: &str) -> Result<Vec<String>, String> {
    store.list(prefix).await.ctx(format!("list {prefix:?}"))
}

/// Compares loaded bytes with the expected ones without printing megabytes.
fn same_bytes(got: Option<&Bytes>, expected: &[u8], what: &str) -> CaseResult {
    let Some(got) = got else {
        return Err(format!(
            "{what}: loaded None, expected {} bytes",
            expected.len()
        ));
    };
    if got.as_ref() == expected {
        return Ok(());
    }
    let first = got.iter().zip(expected).position(|(a, b)| a != b);
    Err(format!(
        "{what}: loaded {} bytes, expected {} bytes; first difference at byte {}",
        got.len(),
        expected.len(),
        first.map_or_else(|| "end of the shorter".to_owned(), |i| i.to_string())
    ))
}

async fn round_trip(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    ensure_eq!(
        load(&store, "exec/latest").await?,
        None,
        "clause 3: load of a key never saved"
    );
    save(&store, "exec/latest", bytes("one")).await?;
    ensure_eq!(
        load(&store, "exec/latest").await?,
        Some(bytes("one")),
        "load after save"
    );
    ensure_eq!(
        load(&store, "exec/other").await?,
        None,
        "clause 3: a sibling never saved"
    );
    ensure_eq!(
        list(&store, "").await?,
        ["exec/latest"],
        "list after one save"
    );
    Ok(())
}

async fn overwrite(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    for value in ["one", "two, longer than one", "3"] {
        save(&store, "exec/latest", bytes(value)).await?;
        ensure_eq!(
            load(&store, "exec/latest").await?,
            Some(bytes(value)),
            "clause 2: load after overwriting with {value:?}"
        );
    }
    ensure_eq!(
        list(&store, "").await?,
        ["exec/latest"],
        "clause 2: an overwrite keeps one key"
    );
    Ok(())
}

async fn delete_missing_key(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    for key in ["missing", "no-dir/latest", "exec/missing"] {
        store
            .delete(key)
            .await
            .ctx(format!("clause 4: delete of the missing key {key:?}"))?;
    }
    save(&store, "exec/latest", bytes("x")).await?;
    save(&store, "exec/keep", bytes("k")).await?;
    store
        .delete("exec/latest")
        .await
        .ctx("delete of a saved key")?;
    ensure_eq!(
        load(&store, "exec/latest").await?,
        None,
        "clause 3: load after delete"
    );
    store
        .delete("exec/latest")
        .await
        .ctx("clause 4: a second delete of the same key")?;
    ensure_eq!(
        list(&store, "").await?,
        ["exec/keep"],
        "delete removes only its key"
    );
    Ok(())
}

async fn binary_values(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    let every_byte: Vec<u8> = (0..=255).collect();
    let mut reversed = every_byte.clone();
    reversed.reverse();
    let values: [(&str, Vec<u8>); 4] = [
        ("bin/all", every_byte),
        ("bin/reversed", reversed),
        (
            "bin/not-utf8",
            vec![0xff, 0xfe, 0x00, 0xc3, 0x28, 0x0d, 0x0a],
        ),
        ("bin/empty", Vec::new()),
    ];
    for (key, value) in &values {
        save(&store, key, Bytes::copy_from_slice(value)).await?;
    }
    for (key, value) in &values {
        same_bytes(
            load(&store, key).await?.as_ref(),
            value,
            &format!("clause 6: {key}"),
        )?;
    }
    Ok(())
}

async fn large_values(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    let big: Vec<u8> = (0..5 * 1024 * 1024 + 7)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    save(&store, "exec/big", Bytes::from(big.clone())).await?;
    same_bytes(
        load(&store, "exec/big").await?.as_ref(),
        &big,
        "clause 6: a 5 MB value",
    )?;
    save(&store, "exec/big", bytes("small")).await?;
    same_bytes(
        load(&store, "exec/big").await?.as_ref(),
        b"small",
        "clause 2: a 5 MB value replaced by 5 bytes",
    )?;
    Ok(())
}

async fn namespace_isolation(env: E<'_>) -> CaseResult {
    let (ns_a, ns_b) = (env.namespace(), env.namespace());
    let a = env.open(&ns_a).await?;
    let a_again = env.open(&ns_a).await?;
    let b = env.open(&ns_b).await?;
    save(&a, "shared/k", bytes("from a")).await?;
    ensure_eq!(
        load(&a_again, "shared/k").await?,
        Some(bytes("from a")),
        "a second handle on the same namespace sees the save"
    );
    ensure_eq!(
        load(&b, "shared/k").await?,
        None,
        "another namespace does not see the save"
    );
    ensure_eq!(
        list(&b, "").await?,
        Vec::<String>::new(),
        "another namespace lists nothing"
    );
    save(&b, "shared/k", bytes("from b")).await?;
    ensure_eq!(
        load(&a, "shared/k").await?,
        Some(bytes("from a")),
        "a save in another namespace changes nothing here"
    );
    b.delete("shared/k")
        .await
        .ctx("delete in the other namespace")?;
    ensure_eq!(
        load(&a, "shared/k").await?,
        Some(bytes("from a")),
        "a delete in another namespace changes nothing here"
    );
    ensure_eq!(
        list(&a_again, "").await?,
        ["shared/k"],
        "the shared namespace lists its key"
    );
    Ok(())
}
