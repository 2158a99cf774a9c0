//! The [`WorkBackend`](flatmachines_core::WorkBackend)/[`WorkPool`] suite.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use flatmachines_core::{Error, PushOptions, WorkCounts, WorkPool, WorkStatus};
use serde_json::json;

use crate::WorkFactory;
use crate::case::{Case, CaseResult, Context, Env, case, ensure, ensure_eq, join};
use crate::process::{Helper, HelperTask};

const SUITE: &str = "work";

type E<'a> = Env<'a, WorkFactory>;
type Pool = Arc<dyn WorkPool>;

static CASES: &[Case<WorkFactory>] = &[
    case!(
        "push_creates_pending_items",
        "push stores a pending item with its data, no attempts and a fresh id; get of an unknown id is None (clause 7)",
        [],
        push_creates_pending_items
    ),
    case!(
        "claim_marks_the_item",
        "claim hands out a pending item marked claimed, with worker, time and one attempt; None when nothing is pending (clauses 1 and 2)",
        [],
        claim_marks_the_item
    ),
    case!(
        "concurrent_claimers_get_each_item_once",
        "16 tasks on two handles claim 800 items: each item exactly once (clause 1)",
        [],
        concurrent_claimers_get_each_item_once
    ),
    case!(
        "complete_marks_done",
        "complete marks the item done with its result, and it is never claimed again (clause 3)",
        [],
        complete_marks_done
    ),
    case!(
        "fail_retries_then_poisons",
        "fail returns the item to pending until max_retries attempts, then poisons and keeps it (clause 4)",
        [],
        fail_retries_then_poisons
    ),
    case!(
        "size_counts_pending_only",
        "size counts pending items, not claimed, done or poisoned ones (clause 5)",
        [],
        size_counts_pending_only
    ),
    case!(
        "release_by_worker",
        "release_by_worker returns exactly that worker's claimed items to pending and counts them (clause 6)",
        [],
        release_by_worker
    ),
    case!(
        "unknown_items",
        "complete and fail of an unknown item fail with NotFound; get is None (clause 7)",
        [],
        unknown_items
    ),
    case!(
        "pools_are_isolated",
        "pools of different names, or of different namespaces, share nothing; one name is one pool (clause 8)",
        [],
        pools_are_isolated
    ),
    case!(
        "counts_follow_every_transition",
        "counts after push x4, claim x3, complete, fail to poisoned, release_by_worker, and calls that change nothing; pending always equals size (clause 9)",
        [],
        counts_follow_every_transition
    ),
    case!(
        "counts_are_per_pool",
        "counts of two pools of one namespace, of another handle on the same pool, and of a pool in another namespace move independently; fail below max_retries moves claimed to pending (clauses 8 and 9)",
        [],
        counts_are_per_pool
    ),
    case!(
        "cross_process_claimers",
        "helper processes and this one claim from one pool at once (3 and 300 items unless the capabilities size the race): each item exactly once (clause 1)",
        [CrossProcess],
        cross_process_claimers
    ),
];

/// The cases of the work suite, in order.
pub fn cases() -> &'static [Case<WorkFactory>] {
    CASES
}

fn retries(max_retries: u32) -> PushOptions {
    PushOptions { max_retries }
}

async fn pool(env: &E<'_>) -> Result<Pool, String> {
    Ok(env.fresh().await?.pool("jobs"))
}

async fn push(pool: &Pool, n: u64, options: PushOptions) -> Result<String, String> {
    pool.push(json!({"n": n}), options).await.ctx("push")
}

async fn status(pool: &Pool, id: &str) -> Result<WorkStatus, String> {
    let item = pool.get(id).await.ctx(format!("get {id}"))?;
    Ok(item.ok_or_else(|| format!("item {id} vanished"))?.status)
}

async fn size(pool: &Pool) -> Result<u64, String> {
    pool.size().await.ctx("size")
}

async fn claim(pool: &Pool, worker: &str) -> Result<Option<flatmachines_core::WorkItem>, String> {
    pool.claim(worker).await.ctx(format!("claim as {worker}"))
}

async fn push_creates_pending_items(env: E<'_>) -> CaseResult {
    let pool = pool(&env).await?;
    let id = pool
        .push(json!({"payload": [1, "two"]}), retries(5))
        .await
        .ctx("push")?;
    let other = push(&pool, 2, PushOptions::default()).await?;
    ensure!(id != other, "two pushes returned the same id {id}");
    let item = pool
        .get(&id)
        .await
        .ctx("get")?
        .ok_or("a pushed item is not found")?;
    ensure_eq!(item.id, id, "the item's id");
    ensure_eq!(item.data, json!({"payload": [1, "two"]}), "the item's data");
    ensure_eq!(
        (item.status, item.attempts, item.max_retries),
        (WorkStatus::Pending, 0, 5),
        "status, attempts and max_retries after push"
    );
    ensure_eq!(
        (item.claimed_by, item.claimed_at),
        (None, None),
        "claim fields after push"
    );
    ensure_eq!(
        pool.get("no-such-item").await.ctx("get")?,
        None,
        "clause 7: get of an unknown item"
    );
    ensure_eq!(size(&pool).await?, 2, "clause 5: size after two pushes");
    Ok(())
}

async fn claim_marks_the_item(env: E<'_>) -> CaseResult {
    let pool = pool(&env).await?;
    ensure_eq!(
        claim(&pool, "w").await?,
        None,
        "clause 1: claim of an empty pool"
    );
    let id = push(&pool, 1, PushOptions::default()).await?;
    let item = claim(&pool, "worker-7")
        .await?
        .ok_or("clause 1: claim returned None with an item pending")?;
    ensure_eq!(item.id, id, "the claimed item");
    ensure_eq!(
        item.status,
        WorkStatus::Claimed,
        "clause 2: status of a claimed item"
    );
    ensure_eq!(
        item.claimed_by.as_deref(),
        Some("worker-7"),
        "clause 2: claimed_by"
    );
    ensure!(item.claimed_at.is_some(), "clause 2: claimed_at is not set");
    ensure_eq!(item.attempts, 1, "clause 2: attempts after the first claim");
    let stored = pool
        .get(&id)
        .await
        .ctx("get")?
        .ok_or("the claimed item vanished")?;
    ensure_eq!(
        (stored.status, stored.claimed_by, stored.attempts),
        (WorkStatus::Claimed, Some("worker-7".to_owned()), 1),
        "clause 2: the stored item after claim"
    );
    ensure_eq!(
        claim(&pool, "w").await?,
        None,
        "clause 1: a claimed item is not claimed again"
    );
    Ok(())
}

async fn concurrent_claimers_get_each_item_once(env: E<'_>) -> CaseResult {
    let namespace = env.namespace();
    let first = env.open(&namespace).await?.pool("jobs");
    let second = env.open(&namespace).await?.pool("jobs");
    let mut pushed = HashSet::new();
    for n in 0..800 {
        pushed.insert(push(&first, n, PushOptions::default()).await?);
    }
    let claimers: Vec<_> = (0..16)
        .map(|worker| {
            let pool = Arc::clone(if worker % 2 == 0 { &first } else { &second });
            tokio::spawn(async move {
                let name = format!("w{worker}");
                let mut claimed = Vec::new();
                while let Some(item) = claim(&pool, &name).await? {
                    ensure_eq!(
                        item.claimed_by.as_deref(),
                        Some(name.as_str()),
                        "clause 2: claimed_by"
                    );
                    claimed.push(item.id);
                    // Hands the turn to the other claimers, so claims interleave.
                    tokio::task::yield_now().await;
                }
                Ok::<_, String>(claimed)
            })
        })
        .collect();
    let mut by_item: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (worker, claimer) in claimers.into_iter().enumerate() {
        for id in join("a claimer", claimer).await?? {
            by_item.entry(id).or_default().push(worker);
        }
    }
    let twice: Vec<_> = by_item
        .iter()
        .filter(|(_, workers)| workers.len() > 1)
        .collect();
    ensure!(
        twice.is_empty(),
        "clause 1: {} items were claimed more than once, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    let claimed: HashSet<String> = by_item.into_keys().collect();
    ensure!(
        claimed == pushed,
        "clause 1: {} of {} items were claimed",
        claimed.len(),
        pushed.len()
    );
    ensure_eq!(
        size(&first).await?,
        0,
        "clause 5: size after everything was claimed"
    );
    Ok(())
}

async fn complete_marks_done(env: E<'_>) -> CaseResult {
    let pool = pool(&env).await?;
    let id = push(&pool, 1, PushOptions::default()).await?;
    claim(&pool, "w").await?.ok_or("claim returned None")?;
    pool.complete(&id, Some(json!({"answer": 42})))
        .await
        .ctx("complete")?;
    let item = pool
        .get(&id)
        .await
        .ctx("get")?
        .ok_or("clause 3: a done item must be kept")?;
    ensure_eq!(
        item.status,
        WorkStatus::Done,
        "clause 3: status after complete"
    );
    ensure_eq!(
        item.result,
        Some(json!({"answer": 42})),
        "clause 3: the stored result"
    );
    ensure_eq!(
        claim(&pool, "w").await?,
        None,
        "clause 3: a done item is claimed again"
    );
    ensure_eq!(
        size(&pool).await?,
        0,
        "clause 5: size with only a done item"
    );
    Ok(())
}

async fn fail_retries_then_poisons(env: E<'_>) -> CaseResult {
    let pool = pool(&env).await?;
    let id = push(&pool, 1, retries(3)).await?;
    for attempt in 1..=3 {
        let item = claim(&pool, "w")
            .await?
            .ok_or_else(|| format!("clause 4: the item was not claimable for attempt {attempt}"))?;
        ensure_eq!(
            (item.id.as_str(), item.attempts),
            (id.as_str(), attempt),
            "clause 2: the claim of attempt {attempt}"
        );
        pool.fail(&id, Some(&format!("boom {attempt}")))
            .await
            .ctx(format!("fail attempt {attempt}"))?;
        let expected = if attempt < 3 {
            WorkStatus::Pending
        } else {
            WorkStatus::Poisoned
        };
        ensure_eq!(
            status(&pool, &id).await?,
            expected,
            "clause 4: status after failed attempt {attempt} of 3"
        );
    }
    ensure_eq!(
        claim(&pool, "w").await?,
        None,
        "clause 4: a poisoned item is claimed again"
    );
    ensure_eq!(
        size(&pool).await?,
        0,
        "clause 5: size with only a poisoned item"
    );
    let kept = pool
        .get(&id)
        .await
        .ctx("get")?
        .ok_or("clause 4: a poisoned item must be kept")?;
    ensure_eq!(
        (kept.status, kept.attempts),
        (WorkStatus::Poisoned, 3),
        "clause 4: the kept item"
    );
    for max_retries in [0, 1] {
        let id = push(&pool, 2, retries(max_retries)).await?;
        claim(&pool, "w").await?.ok_or("claim returned None")?;
        pool.fail(&id, None).await.ctx("fail")?;
        ensure_eq!(
            status(&pool, &id).await?,
            WorkStatus::Poisoned,
            "clause 4: with max_retries {max_retries}, the first failure poisons"
        );
    }
    Ok(())
}

async fn size_counts_pending_only(env: E<'_>) -> CaseResult {
    let pool = pool(&env).await?;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(push(&pool, n, retries(1)).await?);
    }
    ensure_eq!(size(&pool).await?, 5, "clause 5: size after 5 pushes");
    let mut claimed = Vec::new();
    for _ in 0..3 {
        claimed.push(claim(&pool, "w").await?.ok_or("claim returned None")?.id);
    }
    ensure_eq!(
        size(&pool).await?,
        2,
        "clause 5: claimed items are not counted"
    );
    pool.complete(&claimed[0], None).await.ctx("complete")?;
    pool.fail(&claimed[1], None).await.ctx("fail")?;
    ensure_eq!(
        size(&pool).await?,
        2,
        "clause 5: done and poisoned items are not counted"
    );
    pool.release_by_worker("w").await.ctx("release_by_worker")?;
    ensure_eq!(
        size(&pool).await?,
        3,
        "clause 5: a released item counts again"
    );
    Ok(())
}

async fn release_by_worker(env: E<'_>) -> CaseResult {
    let pool = pool(&env).await?;
    for n in 0..6 {
        push(&pool, n, PushOptions::default()).await?;
    }
    let take = |worker: &'static str| {
        let pool = Arc::clone(&pool);
        async move {
            claim(&pool, worker)
                .await?
                .ok_or_else(|| "claim returned None".to_owned())
        }
    };
    let (a1, b1, a2, a3) = (
        take("a").await?,
        take("b").await?,
        take("a").await?,
        take("a").await?,
    );
    pool.complete(&a3.id, None).await.ctx("complete")?;
    ensure_eq!(
        pool.release_by_worker("a").await.ctx("release_by_worker")?,
        2,
        "clause 6: items released for worker a"
    );
    for id in [&a1.id, &a2.id] {
        let item = pool
            .get(id)
            .await
            .ctx("get")?
            .ok_or("a released item vanished")?;
        ensure_eq!(
            (item.status, item.claimed_by),
            (WorkStatus::Pending, None),
            "clause 6: a released item"
        );
    }
    ensure_eq!(
        status(&pool, &b1.id).await?,
        WorkStatus::Claimed,
        "clause 6: another worker's claim is untouched"
    );
    ensure_eq!(
        status(&pool, &a3.id).await?,
        WorkStatus::Done,
        "clause 6: a done item is untouched"
    );
    ensure_eq!(size(&pool).await?, 4, "clause 5: size after the release");
    ensure_eq!(
        pool.release_by_worker("a").await.ctx("release_by_worker")?,
        0,
        "clause 6: a second release"
    );
    ensure_eq!(
        pool.release_by_worker("nobody")
            .await
            .ctx("release_by_worker")?,
        0,
        "clause 6: a worker holding nothing"
    );
    let mut reclaimed = HashSet::new();
    while let Some(item) = claim(&pool, "c").await? {
        reclaimed.insert(item.id);
    }
    ensure!(
        reclaimed.contains(&a1.id) && reclaimed.contains(&a2.id),
        "clause 6: released items are claimable again"
    );
    ensure_eq!(reclaimed.len(), 4, "claimable items after the release");
    Ok(())
}

async fn unknown_items(env: E<'_>) -> CaseResult {
    let pool = pool(&env).await?;
    push(&pool, 1, PushOptions::default()).await?;
    let completed = pool.complete("no-such-item", None).await;
    ensure!(
        matches!(completed, Err(Error::NotFound { .. })),
        "clause 7: complete of an unknown item returned {completed:?}, expected NotFound"
    );
    let failed = pool.fail("no-such-item", Some("e")).await;
    ensure!(
        matches!(failed, Err(Error::NotFound { .. })),
        "clause 7: fail of an unknown item returned {failed:?}, expected NotFound"
    );
    ensure_eq!(
        pool.get("no-such-item").await.ctx("get")?,
        None,
        "clause 7: get of an unknown item"
    );
    ensure_eq!(size(&pool).await?, 1, "unknown ids change nothing");
    Ok(())
}

async fn pools_are_isolated(env: E<'_>) -> CaseResult {
    let namespace = env.namespace();
    let backend = env.open(&namespace).await?;
    let (a, b) = (backend.pool("a"), backend.pool("b"));
    let id = push(&a, 1, PushOptions::default()).await?;
    ensure_eq!(
        (size(&a).await?, size(&b).await?),
        (1, 0),
        "clause 8: sizes of pools a and b"
    );
    ensure_eq!(
        b.get(&id).await.ctx("get")?,
        None,
        "clause 8: pool b sees pool a's item"
    );
    ensure_eq!(
        claim(&b, "w").await?,
        None,
        "clause 8: pool b hands out pool a's item"
    );
    let completed = b.complete(&id, None).await;
    ensure!(
        matches!(completed, Err(Error::NotFound { .. })),
        "clause 8: complete in pool b of pool a's item returned {completed:?}, expected NotFound"
    );
    let same_name = env.open(&namespace).await?.pool("a");
    ensure!(
        same_name.get(&id).await.ctx("get")?.is_some(),
        "clause 8: pool `a` opened through another handle of the namespace lacks the item"
    );
    let elsewhere = env.fresh().await?.pool("a");
    ensure_eq!(
        size(&elsewhere).await?,
        0,
        "a pool of the same name in another namespace has items"
    );
    ensure!(claim(&a, "w").await?.is_some(), "pool a lost its item");
    Ok(())
}

/// `pending, claimed, done, poisoned`.
fn counts(pending: u64, claimed: u64, done: u64, poisoned: u64) -> WorkCounts {
    WorkCounts {
        pending,
        claimed,
        done,
        poisoned,
    }
}

/// Fails unless `pool`'s counts are `expected` and its size is their `pending`.
async fn expect_counts(pool: &Pool, expected: WorkCounts, after: &str) -> CaseResult {
    let got = pool.counts().await.ctx(format!("counts after {after}"))?;
    ensure_eq!(got, expected, "clause 9: counts after {after}");
    ensure_eq!(
        size(pool).await?,
        got.pending,
        "clause 9: size, against counts().pending, after {after}"
    );
    Ok(())
}

async fn counts_follow_every_transition(env: E<'_>) -> CaseResult {
    let pool = pool(&env).await?;
    expect_counts(&pool, counts(0, 0, 0, 0), "nothing").await?;
    for n in 0..4 {
        push(&pool, n, retries(1)).await?;
        expect_counts(&pool, counts(n + 1, 0, 0, 0), "a push").await?;
    }
    let mut held = Vec::new();
    for (n, worker) in ["a", "a", "b"].into_iter().enumerate() {
        let item = claim(&pool, worker).await?.ok_or("claim returned None")?;
        held.push(item.id);
        let n = n as u64 + 1;
        expect_counts(&pool, counts(4 - n, n, 0, 0), &format!("claim {n}")).await?;
    }
    pool.complete(&held[0], Some(json!("ok")))
        .await
        .ctx("complete")?;
    expect_counts(&pool, counts(1, 2, 1, 0), "complete").await?;
    pool.fail(&held[2], Some("boom")).await.ctx("fail")?;
    ensure_eq!(
        status(&pool, &held[2]).await?,
        WorkStatus::Poisoned,
        "clause 4: max_retries 1, after one failed attempt"
    );
    expect_counts(&pool, counts(1, 1, 1, 1), "fail to poisoned").await?;
    ensure_eq!(
        pool.release_by_worker("a").await.ctx("release_by_worker")?,
        1,
        "clause 6: items released for worker a"
    );
    expect_counts(&pool, counts(2, 0, 1, 1), "release_by_worker").await?;
    // Calls that change nothing move no count.
    let unknown = pool.complete("no-such-item", None).await;
    ensure!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "clause 7: complete of an unknown item returned {unknown:?}, expected NotFound"
    );
    let unknown = pool.fail("no-such-item", None).await;
    ensure!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "clause 7: fail of an unknown item returned {unknown:?}, expected NotFound"
    );
    ensure_eq!(
        pool.release_by_worker("a").await.ctx("release_by_worker")?,
        0,
        "clause 6: a second release"
    );
    expect_counts(&pool, counts(2, 0, 1, 1), "calls that change nothing").await?;
    while claim(&pool, "c").await?.is_some() {}
    let drained = pool.counts().await.ctx("counts")?;
    ensure_eq!(
        drained,
        counts(0, 2, 1, 1),
        "clause 9: counts once every pending item is claimed"
    );
    ensure_eq!(
        drained.total(),
        4,
        "clause 9: every pushed item is counted once"
    );
    claim(&pool, "c").await?;
    expect_counts(&pool, drained, "a claim of an empty pool").await
}

async fn counts_are_per_pool(env: E<'_>) -> CaseResult {
    let namespace = env.namespace();
    let backend = env.open(&namespace).await?;
    let (a, b) = (backend.pool("a"), backend.pool("b"));
    for n in 0..2 {
        push(&a, n, PushOptions::default()).await?;
    }
    let id = push(&b, 9, retries(2)).await?;
    expect_counts(&a, counts(2, 0, 0, 0), "two pushes to pool a").await?;
    expect_counts(&b, counts(1, 0, 0, 0), "one push to pool b").await?;
    let item = claim(&b, "w")
        .await?
        .ok_or("claim from pool b returned None")?;
    ensure_eq!(item.id, id, "the item claimed from pool b");
    expect_counts(&b, counts(0, 1, 0, 0), "a claim from pool b").await?;
    expect_counts(&a, counts(2, 0, 0, 0), "a claim from pool b, in pool a").await?;
    b.fail(&id, None).await.ctx("fail")?;
    expect_counts(&b, counts(1, 0, 0, 0), "fail of attempt 1 of 2").await?;
    let first = claim(&a, "w")
        .await?
        .ok_or("claim from pool a returned None")?;
    a.complete(&first.id, None).await.ctx("complete")?;
    expect_counts(&a, counts(1, 0, 1, 0), "claim and complete in pool a").await?;
    expect_counts(
        &b,
        counts(1, 0, 0, 0),
        "claim and complete in pool a, in pool b",
    )
    .await?;
    let same = env.open(&namespace).await?.pool("a");
    expect_counts(
        &same,
        counts(1, 0, 1, 0),
        "everything so far, through another handle on pool a",
    )
    .await?;
    let elsewhere = env.fresh().await?.pool("a");
    expect_counts(
        &elsewhere,
        WorkCounts::default(),
        "everything so far, in a pool `a` of another namespace",
    )
    .await
}

async fn cross_process_claimers(env: E<'_>) -> CaseResult {
    let (processes, items) = env.caps.claim_race_size();
    let launcher = env.caps.launcher().ok_or("no process launcher")?;
    let namespace = env.namespace();
    let pool = env.open(&namespace).await?.pool("shared");
    let mut pushed = HashSet::new();
    for n in 0..items as u64 {
        pushed.insert(push(&pool, n, PushOptions::default()).await?);
    }
    let mut helpers = Vec::new();
    for p in 0..processes {
        let task = HelperTask::ClaimAll {
            namespace: namespace.clone(),
            pool: "shared".into(),
            worker: format!("process-{p}"),
        };
        let mut helper = Helper::spawn(launcher, &task)?;
        helper.expect("READY").await?;
        helpers.push(helper);
    }
    for helper in &mut helpers {
        helper.send("GO")?;
    }
    let mut by_item: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some(item) = claim(&pool, "this-process").await? {
        by_item
            .entry(item.id.clone())
            .or_default()
            .push("this-process".into());
        pool.complete(&item.id, None).await.ctx("complete")?;
        tokio::task::yield_now().await;
    }
    for (p, helper) in helpers.iter_mut().enumerate() {
        loop {
            match helper.next().await? {
                (event, id) if event == "CLAIMED" => {
                    by_item.entry(id).or_default().push(format!("process-{p}"))
                }
                (event, _) if event == "DONE" => break,
                (event, payload) => return Err(format!("process {p} said `{event} {payload}`")),
            }
        }
    }
    let twice: Vec<_> = by_item
        .iter()
        .filter(|(_, claimers)| claimers.len() > 1)
        .collect();
    ensure!(
        twice.is_empty(),
        "clause 1: {} items were claimed more than once, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    let claimed: HashSet<String> = by_item.into_keys().collect();
    ensure!(
        claimed == pushed,
        "clause 1: {} of {} items were claimed",
        claimed.len(),
        pushed.len()
    );
    Ok(())
}
