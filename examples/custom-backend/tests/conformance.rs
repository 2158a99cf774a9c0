//! The conformance suites, run against the example backend from an ordinary test.

use std::sync::Arc;

use custom_backend_example::ShardedStore;
use flatmachines_conformance::{Capabilities, Capability, PersistenceFactory};
use flatmachines_core::PersistenceBackend;

/// One store per namespace: handles opened with the same namespace share it, as the suite's
/// factory contract asks.
fn factory() -> PersistenceFactory {
    PersistenceFactory::shared_per_namespace(|| {
        Arc::new(ShardedStore::new(8)) as Arc<dyn PersistenceBackend>
    })
}

#[tokio::test]
async fn the_sharded_store_passes_the_persistence_suite() {
    // Large values are kept; another process cannot see this process's memory, so the
    // cross-process case is skipped, and the report says so.
    let capabilities = Capabilities::none().large_values();
    let report = flatmachines_conformance::persistence(&factory(), &capabilities).await;
    println!("{report}");
    assert!(report.is_success(), "{report}");
    let skipped: Vec<_> = report
        .skipped()
        .map(|c| (c.case, c.outcome.clone()))
        .collect();
    assert_eq!(skipped.len(), 1, "{report}");
    assert_eq!(skipped[0].0, "cross_process_visibility");
    assert_eq!(
        report.cases[0].outcome.skip_reason(),
        None,
        "the first case ran"
    );
    assert!(!capabilities.has(Capability::CrossProcess));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_checkpoint_to_the_sharded_store_like_to_memory() {
    let report = flatmachines_conformance::machines(&factory(), &Capabilities::none()).await;
    println!("{report}");
    assert!(report.is_success(), "{report}");
}
