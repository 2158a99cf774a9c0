//! The engine workloads: the side-by-side step loop on each checkpoint store, the `foreach`
//! fan-out, and machines parked mid-run (for their memory).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flatmachines::backends::open_store;
use flatmachines::{AgentResult, FnAgent, JsonMap, Machine, RunOptions, RunStatus, Runtime};
use serde_json::{Value, json};

use crate::{Result, memory_kib};

/// The shared YAML workloads (`bench/` at the workspace root).
pub(crate) fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench")
}

fn load(name: &str) -> Result<Machine> {
    let path = bench_dir().join(name);
    Machine::from_file(&path).map_err(|e| format!("cannot load {}: {e}", path.display()))
}

/// The loop's input: a target that never matches and the 50-key payload.
pub(crate) fn loop_input() -> JsonMap {
    let payload: JsonMap = (0..50)
        .map(|i| (format!("k{i}"), Value::String("v".repeat(20))))
        .collect();
    let mut input = JsonMap::new();
    input.insert("target".into(), json!("x"));
    input.insert("payload".into(), Value::Object(payload));
    input
}

/// The server URL of a family from its test variable (as the divan benches read it), else
/// the local default.
fn server_url(env: &str, default: &str) -> String {
    std::env::var(env)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A random suffix for namespaces and schemas.
pub(crate) fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A store URL of `kind` that nothing else uses: a fresh directory (kept alive by the returned
/// guard), a Redis namespace or a PostgreSQL schema of its own. [`cleanup`] removes the last two.
pub(crate) fn scratch_url(kind: &str) -> Result<(String, Option<tempfile::TempDir>)> {
    let temp = || tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"));
    match kind {
        "file" => {
            let dir = temp()?;
            Ok((format!("file://{}", dir.path().display()), Some(dir)))
        }
        "sqlite" => {
            let dir = temp()?;
            let url = format!("sqlite://{}", dir.path().join("bench.sqlite").display());
            Ok((url, Some(dir)))
        }
        "redis" => {
            let base = server_url(
                "FLATMACHINES_TEST_REDIS_URL",
                flatmachines_redis::DEFAULT_URL,
            );
            Ok((format!("{base}?namespace=fmbench-{}", unique()), None))
        }
        "postgres" => {
            let base = server_url(
                "FLATMACHINES_TEST_POSTGRES_URL",
                flatmachines_postgres::DEFAULT_URL,
            );
            Ok((format!("{base}?schema=fmbench_{}", unique()), None))
        }
        other => Err(format!(
            "unknown store kind `{other}` (expected none, memory, file, sqlite, redis or postgres)"
        )),
    }
}

/// Removes what a run left under `url`: a Redis namespace's keys or a PostgreSQL schema.
/// Other stores live in temporary directories and need nothing.
pub(crate) async fn cleanup(url: &str) -> Result<Value> {
    if url.starts_with("redis://") {
        let client = flatmachines_redis::RedisClient::open(url)
            .map_err(|e| format!("cannot open {url}: {e}"))?;
        let removed = client
            .purge()
            .await
            .map_err(|e| format!("cannot purge {url}: {e}"))?;
        return Ok(json!({"workload": "cleanup", "store": url, "removed_keys": removed}));
    }
    if url.starts_with("postgres://") {
        let store = flatmachines_postgres::PostgresStore::connect_url(url)
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        store
            .drop_schema()
            .await
            .map_err(|e| format!("cannot drop the schema of {url}: {e}"))?;
        return Ok(json!({"workload": "cleanup", "store": url, "dropped_schema": true}));
    }
    Ok(json!({"workload": "cleanup", "store": url}))
}

/// The step loop for `steps` steps, `samples` times, checkpointing to a store of `kind`.
pub(crate) async fn step_loop(kind: &str, steps: u64, samples: u64) -> Result<Value> {
    let input = loop_input();
    let options = RunOptions {
        max_steps: Some(steps),
        ..RunOptions::default()
    };
    let (url, _dir) = match kind {
        "none" | "memory" => (None, None),
        other => {
            let (url, dir) = scratch_url(other)?;
            (Some(url), dir)
        }
    };
    let machine = match kind {
        "none" => {
            let path = bench_dir().join("loop.yml");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            // Same machine, checkpoints off: what the engine costs on its own.
            let text = text.replace(
                "  name: loop-bench\n",
                "  name: loop-bench\n  persistence: {enabled: false}\n",
            );
            Machine::from_yaml(&text, bench_dir()).map_err(|e| e.to_string())?
        }
        "memory" => load("loop.yml")?,
        "file" => load("loop_local.yml")?,
        other => load(&format!("loop_{other}.yml"))?,
    };
    let store = match &url {
        Some(url) => Some(open_store(url).map_err(|e| format!("cannot open {url}: {e}"))?),
        None => None,
    };
    let mut seconds = Vec::new();
    let mut failure = None;
    for _ in 0..samples {
        // A fresh runtime per sample, so in-memory checkpoints do not pile up.
        let mut builder = Runtime::builder();
        if let Some(store) = &store {
            builder = builder
                .persistence(Arc::clone(&store.persistence))
                .lock(Arc::clone(&store.lock));
        }
        let runner = builder
            .build()
            .prepare(&machine)
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let outcome = runner.run(input.clone(), options.clone()).await;
        let elapsed = started.elapsed();
        match outcome {
            Ok(outcome) if matches!(outcome.status, RunStatus::StepLimit { .. }) => {
                seconds.push(elapsed.as_secs_f64());
            }
            Ok(outcome) => {
                failure = Some(format!("the loop ended early: {:?}", outcome.status));
                break;
            }
            Err(e) => {
                failure = Some(format!("the loop failed: {e}"));
                break;
            }
        }
    }
    drop(store);
    if let Some(url) = &url {
        cleanup(url).await?;
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok(json!({
        "workload": "loop",
        "store": kind,
        "steps": steps,
        "samples_s": seconds,
        "peak_rss_kib": memory_kib().0,
    }))
}

/// `bench/fanout.yml` over `children` children, `samples` times; the peak RSS is this
/// process's, so run one size per process.
pub(crate) async fn fanout(children: u64, samples: u64) -> Result<Value> {
    let machine = load("fanout.yml")?;
    let mut input = JsonMap::new();
    input.insert("xs".into(), json!((0..children).collect::<Vec<_>>()));
    let mut seconds = Vec::new();
    for _ in 0..samples {
        let runner = Runtime::default()
            .prepare(&machine)
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let outcome = runner
            .run(input.clone(), RunOptions::default())
            .await
            .map_err(|e| format!("the fan-out failed: {e}"))?;
        seconds.push(started.elapsed().as_secs_f64());
        if outcome.output["n"] != json!(children) {
            return Err(format!(
                "the fan-out returned {} results, expected {children}",
                outcome.output["n"]
            ));
        }
    }
    Ok(json!({
        "workload": "fanout",
        "children": children,
        "samples_s": seconds,
        "peak_rss_kib": memory_kib().0,
    }))
}

/// A machine with the loop's context that stops inside an agent call.
const PARKED: &str = r#"spec: flatmachine
spec_version: "1.0.0"
data:
  name: parked
  agents: {park: {type: bench}}
  context:
    target: "{{ input.target }}"
    payload: "{{ input.payload }}"
  states:
    start:
      type: initial
      transitions: [{to: wait}]
    wait:
      agent: park
      input: {target: "{{ context.target }}"}
      output_to_context: {answer: "{{ output }}"}
      transitions: [{to: done}]
    done:
      type: final
      output: {answer: "{{ context.answer }}"}
"#;

/// Memory per machine parked mid-run: `machines` runs of [`PARKED`] are started on one
/// runtime and each stops in its `wait` state, inside an in-process agent that awaits a
/// release signal. The growth of the process's resident memory between before they start
/// and when all are parked, divided by their number, is what one parked machine holds (its
/// task, context, run state and the checkpoints written so far to the in-memory store).
pub(crate) async fn suspended(machines: u64) -> Result<Value> {
    let parked = Arc::new(AtomicU64::new(0));
    let (release, released) = tokio::sync::watch::channel(false);
    let agent = {
        let parked = Arc::clone(&parked);
        FnAgent::new(move |input, _context| {
            let parked = Arc::clone(&parked);
            let mut released = released.clone();
            async move {
                parked.fetch_add(1, Ordering::SeqCst);
                // An error means the sender is gone: the bench is over either way.
                let _ = released.wait_for(|go| *go).await;
                Ok(AgentResult::with_output(input))
            }
        })
        .shared()
    };
    let machine = Machine::from_yaml(PARKED, bench_dir()).map_err(|e| e.to_string())?;
    let runtime = Runtime::builder().agent("park", agent).build();
    let runner = Arc::new(runtime.prepare(&machine).map_err(|e| e.to_string())?);
    let input = loop_input();
    // Warm up allocator arenas and lazily built state with a few complete runs first.
    let _ = release.send(true);
    for _ in 0..20 {
        runner
            .run(input.clone(), RunOptions::default())
            .await
            .map_err(|e| format!("a warm-up run failed: {e}"))?;
    }
    let _ = release.send(false);
    parked.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = memory_kib()
        .1
        .ok_or("no /proc/self/status: cannot read RSS")?;
    let mut tasks = Vec::new();
    for _ in 0..machines {
        let runner = Arc::clone(&runner);
        let input = input.clone();
        tasks.push(tokio::spawn(async move {
            runner.run(input, RunOptions::default()).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while parked.load(Ordering::SeqCst) < machines {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {machines} machines parked within 120 s",
                parked.load(Ordering::SeqCst)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let during = memory_kib()
        .1
        .ok_or("no /proc/self/status: cannot read RSS")?;
    let _ = release.send(true);
    for task in tasks {
        task.await
            .map_err(|e| format!("a parked run panicked: {e}"))?
            .map_err(|e| format!("a parked run failed: {e}"))?;
    }
    Ok(json!({
        "workload": "suspended",
        "machines": machines,
        "rss_before_kib": before,
        "rss_parked_kib": during,
        "per_machine_bytes": (during.saturating_sub(before) as f64 * 1024.0) / machines as f64,
        "peak_rss_kib": memory_kib().0,
    }))
}
