//! Persistence cases about keys: listing by prefix, byte order, unusual and rejected keys.

use bytes::Bytes;
use flatmachines_core::Error;

use super::{E, bytes, list, load, same_bytes, save};
use crate::case::{CaseResult, Context, ensure, ensure_eq};

pub(super) async fn list_by_prefix(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    let mut all: Vec<String> = (0..1000)
        .rev()
        .map(|i| format!("exec-1/step_{i:06}_execute.json"))
        .collect();
    all.extend(
        [
            "exec-10/step_000001_execute.json",
            "exec-10/latest",
            "exec-1-sibling/latest",
            "exec-1.json",
            "exec-1x",
            "exec-2/latest",
            "a/latest",
            "z/latest",
        ]
        .map(str::to_owned),
    );
    // Saved in reverse step order, 100 at a time: creation order cannot pass for sorting.
    for chunk in all.chunks(100) {
        let entries: Vec<(&str, Bytes)> = chunk.iter().map(|k| (k.as_str(), bytes("{}"))).collect();
        store
            .save_many(&entries)
            .await
            .ctx("save_many of 100 keys")?;
    }
    all.sort();
    let prefixes = [
        "",
        "exec-1",
        "exec-1/",
        "exec-1/step_0009",
        "exec-1/step_000981_execute.json",
        "exec-1/step_0010",
        "exec-1/nothing",
        "exec-",
        "exec-10",
        "exec-10/",
        "e",
        "a/",
        "nothing",
        "nothing/",
    ];
    for prefix in prefixes {
        let expected: Vec<&String> = all.iter().filter(|k| k.starts_with(prefix)).collect();
        let listed = list(&store, prefix).await?;
        let listed: Vec<&String> = listed.iter().collect();
        if listed != expected {
            let extra = listed.iter().find(|k| !expected.contains(k));
            let lacking = expected.iter().find(|k| !listed.contains(k));
            return Err(format!(
                "clause 5: list({prefix:?}) returned {} keys, expected {}; first unexpected: {extra:?}; first missing: {lacking:?}{}",
                listed.len(),
                expected.len(),
                if extra.is_none() && lacking.is_none() {
                    " (same keys, wrong order)"
                } else {
                    ""
                }
            ));
        }
    }
    ensure_eq!(
        list(&store, "exec-1/").await?.len(),
        1000,
        "clause 5: keys under exec-1/"
    );
    Ok(())
}

pub(super) async fn list_sorts_by_bytes(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    // `p/a-b` and `p/a.b` sort before `p/a/x` ('-' < '.' < '/'), although a walk of the
    // directory `a` would list it first.
    let keys = [
        "p/é", "p/z", "p/Z", "p/a-b", "p/ä", "p/a.b", "p/a b", "p/1", "p/a/x", "p/ab", "p/~",
    ];
    for key in keys {
        save(&store, key, Bytes::new()).await?;
    }
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort_unstable();
    ensure_eq!(
        list(&store, "p/").await?,
        expected,
        "clause 5: list sorted by bytes"
    );
    Ok(())
}

pub(super) async fn unusual_keys(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    let longest = ["k", "l", "m", "n"].map(|c| c.repeat(255)).join("/");
    let wide = format!("wide/{}", "é".repeat(127));
    let keys = [
        "with space/step 1.json",
        " leading and trailing /x ",
        "ünïcødé/ключ/键",
        "dots.in.name/x.y.z",
        "x.y",
        "a./b.",
        "emoji/🦀",
        "back\\slash",
        "symbols/!#$%&'()+,;=@[]^`{}~",
        "query?/glob*[x]",
        "colon:/c:d",
        "pct/%2e%2e%2Fescape",
        "plus+and=equals/a&b",
        &wide,
        &longest,
    ];
    for (i, key) in keys.iter().enumerate() {
        save(&store, key, Bytes::from(vec![i as u8; i + 1])).await?;
    }
    for (i, key) in keys.iter().enumerate() {
        same_bytes(
            load(&store, key).await?.as_ref(),
            &vec![i as u8; i + 1],
            &format!("clause 7: key {key:?}"),
        )?;
        let listed = list(&store, key).await?;
        ensure!(
            listed.iter().any(|k| k == key),
            "clause 5: list of the whole key {key:?} as a prefix returned {listed:?}"
        );
    }
    let mut sorted: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    sorted.sort();
    ensure_eq!(
        list(&store, "").await?,
        sorted,
        "clause 7: keys listed exactly as given"
    );
    for key in keys {
        store.delete(key).await.ctx(format!("delete {key:?}"))?;
    }
    ensure_eq!(
        list(&store, "").await?,
        Vec::<String>::new(),
        "every unusual key deleted"
    );
    Ok(())
}

fn is_invalid_key<T>(result: &Result<T, Error>) -> bool {
    matches!(result, Err(Error::InvalidKey { .. }))
}

fn outcome<T: std::fmt::Debug>(result: &Result<T, Error>) -> String {
    match result {
        Ok(value) => format!("Ok({})", crate::case::short(value)),
        Err(e) => format!("Err({e:?})"),
    }
}

pub(super) async fn rejected_keys(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    save(&store, "keep/v", bytes("v")).await?;
    let long_key = "k".repeat(1025);
    let long_segment = format!("a/{}", "s".repeat(256));
    let keys = [
        "",
        "..",
        "../x",
        "keep/../x",
        "a/..",
        "/abs",
        "a//b",
        "trailing/",
        ".hidden",
        "a/.tmp",
        "keep/.v",
        "a\0b",
        "line\nbreak",
        "tab\there",
        "del\u{7f}",
        &long_key,
        &long_segment,
    ];
    for key in keys {
        ensure!(
            flatmachines_core::validate_key(key).is_err(),
            "suite bug: validate_key accepts {key:?}"
        );
        let saved = store.save(key, bytes("x")).await;
        ensure!(
            is_invalid_key(&saved),
            "clause 7: save {key:?} returned {}, expected InvalidKey",
            outcome(&saved)
        );
        let loaded = store.load(key).await;
        ensure!(
            is_invalid_key(&loaded),
            "clause 7: load {key:?} returned {}, expected InvalidKey",
            outcome(&loaded)
        );
        let deleted = store.delete(key).await;
        ensure!(
            is_invalid_key(&deleted),
            "clause 7: delete {key:?} returned {}, expected InvalidKey",
            outcome(&deleted)
        );
        let alone = store.save_many(&[(key, bytes("x"))]).await;
        ensure!(
            is_invalid_key(&alone),
            "clause 7: save_many [{key:?}] returned {}, expected InvalidKey",
            outcome(&alone)
        );
        // Whether the valid entry ahead of the bad one is saved is not specified.
        let behind = store
            .save_many(&[("keep/ok", bytes("x")), (key, bytes("x"))])
            .await;
        ensure!(
            is_invalid_key(&behind),
            "clause 7: save_many [\"keep/ok\", {key:?}] returned {}, expected InvalidKey",
            outcome(&behind)
        );
    }
    for prefix in [
        "..", "../", "/abs", "/", "a//", ".locks/", "keep/.", "a//b", "a\0", "x/../",
    ] {
        let listed = store.list(prefix).await;
        ensure!(
            is_invalid_key(&listed),
            "clause 7: list {prefix:?} returned {}, expected InvalidKey",
            outcome(&listed)
        );
    }
    let left: Vec<String> = list(&store, "")
        .await?
        .into_iter()
        .filter(|k| k != "keep/ok")
        .collect();
    ensure_eq!(left, ["keep/v"], "clause 7: rejected keys touch nothing");
    ensure_eq!(
        load(&store, "keep/v").await?,
        Some(bytes("v")),
        "clause 7: the existing value is unchanged"
    );
    Ok(())
}
