//! The [`ExecutionLock`] suite.
//!
//! Every case opens its lock objects from one namespace: each open is a separate holder
//! contending for the same keys. Keys are plain execution-id-like names without `/`, which
//! file-based locks keep flat in one directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flatmachines_core::ExecutionLock;

use crate::LockFactory;
use crate::case::{Case, CaseResult, Context, Env, bounded, case, ensure, ensure_eq, join};
use crate::process::{Helper, HelperTask};

const SUITE: &str = "lock";

type E<'a> = Env<'a, LockFactory>;
type Lock = Arc<dyn ExecutionLock>;

/// How long an acquire may take: it must answer at once rather than wait for the holder.
const PROMPT: Duration = Duration::from_secs(5);

static CASES: &[Case<LockFactory>] = &[
    case!(
        "acquire_answers_at_once",
        "acquire returns at once, true for a free key, while another holder has it too (clause 1)",
        [],
        acquire_answers_at_once
    ),
    case!(
        "release_of_unheld_key_succeeds",
        "release of a key never acquired, or already released, succeeds (clause 3)",
        [],
        release_of_unheld_key_succeeds
    ),
    case!(
        "reacquire_after_release",
        "a released key can be acquired again, by the same or another holder (clause 4)",
        [],
        reacquire_after_release
    ),
    case!(
        "exclusive_between_holders",
        "while one holder has a key, another's acquire is refused; other keys stay free (clause 2)",
        [Exclusion],
        exclusive_between_holders
    ),
    case!(
        "exclusive_under_contention",
        "of 8 holders racing for a key, exactly one wins, key after key (clause 2)",
        [Exclusion],
        exclusive_under_contention
    ),
    case!(
        "release_by_non_holder_does_nothing",
        "a release by someone who does not hold the key leaves the holder holding it (clause 3)",
        [Exclusion],
        release_by_non_holder_does_nothing
    ),
    case!(
        "cross_process_exclusion",
        "a holder in another process excludes this one and the other way round, until released (clause 2)",
        [Exclusion, CrossProcess],
        cross_process_exclusion
    ),
    case!(
        "ensure_held_confirms_a_held_key",
        "ensure_held answers Ok at once for a key the caller holds, also after others tried it (clause 6)",
        [],
        ensure_held_confirms_a_held_key
    ),
    case!(
        "lease_expiry",
        "a holder that goes away without releasing loses the key within its lease (clause 5)",
        [Exclusion, LeaseExpiry],
        lease_expiry
    ),
];

/// The cases of the lock suite, in order.
pub fn cases() -> &'static [Case<LockFactory>] {
    CASES
}

async fn acquire(lock: &Lock, key: &str) -> Result<bool, String> {
    bounded(
        format!("clause 1: acquire {key:?}"),
        PROMPT,
        lock.acquire(key),
    )
    .await?
    .ctx(format!("acquire {key:?}"))
}

async fn release(lock: &Lock, key: &str) -> CaseResult {
    bounded(format!("release {key:?}"), PROMPT, lock.release(key))
        .await?
        .ctx(format!("release {key:?}"))
}

/// Two holders on one fresh namespace.
async fn pair(env: &E<'_>) -> Result<(Lock, Lock), String> {
    let namespace = env.namespace();
    Ok((env.open(&namespace).await?, env.open(&namespace).await?))
}

async fn acquire_answers_at_once(env: E<'_>) -> CaseResult {
    let (first, second) = pair(&env).await?;
    ensure!(
        acquire(&first, "exec-1").await?,
        "clause 1: acquire of a free key returned false"
    );
    // Only the answer's promptness is checked here: a lock without exclusion may say true.
    acquire(&second, "exec-1").await?;
    release(&first, "exec-1").await?;
    release(&second, "exec-1").await
}

async fn release_of_unheld_key_succeeds(env: E<'_>) -> CaseResult {
    let (first, second) = pair(&env).await?;
    release(&first, "never-acquired").await?;
    ensure!(
        acquire(&first, "exec-1").await?,
        "acquire of a free key returned false"
    );
    release(&first, "exec-1").await?;
    release(&first, "exec-1")
        .await
        .map_err(|e| format!("clause 3: a second release: {e}"))?;
    release(&second, "exec-1")
        .await
        .map_err(|e| format!("clause 3: release by another holder: {e}"))
}

async fn reacquire_after_release(env: E<'_>) -> CaseResult {
    let (first, second) = pair(&env).await?;
    for round in 0..10 {
        let (holder, other) = if round % 2 == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        ensure!(
            acquire(holder, "exec-1").await?,
            "clause 4: acquire after release returned false (round {round})"
        );
        release(holder, "exec-1").await?;
        ensure!(
            acquire(other, "exec-1").await?,
            "clause 4: another holder's acquire after release returned false (round {round})"
        );
        release(other, "exec-1").await?;
    }
    Ok(())
}

async fn ensure_held_confirms_a_held_key(env: E<'_>) -> CaseResult {
    let (first, second) = pair(&env).await?;
    ensure!(
        acquire(&first, "exec-1").await?,
        "acquire of a free key returned false"
    );
    first
        .ensure_held("exec-1")
        .map_err(|e| format!("clause 6: ensure_held right after acquire: {e}"))?;
    // A refused (or, without exclusion, granted) attempt by another holder takes nothing away.
    acquire(&second, "exec-1").await?;
    first
        .ensure_held("exec-1")
        .map_err(|e| format!("clause 6: ensure_held after another holder's acquire: {e}"))?;
    release(&first, "exec-1").await?;
    release(&second, "exec-1").await
}

async fn exclusive_between_holders(env: E<'_>) -> CaseResult {
    let (first, second) = pair(&env).await?;
    ensure!(
        acquire(&first, "exec-1").await?,
        "acquire of a free key returned false"
    );
    ensure!(
        !acquire(&second, "exec-1").await?,
        "clause 2: a second holder acquired a held key"
    );
    ensure!(
        acquire(&second, "exec-2").await?,
        "clause 2: another key is free, but its acquire returned false"
    );
    ensure!(
        !acquire(&first, "exec-2").await?,
        "clause 2: the first holder acquired the second's key"
    );
    ensure!(
        !acquire(&second, "exec-1").await?,
        "clause 2: asking again got a held key"
    );
    release(&first, "exec-1").await?;
    ensure!(
        acquire(&second, "exec-1").await?,
        "clause 4: the key was released, but acquire returned false"
    );
    release(&second, "exec-1").await?;
    release(&second, "exec-2").await
}

async fn exclusive_under_contention(env: E<'_>) -> CaseResult {
    let namespace = env.namespace();
    let mut holders = Vec::new();
    for _ in 0..8 {
        holders.push(env.open(&namespace).await?);
    }
    for round in 0..5 {
        let key = format!("contended-{round}");
        let racers: Vec<_> = holders
            .iter()
            .map(|lock| {
                let (lock, key) = (Arc::clone(lock), key.clone());
                tokio::spawn(async move { acquire(&lock, &key).await })
            })
            .collect();
        let mut winners = Vec::new();
        for (index, racer) in racers.into_iter().enumerate() {
            if join("an acquiring task", racer).await?? {
                winners.push(index);
            }
        }
        ensure_eq!(
            winners.len(),
            1,
            "clause 2: holders that acquired {key:?} at once (winners: {winners:?})"
        );
        for lock in &holders {
            release(lock, &key).await?;
        }
    }
    Ok(())
}

async fn release_by_non_holder_does_nothing(env: E<'_>) -> CaseResult {
    let namespace = env.namespace();
    let holder = env.open(&namespace).await?;
    let other = env.open(&namespace).await?;
    let third = env.open(&namespace).await?;
    ensure!(
        acquire(&holder, "exec-1").await?,
        "acquire of a free key returned false"
    );
    release(&other, "exec-1")
        .await
        .map_err(|e| format!("clause 3: release by a non-holder: {e}"))?;
    ensure!(
        !acquire(&other, "exec-1").await?,
        "clause 3: a non-holder's release freed the key for it"
    );
    ensure!(
        !acquire(&third, "exec-1").await?,
        "clause 3: a non-holder's release freed the key for a third holder"
    );
    release(&holder, "exec-1").await?;
    ensure!(
        acquire(&third, "exec-1").await?,
        "clause 4: the holder released, but acquire returned false"
    );
    release(&third, "exec-1").await
}

async fn cross_process_exclusion(env: E<'_>) -> CaseResult {
    let launcher = env.caps.launcher().ok_or("no process launcher")?;
    let namespace = env.namespace();
    let lock = env.open(&namespace).await?;
    let hold = |key: &str| HelperTask::HoldLock {
        namespace: namespace.clone(),
        key: key.to_owned(),
    };

    // The other process holds: this one is refused until it lets go.
    let mut holder = Helper::spawn(launcher, &hold("exec-cross-1"))?;
    holder.expect("LOCKED").await?;
    ensure!(
        !acquire(&lock, "exec-cross-1").await?,
        "clause 2: acquired a key another process holds"
    );
    holder.close_stdin();
    holder.expect("DONE").await?;
    ensure!(
        acquire(&lock, "exec-cross-1").await?,
        "clause 4: the other process released, but acquire returned false"
    );

    // This process holds: the other one is refused.
    let mut refused = Helper::spawn(launcher, &hold("exec-cross-1"))?;
    refused
        .expect("REFUSED")
        .await
        .map_err(|e| format!("clause 2: the other process was not refused a held key: {e}"))?;
    refused.expect("DONE").await?;
    release(&lock, "exec-cross-1").await?;
    let mut after = Helper::spawn(launcher, &hold("exec-cross-1"))?;
    after.expect("LOCKED").await.map_err(|e| {
        format!("clause 4: the other process could not acquire a released key: {e}")
    })?;
    after.close_stdin();
    after.expect("DONE").await?;
    Ok(())
}

async fn lease_expiry(env: E<'_>) -> CaseResult {
    let lease = env.caps.lease().ok_or("no lease declared")?;
    let (holder, other) = pair(&env).await?;
    ensure!(
        acquire(&holder, "exec-lease").await?,
        "acquire of a free key returned false"
    );
    ensure!(
        !acquire(&other, "exec-lease").await?,
        "clause 2: a second holder acquired a held key"
    );
    // The holder goes away without releasing, as a crashed runner would.
    drop(holder);
    let started = Instant::now();
    let limit = lease * 3 + Duration::from_secs(5);
    while !acquire(&other, "exec-lease").await? {
        ensure!(
            started.elapsed() < limit,
            "clause 5: the key was still held {:?} after its holder went away (lease {lease:?})",
            started.elapsed()
        );
        tokio::time::sleep(lease / 10 + Duration::from_millis(10)).await;
    }
    release(&other, "exec-lease").await
}
