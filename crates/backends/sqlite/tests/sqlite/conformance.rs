//! The shared conformance suites, every case, cross-process ones included: namespace `ns` is
//! the database file `{root}/{ns}.sqlite`, and every open is a handle of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flatmachines_conformance::process::{
    HelperBackends, HelperTask, ProcessLauncher, serve_helper,
};
use flatmachines_conformance::{
    Capabilities, LockFactory, PersistenceFactory, RegistrationFactory, ResultFactory, SuiteReport,
    WorkFactory,
};
use flatmachines_core::{
    ExecutionLock, PersistenceBackend, RegistrationBackend, ResultBackend, WorkBackend,
};
use flatmachines_sqlite::{SqliteConfig, SqliteDatabase};

const ROOT_ENV: &str = "FLATMACHINES_SQLITE_CONFORMANCE_ROOT";

/// Short, so the lease-expiry case is quick, yet many times a renewal's delay on a loaded
/// machine.
const LEASE: Duration = Duration::from_secs(2);

fn open(root: &Path, ns: &str) -> Result<SqliteDatabase, String> {
    let config = SqliteConfig::new(root.join(format!("{ns}.sqlite"))).lock_lease(LEASE);
    SqliteDatabase::open(config).map_err(|e| e.to_string())
}

fn persistence(root: &Path) -> PersistenceFactory {
    let root = root.to_owned();
    PersistenceFactory::new(move |ns| {
        let opened = open(&root, &ns);
        async move { Ok(Arc::new(opened?.persistence()) as Arc<dyn PersistenceBackend>) }
    })
}

fn lock(root: &Path) -> LockFactory {
    let root = root.to_owned();
    LockFactory::new(move |ns| {
        let opened = open(&root, &ns);
        async move { Ok(Arc::new(opened?.lock()) as Arc<dyn ExecutionLock>) }
    })
}

fn results(root: &Path) -> ResultFactory {
    let root = root.to_owned();
    ResultFactory::new(move |ns| {
        let opened = open(&root, &ns);
        async move { Ok(Arc::new(opened?.results()) as Arc<dyn ResultBackend>) }
    })
}

fn registration(root: &Path) -> RegistrationFactory {
    let root = root.to_owned();
    RegistrationFactory::new(move |ns| {
        let opened = open(&root, &ns);
        async move { Ok(Arc::new(opened?.registration()) as Arc<dyn RegistrationBackend>) }
    })
}

fn work(root: &Path) -> WorkFactory {
    let root = root.to_owned();
    WorkFactory::new(move |ns| {
        let opened = open(&root, &ns);
        async move { Ok(Arc::new(opened?.work()) as Arc<dyn WorkBackend>) }
    })
}

/// Not a test of its own: the cross-process cases start this binary again to serve a task.
#[tokio::test]
async fn conformance_helper() {
    let Some(task) = HelperTask::from_env() else {
        return;
    };
    let root = PathBuf::from(std::env::var(ROOT_ENV).expect("the launcher sets the root"));
    let backends = HelperBackends {
        persistence: Some(persistence(&root)),
        lock: Some(lock(&root)),
        work: Some(work(&root)),
    };
    serve_helper(task.unwrap(), &backends).await.unwrap();
}

fn capabilities(root: &Path) -> Capabilities {
    let launcher = ProcessLauncher::current_exe()
        .unwrap()
        .arg("--exact")
        .arg("conformance::conformance_helper")
        .arg("--nocapture")
        .env(ROOT_ENV, root);
    Capabilities::none().cross_process(launcher)
}

fn assert_complete(report: &SuiteReport) {
    println!("{report}");
    assert!(report.is_success(), "{report}");
    assert_eq!(report.skipped().count(), 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_passes_every_case() {
    let root = tempfile::tempdir().unwrap();
    let caps = capabilities(root.path()).large_values();
    let report = flatmachines_conformance::persistence(&persistence(root.path()), &caps).await;
    assert_complete(&report);
    let report = flatmachines_conformance::machines(&persistence(root.path()), &caps).await;
    assert_complete(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_pass_every_case_including_cross_process_exclusion_and_lease_expiry() {
    let root = tempfile::tempdir().unwrap();
    let caps = capabilities(root.path()).exclusion().lease_expiry(LEASE);
    let report = flatmachines_conformance::lock(&lock(root.path()), &caps).await;
    assert_complete(&report);
}

/// Blocking reads included. The suite has no cross-process case for results; those are in
/// `results.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_pass_every_case_including_blocking_reads() {
    let root = tempfile::tempdir().unwrap();
    let caps = Capabilities::none().blocking_read();
    let report = flatmachines_conformance::results(&results(root.path()), &caps).await;
    assert_complete(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_passes_every_case() {
    let root = tempfile::tempdir().unwrap();
    let report =
        flatmachines_conformance::registration(&registration(root.path()), &Capabilities::none())
            .await;
    assert_complete(&report);
}

/// Four helper processes and this one claim 4 000 items from one pool: each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_passes_every_case_including_a_five_process_claim_race() {
    let root = tempfile::tempdir().unwrap();
    let caps = capabilities(root.path()).claim_race(4, 4000);
    let report = flatmachines_conformance::work(&work(root.path()), &caps).await;
    assert_complete(&report);
}
