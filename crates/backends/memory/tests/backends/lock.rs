use std::sync::Arc;

use flatmachines_core::ExecutionLock;
use flatmachines_memory::NoOpLock;

#[tokio::test]
async fn clause1_acquire_answers_at_once_with_true() {
    let lock = NoOpLock::new();
    assert!(lock.acquire("exec-1").await.unwrap());
}

#[tokio::test]
async fn clause2_does_not_hold_by_design_a_second_acquire_also_succeeds() {
    let lock: Arc<dyn ExecutionLock> = Arc::new(NoOpLock);
    assert!(lock.acquire("exec-1").await.unwrap());
    assert!(
        lock.acquire("exec-1").await.unwrap(),
        "NoOpLock excludes nothing"
    );
}

#[tokio::test]
async fn clause3_release_of_an_unheld_key_succeeds() {
    NoOpLock.release("never-acquired").await.unwrap();
}

#[tokio::test]
async fn clause4_a_released_key_can_be_acquired_again() {
    let lock: Box<dyn ExecutionLock> = Box::new(NoOpLock);
    assert!(lock.acquire("k").await.unwrap());
    lock.release("k").await.unwrap();
    assert!(lock.acquire("k").await.unwrap());
}
