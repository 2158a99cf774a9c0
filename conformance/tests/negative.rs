//! Negative controls: deliberately broken backends that the suites must catch, so a passing
//! suite means something. Each test names the cases that must fail, and checks that the
//! rest of the suite still passes (the failures point at the bug, not at everything).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use flatmachines_conformance::{
    Capabilities, Capability, Case, LockFactory, Outcome, PersistenceFactory, SuiteReport,
    WorkFactory, suites,
};
use flatmachines_core::{
    Error, ExecutionLock, PersistenceBackend, PushOptions, Result, WorkBackend, WorkCounts,
    WorkItem, WorkPool, WorkStatus, validate_prefix,
};
use flatmachines_memory::{MemoryBackend, MemoryWorkBackend, NoOpLock};
use serde_json::Value;

/// The names of the failed cases, sorted.
fn failed(report: &SuiteReport) -> Vec<&'static str> {
    let mut names: Vec<&str> = report.failed().map(|c| c.case).collect();
    names.sort_unstable();
    names
}

/// A pool whose claim finds a pending item, yields, and only then marks it: two claimers
/// can take the same item.
#[derive(Debug, Default)]
struct RacyPool {
    items: Mutex<Vec<WorkItem>>,
}

impl RacyPool {
    fn with<T>(&self, id: &str, change: impl FnOnce(&mut WorkItem) -> T) -> Result<T> {
        let mut items = self.items.lock().unwrap();
        let item = items
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or_else(|| Error::NotFound {
                what: "work item",
                key: id.to_owned(),
            })?;
        Ok(change(item))
    }
}

#[async_trait]
impl WorkPool for RacyPool {
    async fn push(&self, data: Value, options: PushOptions) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        self.items.lock().unwrap().push(WorkItem {
            id: id.clone(),
            data,
            claimed_by: None,
            claimed_at: None,
            attempts: 0,
            max_retries: options.max_retries,
            status: WorkStatus::Pending,
            created_at: "2024-01-01T00:00:00+00:00".to_owned(),
            error: None,
            result: None,
        });
        Ok(id)
    }

    async fn claim(&self, worker_id: &str) -> Result<Option<WorkItem>> {
        let found = {
            let items = self.items.lock().unwrap();
            items
                .iter()
                .find(|i| i.status == WorkStatus::Pending)
                .map(|i| i.id.clone())
        };
        let Some(id) = found else { return Ok(None) };
        // The bug: another claimer runs between the look and the mark.
        tokio::task::yield_now().await;
        self.with(&id, |item| {
            item.status = WorkStatus::Claimed;
            item.claimed_by = Some(worker_id.to_owned());
            item.claimed_at = Some("2024-01-01T00:00:01+00:00".to_owned());
            item.attempts += 1;
            Some(item.clone())
        })
    }

    async fn complete(&self, item_id: &str, result: Option<Value>) -> Result<()> {
        self.with(item_id, |item| {
            item.status = WorkStatus::Done;
            item.result = result;
        })
    }

    async fn fail(&self, item_id: &str, error: Option<&str>) -> Result<()> {
        self.with(item_id, |item| {
            item.error = error.map(str::to_owned);
            if item.attempts < item.max_retries {
                item.status = WorkStatus::Pending;
                item.claimed_by = None;
            } else {
                item.status = WorkStatus::Poisoned;
            }
        })
    }

    async fn size(&self) -> Result<u64> {
        let items = self.items.lock().unwrap();
        Ok(items
            .iter()
            .filter(|i| i.status == WorkStatus::Pending)
            .count() as u64)
    }

    async fn counts(&self) -> Result<WorkCounts> {
        let items = self.items.lock().unwrap();
        let mut counts = WorkCounts::default();
        for item in items.iter() {
            match item.status {
                WorkStatus::Pending => counts.pending += 1,
                WorkStatus::Claimed => counts.claimed += 1,
                WorkStatus::Done => counts.done += 1,
                WorkStatus::Poisoned => counts.poisoned += 1,
            }
        }
        Ok(counts)
    }

    async fn release_by_worker(&self, worker_id: &str) -> Result<u64> {
        let mut items = self.items.lock().unwrap();
        let mut released = 0;
        for item in items.iter_mut() {
            if item.status == WorkStatus::Claimed && item.claimed_by.as_deref() == Some(worker_id) {
                item.status = WorkStatus::Pending;
                item.claimed_by = None;
                released += 1;
            }
        }
        Ok(released)
    }

    async fn get(&self, item_id: &str) -> Result<Option<WorkItem>> {
        Ok(self
            .items
            .lock()
            .unwrap()
            .iter()
            .find(|i| i.id == item_id)
            .cloned())
    }
}

#[derive(Debug, Default)]
struct RacyBackend {
    pools: Mutex<HashMap<String, Arc<RacyPool>>>,
}

impl WorkBackend for RacyBackend {
    fn pool(&self, name: &str) -> Arc<dyn WorkPool> {
        let mut pools = self.pools.lock().unwrap();
        Arc::clone(pools.entry(name.to_owned()).or_default()) as Arc<dyn WorkPool>
    }
}

#[tokio::test]
async fn a_pool_that_hands_one_item_to_two_claimers_fails_the_work_suite() {
    let factory = WorkFactory::shared_per_namespace(|| {
        Arc::new(RacyBackend::default()) as Arc<dyn WorkBackend>
    });
    let report = flatmachines_conformance::work(&factory, &Capabilities::none()).await;
    assert_eq!(
        failed(&report),
        ["concurrent_claimers_get_each_item_once"],
        "{report}"
    );
    let case = report
        .case("concurrent_claimers_get_each_item_once")
        .unwrap();
    let Outcome::Failed { message } = &case.outcome else {
        unreachable!()
    };
    assert!(
        message.contains("clause 1: ") && message.contains("claimed more than once"),
        "{message}"
    );
    assert!(!report.is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_racy_pool_is_caught_on_a_multi_threaded_runtime_too() {
    let factory = WorkFactory::shared_per_namespace(|| {
        Arc::new(RacyBackend::default()) as Arc<dyn WorkBackend>
    });
    let case = suites::work::cases()
        .iter()
        .find(|c| c.name() == "concurrent_claimers_get_each_item_once")
        .unwrap();
    let report = case.run(&factory, &Capabilities::none()).await;
    assert!(report.outcome.is_failed(), "{report:?}");
}

/// A pool whose `counts` reports poisoned items as done; everything else is the memory pool.
#[derive(Debug)]
struct PoisonBlindPool(Arc<dyn WorkPool>);

#[async_trait]
impl WorkPool for PoisonBlindPool {
    async fn push(&self, data: Value, options: PushOptions) -> Result<String> {
        self.0.push(data, options).await
    }

    async fn claim(&self, worker_id: &str) -> Result<Option<WorkItem>> {
        self.0.claim(worker_id).await
    }

    async fn complete(&self, item_id: &str, result: Option<Value>) -> Result<()> {
        self.0.complete(item_id, result).await
    }

    async fn fail(&self, item_id: &str, error: Option<&str>) -> Result<()> {
        self.0.fail(item_id, error).await
    }

    async fn size(&self) -> Result<u64> {
        self.0.size().await
    }

    async fn counts(&self) -> Result<WorkCounts> {
        let counts = self.0.counts().await?;
        Ok(WorkCounts {
            done: counts.done + counts.poisoned,
            poisoned: 0,
            ..counts
        })
    }

    async fn release_by_worker(&self, worker_id: &str) -> Result<u64> {
        self.0.release_by_worker(worker_id).await
    }

    async fn get(&self, item_id: &str) -> Result<Option<WorkItem>> {
        self.0.get(item_id).await
    }
}

#[derive(Debug, Default)]
struct PoisonBlindBackend(MemoryWorkBackend);

impl WorkBackend for PoisonBlindBackend {
    fn pool(&self, name: &str) -> Arc<dyn WorkPool> {
        Arc::new(PoisonBlindPool(self.0.pool(name)))
    }
}

#[tokio::test]
async fn a_pool_that_counts_poisoned_items_as_done_fails_the_counts_case() {
    let factory = WorkFactory::shared_per_namespace(|| {
        Arc::new(PoisonBlindBackend::default()) as Arc<dyn WorkBackend>
    });
    let report = flatmachines_conformance::work(&factory, &Capabilities::none()).await;
    assert_eq!(
        failed(&report),
        ["counts_follow_every_transition"],
        "{report}"
    );
    let text = report.to_string();
    assert!(
        text.contains("clause 9: counts after fail to poisoned"),
        "{text}"
    );
    assert!(
        report
            .case("counts_are_per_pool")
            .unwrap()
            .outcome
            .is_passed(),
        "{report}"
    );
}

/// A store whose `list` ignores its prefix and returns every key.
#[derive(Debug, Default)]
struct PrefixBlindStore(MemoryBackend);

#[async_trait]
impl PersistenceBackend for PrefixBlindStore {
    async fn save(&self, key: &str, value: Bytes) -> Result<()> {
        self.0.save(key, value).await
    }

    async fn load(&self, key: &str) -> Result<Option<Bytes>> {
        self.0.load(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.0.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        validate_prefix(prefix)?;
        self.0.list("").await
    }
}

#[tokio::test]
async fn a_store_whose_list_ignores_its_prefix_fails_the_persistence_suite() {
    let factory = PersistenceFactory::shared_per_namespace(|| {
        Arc::new(PrefixBlindStore::default()) as Arc<dyn PersistenceBackend>
    });
    let report =
        flatmachines_conformance::persistence(&factory, &Capabilities::none().large_values()).await;
    assert_eq!(
        failed(&report),
        ["list_by_prefix", "save_many_order"],
        "{report}"
    );
    let text = report.to_string();
    assert!(text.contains("FAILED   list_by_prefix\n"), "{text}");
    assert!(
        text.contains("clause 5: list(\"exec-1\") returned 1008 keys, expected"),
        "{text}"
    );
    assert!(report.case("round_trip").unwrap().outcome.is_passed());
}

/// A store whose `save_many` saves its entries last to first.
#[derive(Debug, Default)]
struct BackwardsBatches(MemoryBackend);

#[async_trait]
impl PersistenceBackend for BackwardsBatches {
    async fn save(&self, key: &str, value: Bytes) -> Result<()> {
        self.0.save(key, value).await
    }

    async fn save_many(&self, entries: &[(&str, Bytes)]) -> Result<()> {
        for (key, value) in entries.iter().rev() {
            self.0.save(key, value.clone()).await?;
        }
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<Bytes>> {
        self.0.load(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.0.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.0.list(prefix).await
    }
}

#[tokio::test]
async fn a_store_that_saves_batches_backwards_fails_the_ordering_case() {
    let factory = PersistenceFactory::shared_per_namespace(|| {
        Arc::new(BackwardsBatches::default()) as Arc<dyn PersistenceBackend>
    });
    let report = flatmachines_conformance::persistence(&factory, &Capabilities::none()).await;
    assert_eq!(failed(&report), ["save_many_order"], "{report}");
}

#[tokio::test]
async fn a_factory_that_ignores_namespaces_fails_isolation() {
    // Every open is a new, empty store: two handles of one namespace do not share data.
    let factory = PersistenceFactory::new(|_| async {
        Ok(Arc::new(MemoryBackend::new()) as Arc<dyn PersistenceBackend>)
    });
    let report = flatmachines_conformance::persistence(&factory, &Capabilities::none()).await;
    assert_eq!(failed(&report), ["namespace_isolation"], "{report}");
}

#[tokio::test]
async fn a_lock_that_claims_exclusion_it_lacks_fails_the_lock_suite() {
    let factory = LockFactory::new(|_| async { Ok(Arc::new(NoOpLock) as Arc<dyn ExecutionLock>) });
    let report = flatmachines_conformance::lock(&factory, &Capabilities::none().exclusion()).await;
    assert_eq!(
        failed(&report),
        [
            "exclusive_between_holders",
            "exclusive_under_contention",
            "release_by_non_holder_does_nothing"
        ],
        "{report}"
    );
}

#[tokio::test]
async fn without_exclusion_the_noop_lock_passes_and_its_skips_say_why() {
    let factory = LockFactory::new(|_| async { Ok(Arc::new(NoOpLock) as Arc<dyn ExecutionLock>) });
    let report = flatmachines_conformance::lock(&factory, &Capabilities::none()).await;
    assert!(report.is_success(), "{report}");
    assert_eq!(report.passed().count(), 4, "{report}");
    let skipped = report.case("exclusive_between_holders").unwrap();
    assert_eq!(
        skipped.outcome,
        Outcome::Skipped {
            missing: vec![Capability::Exclusion]
        }
    );
    let text = report.to_string();
    assert!(
        text.contains("skipped  lease_expiry                        lacks exclusion (a held lock refuses every other acquirer), lease-expiry ("),
        "{text}"
    );
    assert!(
        text.ends_with("lock: 4 passed, 0 failed, 5 skipped"),
        "{text}"
    );
}

/// A lock whose holders' leases run out `lease` after they acquire (never, for `None`); it
/// does not renew them, which the suite's short holds do not notice.
/// Per key: the holder's id and when its lease ends.
type Leases = Arc<Mutex<HashMap<String, (usize, Instant)>>>;

#[derive(Debug)]
struct LeaseLock {
    leases: Leases,
    holder: usize,
    lease: Option<Duration>,
}

#[async_trait]
impl ExecutionLock for LeaseLock {
    async fn acquire(&self, key: &str) -> Result<bool> {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap();
        if leases.get(key).is_some_and(|(_, until)| *until > now) {
            return Ok(false);
        }
        let until = now + self.lease.unwrap_or(Duration::from_secs(3600));
        leases.insert(key.to_owned(), (self.holder, until));
        Ok(true)
    }

    async fn release(&self, key: &str) -> Result<()> {
        let mut leases = self.leases.lock().unwrap();
        if leases
            .get(key)
            .is_some_and(|(holder, _)| *holder == self.holder)
        {
            leases.remove(key);
        }
        Ok(())
    }
}

fn lease_locks(lease: Option<Duration>) -> LockFactory {
    let namespaces: Mutex<HashMap<String, Leases>> = Mutex::default();
    let holders = AtomicUsize::new(0);
    LockFactory::new(move |ns| {
        let leases = Arc::clone(namespaces.lock().unwrap().entry(ns).or_default());
        let holder = holders.fetch_add(1, Ordering::SeqCst);
        async move {
            let lock = LeaseLock {
                leases,
                holder,
                lease,
            };
            Ok(Arc::new(lock) as Arc<dyn ExecutionLock>)
        }
    })
}

#[tokio::test]
async fn the_lease_case_passes_for_a_lock_whose_leases_expire() {
    let lease = Duration::from_millis(300);
    let capabilities = Capabilities::none().exclusion().lease_expiry(lease);
    let report = flatmachines_conformance::lock(&lease_locks(Some(lease)), &capabilities).await;
    assert!(report.is_success(), "{report}");
    assert!(
        report.case("lease_expiry").unwrap().outcome.is_passed(),
        "{report}"
    );
}

#[tokio::test]
async fn the_lease_case_fails_for_a_lock_whose_leases_never_expire() {
    let lease = Duration::from_millis(100);
    let capabilities = Capabilities::none().exclusion().lease_expiry(lease);
    let report = flatmachines_conformance::lock(&lease_locks(None), &capabilities).await;
    assert_eq!(failed(&report), ["lease_expiry"], "{report}");
}

/// Unique names and a summary for every case; returns how many there are.
fn check<F>(cases: &[Case<F>]) -> usize {
    let mut seen = std::collections::HashSet::new();
    for case in cases {
        assert!(seen.insert(case.name()), "duplicate case {}", case.name());
        assert!(!case.summary().is_empty(), "{} has no summary", case.name());
        assert_eq!(case.suite(), cases[0].suite());
    }
    cases.len()
}

#[test]
fn every_case_is_listed_once_per_suite_with_a_summary() {
    let counts = [
        check(suites::persistence::cases()),
        check(suites::lock::cases()),
        check(suites::results::cases()),
        check(suites::registration::cases()),
        check(suites::work::cases()),
        check(suites::machines::cases()),
    ];
    assert_eq!(counts, [13, 9, 9, 8, 12, 8]);
}
