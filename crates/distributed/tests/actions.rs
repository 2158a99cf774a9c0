//! The distributed-worker actions over the in-memory backends, one by one and as machines.

use std::sync::Arc;

use serde_json::{Value, json};

use flatmachines_core::distributed::status;
use flatmachines_core::{
    Context, MachineHooks, PushOptions, RegistrationBackend, WorkBackend, WorkStatus, WorkerFilter,
    WorkerRegistration,
};
use flatmachines_distributed::DistributedWorkerHooks;
use flatmachines_memory::{MemoryRegistrationBackend, MemoryWorkBackend};

struct Setup {
    registration: Arc<MemoryRegistrationBackend>,
    work: Arc<MemoryWorkBackend>,
    hooks: DistributedWorkerHooks,
}

fn setup() -> Setup {
    let registration = Arc::new(MemoryRegistrationBackend::new());
    let work = Arc::new(MemoryWorkBackend::new());
    let hooks = DistributedWorkerHooks::new(
        Arc::clone(&registration) as Arc<dyn RegistrationBackend>,
        Arc::clone(&work) as Arc<dyn WorkBackend>,
    );
    Setup {
        registration,
        work,
        hooks,
    }
}

fn context(value: Value) -> Context {
    match value {
        Value::Object(map) => Context::from(map),
        other => panic!("contexts are objects, not {other}"),
    }
}

async fn act(hooks: &DistributedWorkerHooks, action: &str, ctx: &mut Context) {
    let handled = hooks
        .on_action(action, ctx)
        .await
        .unwrap_or_else(|e| panic!("{action} failed: {e}"));
    assert!(handled, "{action} is one of the hooks' actions");
}

async fn register(registration: &MemoryRegistrationBackend, id: &str, pool: &str) {
    registration
        .register(WorkerRegistration {
            worker_id: id.to_owned(),
            host: None,
            pid: None,
            capabilities: None,
            pool_id: Some(pool.to_owned()),
            started_at: "2026-01-01T00:00:00+00:00".to_owned(),
        })
        .await
        .expect("register");
}

#[tokio::test]
async fn a_worker_registers_claims_completes_fails_and_deregisters() {
    let s = setup();
    let pool = s.work.pool("jobs");
    let first = pool
        .push(json!({"n": 1}), PushOptions::default())
        .await
        .unwrap();
    let second = pool
        .push(json!({"n": 2}), PushOptions { max_retries: 1 })
        .await
        .unwrap();

    let mut ctx = context(json!({"pool_id": "jobs", "worker_id": "w1", "capabilities": ["gpu"]}));
    act(&s.hooks, "register_worker", &mut ctx).await;
    assert_eq!(ctx.as_map()["status"], "active");
    let record = s.registration.get("w1").await.unwrap().expect("registered");
    assert_eq!(record.pool_id.as_deref(), Some("jobs"));
    assert_eq!(record.capabilities, Some(vec!["gpu".to_owned()]));
    assert_eq!(record.pid, Some(std::process::id()));

    act(&s.hooks, "claim_job", &mut ctx).await;
    assert_eq!(ctx.as_map()["job_id"], first.as_str());
    assert_eq!(ctx.as_map()["job"], json!({"n": 1}));
    assert_eq!(ctx.as_map()["job_attempts"], 1);
    ctx.make_mut().insert("result".into(), json!({"ok": true}));
    act(&s.hooks, "complete_job", &mut ctx).await;
    let done = pool.get(&first).await.unwrap().expect("item");
    assert_eq!(done.status, WorkStatus::Done);
    assert_eq!(done.result, Some(json!({"ok": true})));

    act(&s.hooks, "claim_job", &mut ctx).await;
    assert_eq!(ctx.as_map()["job_id"], second.as_str());
    // `on_error` leaves the failure in last_error; fail_job records it.
    ctx.make_mut()
        .insert("last_error".into(), json!("the job blew up"));
    act(&s.hooks, "fail_job", &mut ctx).await;
    let failed = pool.get(&second).await.unwrap().expect("item");
    assert_eq!(failed.status, WorkStatus::Poisoned);
    assert_eq!(failed.error.as_deref(), Some("the job blew up"));

    act(&s.hooks, "claim_job", &mut ctx).await;
    assert_eq!(ctx.as_map()["job_id"], Value::Null);
    assert_eq!(ctx.as_map()["job"], Value::Null);

    let before = s
        .registration
        .get("w1")
        .await
        .unwrap()
        .unwrap()
        .last_heartbeat;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    ctx.make_mut()
        .insert("heartbeat_metadata".into(), json!({"load": 0.5}));
    act(&s.hooks, "heartbeat", &mut ctx).await;
    let beat = s.registration.get("w1").await.unwrap().unwrap();
    assert!(
        beat.last_heartbeat > before,
        "{} > {before}",
        beat.last_heartbeat
    );
    assert_eq!(beat.metadata.unwrap()["load"], 0.5);

    act(&s.hooks, "deregister_worker", &mut ctx).await;
    let gone = s.registration.get("w1").await.unwrap().unwrap();
    assert_eq!(gone.status, status::TERMINATED);
}

#[tokio::test]
async fn register_without_an_id_makes_one() {
    let s = setup();
    let mut ctx = context(json!({"pool_id": "jobs", "worker_id": ""}));
    act(&s.hooks, "register_worker", &mut ctx).await;
    let id = ctx.as_map()["worker_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert!(id.starts_with("worker-") && id.len() == 15, "{id}");
    assert!(s.registration.get(&id).await.unwrap().is_some());
}

#[tokio::test]
async fn pool_state_counts_pending_jobs_and_the_pools_active_workers() {
    let s = setup();
    for n in 0..5 {
        s.work
            .pool("jobs")
            .push(json!({"n": n}), PushOptions::default())
            .await
            .unwrap();
    }
    s.work
        .pool("other")
        .push(json!({}), PushOptions::default())
        .await
        .unwrap();
    register(&s.registration, "a", "jobs").await;
    register(&s.registration, "b", "jobs").await;
    register(&s.registration, "c", "other").await;
    s.registration
        .update_status("b", status::TERMINATED)
        .await
        .unwrap();
    s.work.pool("jobs").claim("a").await.unwrap();

    let mut ctx = context(json!({"pool_id": "jobs"}));
    act(&s.hooks, "get_pool_state", &mut ctx).await;
    assert_eq!(ctx.as_map()["queue_depth"], 4);
    assert_eq!(ctx.as_map()["active_workers"], 1);
}

#[tokio::test]
async fn spawn_plans_follow_min_of_queue_depth_and_max_workers() {
    let s = setup();
    // (queue_depth, active, max_workers) -> (needed, to_spawn)
    let cases = [
        ((0, 0, 3), (0, 0)),
        ((1, 0, 3), (1, 1)),
        ((10, 0, 3), (3, 3)),
        ((10, 2, 3), (3, 1)),
        ((10, 3, 3), (3, 0)),
        ((2, 5, 4), (2, 0)),
        ((200, 1, 8), (8, 7)),
    ];
    for ((depth, active, max), (needed, spawn)) in cases {
        let mut ctx =
            context(json!({"queue_depth": depth, "active_workers": active, "max_workers": max}));
        act(&s.hooks, "calculate_spawn", &mut ctx).await;
        let got = ctx.as_map();
        assert_eq!(got["workers_needed"], needed, "{depth}/{active}/{max}");
        assert_eq!(got["workers_to_spawn"], spawn, "{depth}/{active}/{max}");
        assert_eq!(
            got["spawn_list"].as_array().map(Vec::len),
            Some(spawn as usize)
        );
    }
    // Templates render numbers as text; the reference's default of 3 workers applies.
    let mut ctx = context(json!({"queue_depth": "7", "active_workers": "1"}));
    act(&s.hooks, "calculate_spawn", &mut ctx).await;
    assert_eq!(ctx.as_map()["workers_to_spawn"], 2);
}

#[tokio::test]
async fn nothing_to_spawn_needs_no_launcher_and_spawning_without_one_is_an_error() {
    let s = setup();
    let mut ctx = context(json!({"workers_to_spawn": 0}));
    act(&s.hooks, "spawn_workers", &mut ctx).await;
    assert_eq!(ctx.as_map()["spawned_count"], 0);

    let mut ctx = context(json!({"workers_to_spawn": 2}));
    let error = s
        .hooks
        .on_action("spawn_workers", &mut ctx)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("`context.worker_config_path`"),
        "{error}"
    );
    let mut ctx = context(json!({"workers_to_spawn": 2, "worker_config_path": "worker.yml"}));
    let error = s
        .hooks
        .on_action("spawn_workers", &mut ctx)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("without a launcher"), "{error}");
}

#[tokio::test]
async fn the_reaper_marks_stale_workers_lost_and_returns_their_jobs_to_their_pools() {
    let s = setup();
    let jobs = s.work.pool("jobs");
    let other = s.work.pool("other");
    let a = jobs
        .push(json!({"n": 1}), PushOptions::default())
        .await
        .unwrap();
    let b = other
        .push(json!({"n": 2}), PushOptions::default())
        .await
        .unwrap();
    register(&s.registration, "dead-1", "jobs").await;
    register(&s.registration, "dead-2", "other").await;
    jobs.claim("dead-1").await.unwrap().expect("claimed");
    other.claim("dead-2").await.unwrap().expect("claimed");
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    register(&s.registration, "alive", "jobs").await;

    let mut ctx = context(json!({"pool_id": "jobs", "stale_threshold_seconds": 0.05}));
    act(&s.hooks, "list_stale_workers", &mut ctx).await;
    assert_eq!(ctx.as_map()["stale_count"], 2);
    let mut ids: Vec<&str> = ctx.as_map()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["worker_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["dead-1", "dead-2"]);

    act(&s.hooks, "reap_stale_workers", &mut ctx).await;
    assert_eq!(ctx.as_map()["reaped_count"], 2);
    assert_eq!(ctx.as_map()["total_jobs_released"], 2);
    // Each worker's job went back to its own pool, not the context's.
    assert_eq!(
        jobs.get(&a).await.unwrap().unwrap().status,
        WorkStatus::Pending
    );
    assert_eq!(
        other.get(&b).await.unwrap().unwrap().status,
        WorkStatus::Pending
    );
    for id in ["dead-1", "dead-2"] {
        assert_eq!(
            s.registration.get(id).await.unwrap().unwrap().status,
            status::LOST
        );
    }
    assert_eq!(
        s.registration.get("alive").await.unwrap().unwrap().status,
        status::ACTIVE
    );
    let lost = s
        .registration
        .list(&WorkerFilter {
            status: Some(vec![status::LOST.to_owned()]),
            ..WorkerFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(lost.len(), 2);

    // One at a time, as `foreach` over `workers` would.
    register(&s.registration, "dead-3", "jobs").await;
    jobs.claim("dead-3").await.unwrap().expect("claimed");
    let mut ctx = context(json!({"worker": {"worker_id": "dead-3"}, "pool_id": "jobs"}));
    act(&s.hooks, "reap_worker", &mut ctx).await;
    assert_eq!(ctx.as_map()["reaped_worker_id"], "dead-3");
    assert_eq!(ctx.as_map()["jobs_released"], 1);
}

#[tokio::test]
async fn bad_context_values_name_the_action_and_the_key() {
    let s = setup();
    let cases: [(&str, Value, &str); 8] = [
        ("claim_job", json!({}), "`context.worker_id`"),
        ("complete_job", json!({"job_id": null}), "`context.job_id`"),
        ("fail_job", json!({"job_id": ["x"]}), "`context.job_id`"),
        (
            "heartbeat",
            json!({"worker_id": "w", "heartbeat_metadata": 3}),
            "`context.heartbeat_metadata`",
        ),
        (
            "register_worker",
            json!({"capabilities": "gpu"}),
            "`context.capabilities`",
        ),
        (
            "list_stale_workers",
            json!({"stale_threshold_seconds": -1}),
            "`context.stale_threshold_seconds`",
        ),
        ("reap_worker", json!({}), "`context.worker`"),
        (
            "calculate_spawn",
            json!({"max_workers": "many"}),
            "`context.max_workers`",
        ),
    ];
    for (action, value, key) in cases {
        let mut ctx = context(value);
        let error = s
            .hooks
            .on_action(action, &mut ctx)
            .await
            .expect_err(action)
            .to_string();
        assert!(
            error.contains(action) && error.contains(key),
            "{action}: {error}"
        );
    }
    // Unknown items and workers are backend errors that say what was missing.
    let mut ctx = context(json!({"job_id": "nope"}));
    let error = s
        .hooks
        .on_action("complete_job", &mut ctx)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("nope"), "{error}");
}

#[tokio::test]
async fn other_actions_are_left_to_other_hooks() {
    let s = setup();
    let mut ctx = context(json!({"x": 1}));
    let handled = s.hooks.on_action("summarize", &mut ctx).await.unwrap();
    assert!(!handled);
    assert_eq!(ctx.as_map().len(), 1, "the context is untouched");
    assert_eq!(DistributedWorkerHooks::actions().len(), 12);
}

/// The actions drive a worker machine end to end, composed with a hook of the user's own.
#[tokio::test]
async fn a_worker_machine_drains_the_pool() {
    use flatmachines_engine::{Machine, Runtime};

    let s = setup();
    for n in 1..=5 {
        s.work
            .pool("jobs")
            .push(json!({"n": n}), PushOptions::default())
            .await
            .unwrap();
    }
    #[derive(Debug)]
    struct Square;
    #[async_trait::async_trait]
    impl MachineHooks for Square {
        async fn on_action(
            &self,
            action: &str,
            context: &mut Context,
        ) -> Result<bool, flatmachines_core::hooks::HookError> {
            if action != "square" {
                return Ok(false);
            }
            let n = context.as_map()["job"]["n"].as_i64().unwrap_or_default();
            context.make_mut().insert("result".into(), json!(n * n));
            Ok(true)
        }
    }
    let yaml = r#"
spec: flatmachine
spec_version: "1.0.0"
data:
  name: worker
  context:
    pool_id: jobs
    worker_id: w-yaml
  states:
    start: {type: initial, action: register_worker, transitions: [{to: claim}]}
    claim:
      action: claim_job
      transitions:
        - {condition: "context.job_id == None", to: stop}
        - {to: work}
    work: {action: square, transitions: [{to: complete}]}
    complete: {action: complete_job, transitions: [{to: claim}]}
    stop: {action: deregister_worker, transitions: [{to: done}]}
    done: {type: final, output: {worker: "{{ context.worker_id }}"}}
"#;
    let machine = Machine::from_yaml(yaml, ".").expect("the machine loads");
    let hooks = flatmachines_engine::hooks::CompositeHooks::new(vec![
        Arc::new(s.hooks.clone()) as Arc<dyn MachineHooks>,
        Arc::new(Square),
    ]);
    let runner = Runtime::builder()
        .hooks(Arc::new(hooks))
        .build()
        .prepare(&machine)
        .expect("prepares");
    let outcome = runner
        .run(Default::default(), Default::default())
        .await
        .expect("runs");
    assert_eq!(outcome.output, json!({"worker": "w-yaml"}));
    let counts = s.work.pool("jobs").counts().await.unwrap();
    assert_eq!((counts.done, counts.pending, counts.claimed), (5, 0, 0));
    assert_eq!(
        s.registration.get("w-yaml").await.unwrap().unwrap().status,
        status::TERMINATED
    );
}
