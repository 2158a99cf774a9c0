//! How a downstream crate runs the suites from ordinary `#[tokio::test]`s, cross-process cases
//! included (docs/custom-backends.md walks through it): the local-file backends, with the
//! helper process served by a test of this same binary.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use flatmachines_conformance::process::{
    HelperBackends, HelperTask, ProcessLauncher, serve_helper,
};
use flatmachines_conformance::{Capabilities, LockFactory, PersistenceFactory};
use flatmachines_core::{ExecutionLock, PersistenceBackend, Result};
use flatmachines_local::{LocalFileBackend, LocalFileLock};

/// Where the helper process finds the directory the parent's namespaces live in.
const ROOT_ENV: &str = "FLATMACHINES_DOWNSTREAM_TEST_ROOT";
/// Set to make the helper serve [`InProcessLock`]s instead of file locks.
const IN_PROCESS_ENV: &str = "FLATMACHINES_DOWNSTREAM_IN_PROCESS_LOCK";

/// Namespace `ns` is the directory `{root}/{ns}`, with its locks in `.locks` below it.
fn factories(root: &Path) -> (PersistenceFactory, LockFactory) {
    let (store_root, lock_root) = (root.to_owned(), root.to_owned());
    let persistence = PersistenceFactory::new(move |ns| {
        let dir = store_root.join(ns);
        async move {
            let store = LocalFileBackend::new(dir).map_err(|e| e.to_string())?;
            Ok(Arc::new(store) as Arc<dyn PersistenceBackend>)
        }
    });
    let lock = LockFactory::new(move |ns| {
        let dir = lock_root.join(ns).join(".locks");
        async move {
            let lock = LocalFileLock::new(dir).map_err(|e| e.to_string())?;
            Ok(Arc::new(lock) as Arc<dyn ExecutionLock>)
        }
    });
    (persistence, lock)
}

/// Not a test of its own: the cross-process cases start this binary again to serve a task.
#[tokio::test]
async fn conformance_helper() {
    let Some(task) = HelperTask::from_env() else {
        return;
    };
    let root = PathBuf::from(std::env::var(ROOT_ENV).expect("the launcher sets the root"));
    let (persistence, mut lock) = factories(&root);
    if std::env::var_os(IN_PROCESS_ENV).is_some() {
        lock = in_process_locks();
    }
    let backends = HelperBackends {
        persistence: Some(persistence),
        lock: Some(lock),
        work: None,
    };
    serve_helper(task.unwrap(), &backends).await.unwrap();
}

fn launcher(root: &Path) -> ProcessLauncher {
    ProcessLauncher::current_exe()
        .unwrap()
        .arg("--exact")
        .arg("conformance_helper")
        .arg("--nocapture")
        .env(ROOT_ENV, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backends_pass_every_case_including_cross_process_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (persistence, lock) = factories(tmp.path());
    let shared = Capabilities::none().cross_process(launcher(tmp.path()));

    let report =
        flatmachines_conformance::persistence(&persistence, &shared.clone().large_values()).await;
    assert!(report.is_success(), "{report}");
    assert_eq!(report.skipped().count(), 0, "{report}");
    let crossed = report.case("cross_process_visibility").unwrap();
    assert!(crossed.outcome.is_passed(), "{report}");

    let report = flatmachines_conformance::lock(&lock, &shared.exclusion()).await;
    assert!(report.is_success(), "{report}");
    let skipped: Vec<&str> = report.skipped().map(|c| c.case).collect();
    assert_eq!(skipped, ["lease_expiry"], "{report}");
    let crossed = report.case("cross_process_exclusion").unwrap();
    assert!(crossed.outcome.is_passed(), "{report}");
}

/// A lock that excludes holders within its process only: the negative control of the
/// cross-process case.
#[derive(Debug, Default)]
struct InProcessLock {
    taken: Arc<Mutex<HashSet<String>>>,
    mine: Mutex<HashSet<String>>,
}

#[async_trait]
impl ExecutionLock for InProcessLock {
    async fn acquire(&self, key: &str) -> Result<bool> {
        let won = self.taken.lock().unwrap().insert(key.to_owned());
        if won {
            self.mine.lock().unwrap().insert(key.to_owned());
        }
        Ok(won)
    }

    async fn release(&self, key: &str) -> Result<()> {
        if self.mine.lock().unwrap().remove(key) {
            self.taken.lock().unwrap().remove(key);
        }
        Ok(())
    }
}

/// Holders of one namespace share its set of taken keys, within this process.
fn in_process_locks() -> LockFactory {
    let namespaces: Mutex<HashMap<String, Arc<Mutex<HashSet<String>>>>> = Mutex::default();
    LockFactory::new(move |ns| {
        let taken = Arc::clone(namespaces.lock().unwrap().entry(ns).or_default());
        async move {
            let lock = InProcessLock {
                taken,
                mine: Mutex::default(),
            };
            Ok(Arc::new(lock) as Arc<dyn ExecutionLock>)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_excludes_only_within_its_process_fails_the_cross_process_case() {
    let tmp = tempfile::tempdir().unwrap();
    let launcher = launcher(tmp.path()).env(IN_PROCESS_ENV, "1");
    let capabilities = Capabilities::none().exclusion().cross_process(launcher);
    let report = flatmachines_conformance::lock(&in_process_locks(), &capabilities).await;
    let failed: Vec<&str> = report.failed().map(|c| c.case).collect();
    assert_eq!(failed, ["cross_process_exclusion"], "{report}");
    assert!(
        report
            .to_string()
            .contains("clause 2: acquired a key another process holds"),
        "{report}"
    );
}
