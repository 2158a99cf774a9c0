use std::time::Duration;

use chrono::{DateTime, Utc};
use flatmachines_core::distributed::status;
use flatmachines_core::{Error, JsonMap, RegistrationBackend, WorkerFilter, WorkerRegistration};
use flatmachines_memory::{MemoryRegistrationBackend, now_iso8601};
use serde_json::json;

fn worker(id: &str, pool: Option<&str>, caps: &[&str]) -> WorkerRegistration {
    WorkerRegistration {
        worker_id: id.to_owned(),
        host: Some("host-1".to_owned()),
        pid: Some(42),
        capabilities: Some(caps.iter().map(|c| c.to_string()).collect()),
        pool_id: pool.map(str::to_owned),
        started_at: "2024-01-01T00:00:00+00:00".to_owned(),
    }
}

fn map(value: serde_json::Value) -> JsonMap {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn parse(timestamp: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(timestamp)
        .unwrap_or_else(|e| panic!("{timestamp}: {e}"))
        .with_timezone(&Utc)
}

async fn ids(backend: &MemoryRegistrationBackend, filter: WorkerFilter) -> Vec<String> {
    let listed = backend.list(&filter).await.unwrap();
    listed.into_iter().map(|record| record.worker_id).collect()
}

#[test]
fn timestamps_look_like_python_isoformat_in_utc() {
    let now = now_iso8601();
    let (seconds, rest) = now.split_once('.').expect("a fraction");
    assert_eq!(seconds.len(), "2024-01-01T00:00:00".len(), "{now}");
    assert_eq!(rest.len(), "123456+00:00".len(), "{now}");
    assert!(rest.ends_with("+00:00"), "{now}");
    let age = Utc::now() - parse(&now);
    assert!(age.num_seconds().abs() < 5, "{now}");
}

#[tokio::test]
async fn clause1_register_creates_an_active_worker_with_a_fresh_heartbeat() {
    let backend = MemoryRegistrationBackend::new();
    let before = Utc::now();
    let record = backend
        .register(worker("w1", Some("p"), &["gpu"]))
        .await
        .unwrap();
    assert_eq!(record.status, status::ACTIVE);
    let beat = parse(&record.last_heartbeat);
    assert!(beat >= before - chrono::TimeDelta::milliseconds(1) && beat <= Utc::now());
    assert!(record.last_heartbeat.ends_with("+00:00"));
    assert_eq!(record.host.as_deref(), Some("host-1"));
    assert_eq!(record.pid, Some(42));
    assert_eq!(record.pool_id.as_deref(), Some("p"));
    assert_eq!(record.capabilities, Some(vec!["gpu".to_owned()]));
    assert_eq!(
        record.started_at.as_deref(),
        Some("2024-01-01T00:00:00+00:00")
    );
    assert_eq!(backend.get("w1").await.unwrap(), Some(record));
}

#[tokio::test]
async fn clause1_register_replaces_a_known_worker_and_keeps_its_place() {
    let backend = MemoryRegistrationBackend::new();
    backend
        .register(worker("w1", Some("old"), &[]))
        .await
        .unwrap();
    backend.register(worker("w2", None, &[])).await.unwrap();
    backend.update_status("w1", status::LOST).await.unwrap();
    backend
        .heartbeat("w1", Some(map(json!({"k": 1}))))
        .await
        .unwrap();
    let replaced = backend
        .register(worker("w1", Some("new"), &[]))
        .await
        .unwrap();
    assert_eq!(replaced.status, status::ACTIVE);
    assert_eq!(replaced.metadata, None);
    assert_eq!(backend.get("w1").await.unwrap(), Some(replaced));
    assert_eq!(ids(&backend, WorkerFilter::default()).await, ["w1", "w2"]);
}

#[tokio::test]
async fn clause2_heartbeat_moves_the_time_and_merges_metadata_key_by_key() {
    let backend = MemoryRegistrationBackend::new();
    let first = backend.register(worker("w1", None, &[])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let merged = map(json!({"a": 1, "b": {"x": 1}}));
    backend.heartbeat("w1", Some(merged)).await.unwrap();
    let after = backend.get("w1").await.unwrap().unwrap();
    assert!(parse(&after.last_heartbeat) > parse(&first.last_heartbeat));
    assert_eq!(after.metadata, Some(map(json!({"a": 1, "b": {"x": 1}}))));

    backend
        .heartbeat("w1", Some(map(json!({"b": 2, "c": 3}))))
        .await
        .unwrap();
    let expected = map(json!({"a": 1, "b": 2, "c": 3}));
    assert_eq!(
        backend.get("w1").await.unwrap().unwrap().metadata,
        Some(expected.clone())
    );

    backend.heartbeat("w1", None).await.unwrap();
    assert_eq!(
        backend.get("w1").await.unwrap().unwrap().metadata,
        Some(expected)
    );
}

#[tokio::test]
async fn clause2_update_status_sets_any_string() {
    let backend = MemoryRegistrationBackend::new();
    backend.register(worker("w1", None, &[])).await.unwrap();
    for value in [status::TERMINATING, status::TERMINATED, "custom-status"] {
        backend.update_status("w1", value).await.unwrap();
        assert_eq!(backend.get("w1").await.unwrap().unwrap().status, value);
    }
}

#[tokio::test]
async fn clause3_unknown_workers_are_not_found() {
    let backend = MemoryRegistrationBackend::new();
    for result in [
        backend.heartbeat("ghost", None).await,
        backend.update_status("ghost", status::LOST).await,
    ] {
        match result {
            Err(Error::NotFound { what, key }) => {
                assert_eq!((what, key.as_str()), ("worker", "ghost"))
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert_eq!(
        backend.get("ghost").await.unwrap(),
        None,
        "nothing was created"
    );
}

#[tokio::test]
async fn clause4_get_of_an_unknown_worker_is_none() {
    let backend = MemoryRegistrationBackend::new();
    assert_eq!(backend.get("nobody").await.unwrap(), None);
}

#[tokio::test]
async fn clause5_list_matches_every_set_field() {
    let backend = MemoryRegistrationBackend::new();
    backend
        .register(worker("a", Some("p1"), &["gpu", "ssd"]))
        .await
        .unwrap();
    backend
        .register(worker("b", Some("p1"), &["cpu"]))
        .await
        .unwrap();
    backend
        .register(worker("c", Some("p2"), &["gpu"]))
        .await
        .unwrap();
    let mut no_caps = worker("d", None, &[]);
    no_caps.capabilities = None;
    backend.register(no_caps).await.unwrap();
    backend.update_status("b", status::LOST).await.unwrap();
    backend
        .update_status("c", status::TERMINATING)
        .await
        .unwrap();

    let all = ids(&backend, WorkerFilter::default()).await;
    assert_eq!(all, ["a", "b", "c", "d"], "registration order");
    let by_status = |statuses: &[&str]| WorkerFilter {
        status: Some(statuses.iter().map(|s| s.to_string()).collect()),
        ..WorkerFilter::default()
    };
    assert_eq!(
        ids(&backend, by_status(&[status::ACTIVE])).await,
        ["a", "d"]
    );
    let lost_or_terminating = by_status(&[status::LOST, status::TERMINATING]);
    assert_eq!(ids(&backend, lost_or_terminating).await, ["b", "c"]);
    assert_eq!(ids(&backend, by_status(&[])).await, Vec::<String>::new());

    let gpu = WorkerFilter {
        capability: Some("gpu".to_owned()),
        ..WorkerFilter::default()
    };
    assert_eq!(ids(&backend, gpu.clone()).await, ["a", "c"]);
    let pool = WorkerFilter {
        pool_id: Some("p1".to_owned()),
        ..WorkerFilter::default()
    };
    assert_eq!(ids(&backend, pool.clone()).await, ["a", "b"]);
    let combined = WorkerFilter {
        pool_id: Some("p1".to_owned()),
        ..gpu
    };
    assert_eq!(ids(&backend, combined).await, ["a"]);
    let none = WorkerFilter {
        status: Some(vec![status::LOST.to_owned()]),
        capability: Some("gpu".to_owned()),
        ..pool
    };
    assert_eq!(ids(&backend, none).await, Vec::<String>::new());
}

#[tokio::test]
async fn clause5_stale_threshold_returns_workers_with_old_heartbeats() {
    let backend = MemoryRegistrationBackend::new();
    backend.register(worker("old", None, &[])).await.unwrap();
    backend
        .register(worker("revived", None, &[]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    backend.register(worker("fresh", None, &[])).await.unwrap();
    backend.heartbeat("revived", None).await.unwrap();
    let stale = |seconds| WorkerFilter {
        stale_threshold_seconds: Some(seconds),
        ..WorkerFilter::default()
    };
    assert_eq!(ids(&backend, stale(0.2)).await, ["old"]);
    assert_eq!(ids(&backend, stale(3600.0)).await, Vec::<String>::new());
    let combined = WorkerFilter {
        status: Some(vec![status::LOST.to_owned()]),
        ..stale(0.2)
    };
    assert_eq!(ids(&backend, combined).await, Vec::<String>::new());
}

#[tokio::test]
async fn clones_share_records() {
    let backend = MemoryRegistrationBackend::default();
    backend
        .clone()
        .register(worker("w", None, &[]))
        .await
        .unwrap();
    assert!(backend.get("w").await.unwrap().is_some());
    assert!(format!("{backend:?}").contains("MemoryRegistrationBackend"));
}
