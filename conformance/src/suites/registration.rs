//! The [`RegistrationBackend`] suite.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use flatmachines_core::distributed::status;
use flatmachines_core::{
    Error, JsonMap, RegistrationBackend, WorkerFilter, WorkerRecord, WorkerRegistration,
};
use serde_json::{Value, json};

use crate::RegistrationFactory;
use crate::case::{Case, CaseResult, Context, Env, case, ensure, ensure_eq};

const SUITE: &str = "registration";

type E<'a> = Env<'a, RegistrationFactory>;
type Registry = Arc<dyn RegistrationBackend>;

/// How far a backend's clock may be from this process's before heartbeats look wrong.
const CLOCK_SLACK_SECONDS: i64 = 60;

static CASES: &[Case<RegistrationFactory>] = &[
    case!(
        "register_creates_an_active_worker",
        "register stores the worker as active with a heartbeat of now and its fields as given (clause 1)",
        [],
        register_creates_an_active_worker
    ),
    case!(
        "register_replaces_a_known_worker",
        "registering a known id again makes it active again with the new fields (clause 1)",
        [],
        register_replaces_a_known_worker
    ),
    case!(
        "heartbeat_merges_metadata",
        "heartbeat keeps the heartbeat current and merges metadata key by key; None leaves it (clause 2)",
        [],
        heartbeat_merges_metadata
    ),
    case!(
        "update_status_sets_any_string",
        "update_status stores the named statuses and custom ones (clause 2)",
        [],
        update_status_sets_any_string
    ),
    case!(
        "unknown_worker_is_not_found",
        "heartbeat and update_status of an unknown worker fail with NotFound and create nothing; get is None (clauses 3 and 4)",
        [],
        unknown_worker_is_not_found
    ),
    case!(
        "list_filters",
        "list returns exactly the workers matching every set field: status, capability, pool (clause 5)",
        [],
        list_filters
    ),
    case!(
        "stale_threshold",
        "a stale threshold lists workers whose heartbeat is older, and a heartbeat makes a worker fresh (clauses 2 and 5)",
        [],
        stale_threshold
    ),
    case!(
        "namespace_isolation",
        "two namespaces share no workers; two handles on one namespace share them (factory contract)",
        [],
        namespace_isolation
    ),
];

/// The cases of the registration suite, in order.
pub fn cases() -> &'static [Case<RegistrationFactory>] {
    CASES
}

fn worker(id: &str, pool: Option<&str>, caps: &[&str]) -> WorkerRegistration {
    WorkerRegistration {
        worker_id: id.to_owned(),
        host: Some("host-1".to_owned()),
        pid: Some(4242),
        capabilities: Some(caps.iter().map(|c| (*c).to_owned()).collect()),
        pool_id: pool.map(str::to_owned),
        started_at: "2024-01-01T00:00:00+00:00".to_owned(),
    }
}

fn map(value: Value) -> JsonMap {
    match value {
        Value::Object(map) => map,
        _ => JsonMap::new(),
    }
}

/// Parses a heartbeat: RFC 3339, or an offset-less ISO 8601 time (what Python's naive
/// `isoformat()` writes), read as UTC.
fn parse(timestamp: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(timestamp) {
        return Ok(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|naive| naive.and_utc())
        .map_err(|e| format!("last_heartbeat {timestamp:?} is not an ISO 8601 time: {e}"))
}

/// Checks that `timestamp` is about now.
fn recent(timestamp: &str, what: &str) -> CaseResult {
    let age = Utc::now().signed_duration_since(parse(timestamp)?);
    ensure!(
        age.num_seconds().abs() <= CLOCK_SLACK_SECONDS,
        "{what}: heartbeat {timestamp} is {}s away from now",
        age.num_seconds()
    );
    Ok(())
}

async fn register(
    registry: &Registry,
    registration: WorkerRegistration,
) -> Result<WorkerRecord, String> {
    let id = registration.worker_id.clone();
    registry
        .register(registration)
        .await
        .ctx(format!("register {id}"))
}

async fn get(registry: &Registry, id: &str) -> Result<WorkerRecord, String> {
    registry
        .get(id)
        .await
        .ctx(format!("get {id}"))?
        .ok_or_else(|| format!("worker {id} is not registered"))
}

async fn ids(registry: &Registry, filter: &WorkerFilter) -> Result<Vec<String>, String> {
    let listed = registry
        .list(filter)
        .await
        .ctx(format!("list {filter:?}"))?;
    let mut ids: Vec<String> = listed.into_iter().map(|r| r.worker_id).collect();
    // The contract does not order listings.
    ids.sort();
    Ok(ids)
}

async fn register_creates_an_active_worker(env: E<'_>) -> CaseResult {
    let registry = env.fresh().await?;
    let record = register(&registry, worker("w1", Some("pool-1"), &["gpu", "ssd"])).await?;
    ensure_eq!(record.worker_id, "w1", "clause 1: worker_id");
    ensure_eq!(
        record.status,
        status::ACTIVE,
        "clause 1: status after register"
    );
    recent(&record.last_heartbeat, "clause 1: register")?;
    ensure_eq!(
        (record.host.as_deref(), record.pid),
        (Some("host-1"), Some(4242)),
        "host and pid as given"
    );
    ensure_eq!(
        record.pool_id.as_deref(),
        Some("pool-1"),
        "pool_id as given"
    );
    ensure_eq!(
        record.capabilities,
        Some(vec!["gpu".to_owned(), "ssd".to_owned()]),
        "capabilities as given"
    );
    ensure_eq!(
        record.started_at.as_deref(),
        Some("2024-01-01T00:00:00+00:00"),
        "started_at as given"
    );
    ensure_eq!(
        get(&registry, "w1").await?,
        record,
        "get returns what register returned"
    );
    Ok(())
}

async fn register_replaces_a_known_worker(env: E<'_>) -> CaseResult {
    let registry = env.fresh().await?;
    register(&registry, worker("w1", Some("old"), &["cpu"])).await?;
    registry
        .update_status("w1", status::LOST)
        .await
        .ctx("update_status")?;
    let again = register(&registry, worker("w1", Some("new"), &["gpu"])).await?;
    ensure_eq!(
        again.status,
        status::ACTIVE,
        "clause 1: a re-registered worker is active"
    );
    let stored = get(&registry, "w1").await?;
    ensure_eq!(
        stored.status,
        status::ACTIVE,
        "clause 1: stored status after re-registering"
    );
    ensure_eq!(
        stored.pool_id.as_deref(),
        Some("new"),
        "clause 1: the new registration's pool"
    );
    ensure_eq!(
        stored.capabilities,
        Some(vec!["gpu".to_owned()]),
        "clause 1: the new registration's capabilities"
    );
    ensure_eq!(
        ids(&registry, &WorkerFilter::default()).await?,
        ["w1"],
        "clause 1: one worker, not two"
    );
    Ok(())
}

async fn heartbeat_merges_metadata(env: E<'_>) -> CaseResult {
    let registry = env.fresh().await?;
    let first = register(&registry, worker("w1", None, &[])).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    registry
        .heartbeat("w1", Some(map(json!({"a": 1, "b": {"x": 1}}))))
        .await
        .ctx("heartbeat")?;
    let after = get(&registry, "w1").await?;
    ensure!(
        parse(&after.last_heartbeat)? >= parse(&first.last_heartbeat)?,
        "clause 2: the heartbeat went back from {} to {}",
        first.last_heartbeat,
        after.last_heartbeat
    );
    recent(&after.last_heartbeat, "clause 2: heartbeat")?;
    ensure_eq!(
        after.metadata,
        Some(map(json!({"a": 1, "b": {"x": 1}}))),
        "clause 2: metadata after the first heartbeat"
    );
    registry
        .heartbeat("w1", Some(map(json!({"b": 2, "c": [3]}))))
        .await
        .ctx("heartbeat")?;
    let merged = map(json!({"a": 1, "b": 2, "c": [3]}));
    ensure_eq!(
        get(&registry, "w1").await?.metadata,
        Some(merged.clone()),
        "clause 2: metadata merged key by key"
    );
    registry
        .heartbeat("w1", None)
        .await
        .ctx("heartbeat without metadata")?;
    ensure_eq!(
        get(&registry, "w1").await?.metadata,
        Some(merged),
        "clause 2: a heartbeat without metadata keeps it"
    );
    ensure_eq!(
        get(&registry, "w1").await?.status,
        status::ACTIVE,
        "a heartbeat leaves the status"
    );
    Ok(())
}

async fn update_status_sets_any_string(env: E<'_>) -> CaseResult {
    let registry = env.fresh().await?;
    register(&registry, worker("w1", None, &[])).await?;
    for value in [
        status::TERMINATING,
        status::TERMINATED,
        status::LOST,
        "custom status ✓",
        status::ACTIVE,
    ] {
        registry
            .update_status("w1", value)
            .await
            .ctx(format!("update_status {value:?}"))?;
        ensure_eq!(
            get(&registry, "w1").await?.status,
            value,
            "clause 2: status after update_status"
        );
    }
    Ok(())
}

fn not_found(result: &Result<(), Error>) -> bool {
    matches!(result, Err(Error::NotFound { .. }))
}

async fn unknown_worker_is_not_found(env: E<'_>) -> CaseResult {
    let registry = env.fresh().await?;
    register(&registry, worker("known", None, &[])).await?;
    let beat = registry
        .heartbeat("ghost", Some(map(json!({"k": 1}))))
        .await;
    ensure!(
        not_found(&beat),
        "clause 3: heartbeat of an unknown worker returned {beat:?}, expected NotFound"
    );
    let status = registry.update_status("ghost", status::LOST).await;
    ensure!(
        not_found(&status),
        "clause 3: update_status of an unknown worker returned {status:?}, expected NotFound"
    );
    ensure_eq!(
        registry.get("ghost").await.ctx("get")?,
        None,
        "clause 4: get of an unknown worker (and nothing was created)"
    );
    ensure_eq!(
        ids(&registry, &WorkerFilter::default()).await?,
        ["known"],
        "no worker was created"
    );
    Ok(())
}

async fn list_filters(env: E<'_>) -> CaseResult {
    let registry = env.fresh().await?;
    register(&registry, worker("a", Some("p1"), &["gpu", "ssd"])).await?;
    register(&registry, worker("b", Some("p1"), &["cpu"])).await?;
    register(&registry, worker("c", Some("p2"), &["gpu"])).await?;
    let mut bare = worker("d", None, &[]);
    bare.capabilities = None;
    register(&registry, bare).await?;
    registry
        .update_status("b", status::LOST)
        .await
        .ctx("update_status b")?;
    registry
        .update_status("c", status::TERMINATING)
        .await
        .ctx("update_status c")?;

    let filter =
        |status: Option<&[&str]>, capability: Option<&str>, pool: Option<&str>| WorkerFilter {
            status: status.map(|s| s.iter().map(|x| (*x).to_owned()).collect()),
            capability: capability.map(str::to_owned),
            pool_id: pool.map(str::to_owned),
            stale_threshold_seconds: None,
        };
    let expectations: [(WorkerFilter, &[&str]); 9] = [
        (WorkerFilter::default(), &["a", "b", "c", "d"]),
        (filter(Some(&[status::ACTIVE]), None, None), &["a", "d"]),
        (
            filter(Some(&[status::LOST, status::TERMINATING]), None, None),
            &["b", "c"],
        ),
        (filter(Some(&[]), None, None), &[]),
        (filter(None, Some("gpu"), None), &["a", "c"]),
        (filter(None, Some("gp"), None), &[]),
        (filter(None, None, Some("p1")), &["a", "b"]),
        (filter(None, Some("gpu"), Some("p1")), &["a"]),
        (filter(Some(&[status::LOST]), Some("gpu"), Some("p1")), &[]),
    ];
    for (filter, expected) in expectations {
        ensure_eq!(
            ids(&registry, &filter).await?,
            expected,
            "clause 5: list {filter:?}"
        );
    }
    Ok(())
}

async fn stale_threshold(env: E<'_>) -> CaseResult {
    let registry = env.fresh().await?;
    register(&registry, worker("old", None, &[])).await?;
    register(&registry, worker("revived", None, &[])).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    register(&registry, worker("fresh", None, &[])).await?;
    registry.heartbeat("revived", None).await.ctx("heartbeat")?;
    let stale = |seconds| WorkerFilter {
        stale_threshold_seconds: Some(seconds),
        ..WorkerFilter::default()
    };
    ensure_eq!(
        ids(&registry, &stale(1.0)).await?,
        ["old"],
        "clause 5: heartbeats older than 1 s (a heartbeat refreshes `revived`)"
    );
    ensure_eq!(
        ids(&registry, &stale(3600.0)).await?,
        Vec::<String>::new(),
        "clause 5: heartbeats older than an hour"
    );
    let lost_and_stale = WorkerFilter {
        status: Some(vec![status::LOST.to_owned()]),
        ..stale(1.0)
    };
    ensure_eq!(
        ids(&registry, &lost_and_stale).await?,
        Vec::<String>::new(),
        "clause 5: every set field must match"
    );
    Ok(())
}

async fn namespace_isolation(env: E<'_>) -> CaseResult {
    let (ns_a, ns_b) = (env.namespace(), env.namespace());
    let a = env.open(&ns_a).await?;
    let a_again = env.open(&ns_a).await?;
    let b = env.open(&ns_b).await?;
    register(&a, worker("w1", Some("p"), &[])).await?;
    ensure!(
        a_again.get("w1").await.ctx("get")?.is_some(),
        "a second handle on one namespace sees the worker"
    );
    ensure_eq!(
        b.get("w1").await.ctx("get")?,
        None,
        "another namespace sees the worker"
    );
    ensure_eq!(
        ids(&b, &WorkerFilter::default()).await?,
        Vec::<String>::new(),
        "another namespace lists workers"
    );
    let beat = b.heartbeat("w1", None).await;
    ensure!(
        not_found(&beat),
        "clause 3: heartbeat in another namespace returned {beat:?}, expected NotFound"
    );
    Ok(())
}
