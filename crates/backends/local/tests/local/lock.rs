use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flatmachines_core::{Error, ExecutionLock};
use flatmachines_local::LocalFileLock;
use tempfile::TempDir;

use crate::support::tree;

/// Set in a child process to make [`holder_child_process`] hold a lock in this directory.
const HOLDER_DIR: &str = "FLATMACHINES_LOCAL_TEST_LOCK_HOLDER_DIR";
const HOLDER_KEY: &str = "exec-across-processes";

fn locks() -> (TempDir, LocalFileLock, LocalFileLock) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(LocalFileLock::DEFAULT_DIR);
    let first = LocalFileLock::new(&dir).unwrap();
    let second = LocalFileLock::new(&dir).unwrap();
    (tmp, first, second)
}

/// Bounds every acquire, so a blocking implementation fails instead of hanging.
async fn acquire(lock: &LocalFileLock, key: &str) -> bool {
    tokio::time::timeout(Duration::from_secs(5), lock.acquire(key))
        .await
        .expect("acquire must not wait for the holder")
        .unwrap()
}

#[tokio::test]
async fn clause1_acquire_answers_at_once_even_while_another_holds() {
    let (_tmp, first, second) = locks();
    assert!(acquire(&first, "exec-1").await);
    assert!(!acquire(&second, "exec-1").await);
}

#[tokio::test]
async fn clause2_a_second_owner_in_the_same_process_is_refused() {
    let (_tmp, first, second) = locks();
    assert!(acquire(&first, "exec-1").await);
    assert!(!acquire(&second, "exec-1").await);
    assert!(!acquire(&first, "exec-1").await, "the holder asking again");
    assert!(
        acquire(&second, "exec-2").await,
        "other keys are independent"
    );
}

#[tokio::test]
async fn clause2_a_holder_in_another_process_excludes_until_it_dies() {
    let (tmp, lock, _) = locks();
    let mut child = Holder(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "lock::holder_child_process", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(HOLDER_DIR, lock.dir())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints `test lock::holder_child_process ... ` on the same line first.
            if line.trim_end().ends_with("LOCKED") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the child process never reported holding the lock");
    assert!(!acquire(&lock, HOLDER_KEY).await);

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(
        acquire(&lock, HOLDER_KEY).await,
        "the OS frees the lock of a dead holder"
    );
    drop(tmp);
}

/// Kills the child if the test fails before it does.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Not a test on its own: with [`HOLDER_DIR`] set, it is the other process of the test above.
#[tokio::test]
async fn holder_child_process() {
    let Ok(dir) = std::env::var(HOLDER_DIR) else {
        return;
    };
    let lock = LocalFileLock::new(dir).unwrap();
    assert!(lock.acquire(HOLDER_KEY).await.unwrap());
    println!("LOCKED");
    std::io::stdout().flush().unwrap();
    // Bounded, so an abandoned child cannot linger.
    tokio::time::sleep(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn clause3_release_by_a_non_holder_does_nothing() {
    let (_tmp, first, second) = locks();
    second.release("never-acquired").await.unwrap();
    assert!(acquire(&first, "exec-1").await);
    second.release("exec-1").await.unwrap();
    assert!(!acquire(&second, "exec-1").await, "the holder keeps it");
    first.release("exec-1").await.unwrap();
    first.release("exec-1").await.unwrap();
}

#[tokio::test]
async fn clause4_a_released_key_can_be_acquired_again() {
    let (_tmp, first, second) = locks();
    assert!(acquire(&first, "exec-1").await);
    first.release("exec-1").await.unwrap();
    assert!(acquire(&second, "exec-1").await);
    assert!(!acquire(&first, "exec-1").await);
    second.release("exec-1").await.unwrap();
    assert!(acquire(&first, "exec-1").await);
}

#[tokio::test]
async fn lock_files_live_flat_in_the_directory_and_are_never_deleted() {
    let (_tmp, lock, _) = locks();
    assert!(acquire(&lock, "exec-1").await);
    assert!(acquire(&lock, "exec 2.ü").await);
    lock.release("exec-1").await.unwrap();
    assert_eq!(tree(lock.dir()), ["exec 2.ü.lock", "exec-1.lock"]);
    let debug = format!("{lock:?}");
    assert!(debug.contains(".locks"), "{debug}");
}

#[tokio::test]
async fn invalid_lock_keys_are_rejected() {
    let (_tmp, lock, _) = locks();
    for key in ["", "a/b", "..", ".hidden", "/abs", "a\nb"] {
        let acquired = lock.acquire(key).await;
        assert!(matches!(acquired, Err(Error::InvalidKey { .. })), "{key:?}");
        let released = lock.release(key).await;
        assert!(matches!(released, Err(Error::InvalidKey { .. })), "{key:?}");
    }
    assert!(tree(lock.dir()).is_empty());
}
