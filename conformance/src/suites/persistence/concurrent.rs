//! Persistence cases that race (ordered batches, atomic overwrites) or use a second process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::{E, bytes, list, load, same_bytes, save};
use crate::case::{CaseResult, Context, bounded, ensure, ensure_eq, join};
use crate::process::{Helper, HelperTask, helper_value, hex};

pub(super) async fn save_many_order(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    store.save_many(&[]).await.ctx("save_many of nothing")?;
    let pointer = bytes("exec/step_000001_execute.json");
    store
        .save_many(&[
            ("exec/step_000001_execute.json", bytes("{\"step\":1}")),
            ("exec/latest", pointer.clone()),
        ])
        .await
        .ctx("save_many of a snapshot and its pointer")?;
    ensure_eq!(
        load(&store, "exec/latest").await?,
        Some(pointer),
        "clause 8: the pointer"
    );
    ensure_eq!(
        load(&store, "exec/step_000001_execute.json").await?,
        Some(bytes("{\"step\":1}")),
        "clause 8: the snapshot"
    );
    store
        .save_many(&[("dup/k", bytes("first")), ("dup/k", bytes("second"))])
        .await
        .ctx("save_many of one key twice")?;
    ensure_eq!(
        load(&store, "dup/k").await?,
        Some(bytes("second")),
        "clause 8: entries saved in order, the later one wins"
    );

    // A writer saves rounds of 20 new keys while a reader loads each round's keys from last
    // to first: once a later entry is seen, every earlier one must be there.
    const ROUNDS: usize = 12;
    const ENTRIES: usize = 20;
    let key = |round: usize, entry: usize| format!("order/r{round:02}/e{entry:02}");
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        tokio::spawn(async move {
            for round in 0..ROUNDS {
                let keys: Vec<String> = (0..ENTRIES).map(|e| key(round, e)).collect();
                let entries: Vec<(&str, Bytes)> = keys
                    .iter()
                    .map(|k| (k.as_str(), Bytes::from(k.clone())))
                    .collect();
                let saved = store.save_many(&entries).await;
                if saved.is_err() {
                    done.store(true, Ordering::SeqCst);
                    return saved.ctx(format!("save_many of round {round}"));
                }
                tokio::task::yield_now().await;
            }
            done.store(true, Ordering::SeqCst);
            Ok(())
        })
    };
    let mut passes = 0_u32;
    while !done.load(Ordering::SeqCst) || passes == 0 {
        passes += 1;
        for round in 0..ROUNDS {
            let mut seen_later: Option<usize> = None;
            for entry in (0..ENTRIES).rev() {
                let value = load(&store, &key(round, entry)).await?;
                match (&value, seen_later) {
                    (Some(v), _) => {
                        ensure_eq!(
                            v.as_ref(),
                            key(round, entry).as_bytes(),
                            "clause 8: entry {}",
                            key(round, entry)
                        );
                        seen_later.get_or_insert(entry);
                    }
                    (None, Some(later)) => {
                        return Err(format!(
                            "clause 8: {} was visible before {}, which comes ahead of it in the same save_many",
                            key(round, later),
                            key(round, entry)
                        ));
                    }
                    (None, None) => {}
                }
            }
        }
        tokio::task::yield_now().await;
    }
    join("the save_many writer", writer).await??;
    ensure_eq!(
        list(&store, "order/").await?.len(),
        ROUNDS * ENTRIES,
        "every entry of every round saved"
    );
    Ok(())
}

pub(super) async fn atomic_overwrite(env: E<'_>) -> CaseResult {
    let store = env.fresh().await?;
    let a = Bytes::from(vec![b'a'; 64 * 1024]);
    let b = Bytes::from(vec![b'b'; 96 * 1024]);
    save(&store, "exec/latest", a.clone()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut loads = 0_u32;
                while !stop.load(Ordering::SeqCst) || loads == 0 {
                    let value = load(&store, "exec/latest")
                        .await?
                        .ok_or("the key vanished during overwrites")?;
                    let whole_a = value.len() == 64 * 1024 && value.iter().all(|&x| x == b'a');
                    let whole_b = value.len() == 96 * 1024 && value.iter().all(|&x| x == b'b');
                    ensure!(
                        whole_a || whole_b,
                        "clause 1: a load saw a mix of two values ({} bytes)",
                        value.len()
                    );
                    loads += 1;
                    tokio::task::yield_now().await;
                }
                Ok(())
            })
        })
        .collect();
    let mut written = Ok(());
    for round in 0..100 {
        let value = if round % 2 == 0 { &b } else { &a };
        written = save(&store, "exec/latest", value.clone()).await;
        if written.is_err() {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        join("a reader", reader).await??;
    }
    written
}

pub(super) async fn cross_process_visibility(env: E<'_>) -> CaseResult {
    let launcher = env.caps.launcher().ok_or("no process launcher")?;
    let namespace = env.namespace();
    let store = env.open(&namespace).await?;
    let mine = Bytes::from(helper_value("parent/k"));
    save(&store, "parent/k", mine.clone()).await?;
    let task = HelperTask::Persist {
        namespace,
        read: "parent/k".into(),
        write: "child/k".into(),
    };
    let mut helper = Helper::spawn(launcher, &task)?;
    let loaded = helper.expect("LOADED").await?;
    ensure_eq!(
        loaded,
        hex(&mine),
        "the other process loaded this process's value"
    );
    helper.expect("DONE").await?;
    let theirs = bounded("load", Duration::from_secs(10), load(&store, "child/k")).await??;
    same_bytes(
        theirs.as_ref(),
        &helper_value("child/k"),
        "this process loads the other's save",
    )?;
    ensure_eq!(
        list(&store, "").await?,
        ["child/k", "parent/k"],
        "both saves listed"
    );
    Ok(())
}
