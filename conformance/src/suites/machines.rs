//! The machine-level suite: a corpus of deterministic YAML machines (no agents) run on the
//! persistence backend under test, with outputs, step counts and checkpoint keys compared
//! with a run on the in-memory backend, and outputs pinned in each file.
//!
//! The machines live in `conformance/machines/` and are compiled into the crate, each with
//! its child machines inline, so the suite needs no files at run time. Each file's
//! `metadata.conformance` holds its `input` and `expect`ed output.

use std::sync::Arc;
use std::time::Duration;

use flatmachines_core::{JsonMap, PersistenceBackend};
use flatmachines_engine::{
    Machine, RunError, RunOptions, RunOutcome, RunStatus, Runner, Runtime, load_latest,
};
use flatmachines_memory::MemoryBackend;
use serde_json::Value;

use crate::PersistenceFactory;
use crate::case::{Case, CaseResult, Context, Env, bounded, case, ensure, ensure_eq};

const SUITE: &str = "machines";

type E<'a> = Env<'a, PersistenceFactory>;
type Store = Arc<dyn PersistenceBackend>;

const LOOP: &str = include_str!("../../machines/loop.yml");
const PARALLEL: &str = include_str!("../../machines/parallel.yml");
const FOREACH: &str = include_str!("../../machines/foreach.yml");
const LAUNCH: &str = include_str!("../../machines/launch.yml");
const ON_ERROR: &str = include_str!("../../machines/on_error.yml");

/// The longest one run of a corpus machine may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);

static CASES: &[Case<PersistenceFactory>] = &[
    case!(
        "loop",
        "machines/loop.yml: a loop over a child machine",
        [],
        loop_machine
    ),
    case!(
        "parallel",
        "machines/parallel.yml: `machine: [a, b, c]` side by side",
        [],
        parallel
    ),
    case!(
        "foreach",
        "machines/foreach.yml: `foreach` as a list and keyed",
        [],
        foreach
    ),
    case!(
        "launch",
        "machines/launch.yml: fire-and-forget `launch` of two children",
        [],
        launch
    ),
    case!(
        "on_error",
        "machines/on_error.yml: `on_error` routing and a `settled` foreach with failing children",
        [],
        on_error
    ),
    case!(
        "resume_after_step_limit",
        "machines/loop.yml stopped by max_steps resumes to the uninterrupted output; resuming a finished run changes nothing",
        [],
        resume_after_step_limit
    ),
    case!(
        "resume_after_interruption",
        "machines/loop.yml dropped mid-run again and again resumes to the uninterrupted output",
        [],
        resume_after_interruption
    ),
    case!(
        "execution_id_reuse",
        "a fresh run on an id that has checkpoints is refused and changes nothing; with `replace` it deletes them and starts afresh",
        [],
        execution_id_reuse
    ),
];

/// The cases of the machine-level suite, in order.
pub fn cases() -> &'static [Case<PersistenceFactory>] {
    CASES
}

async fn loop_machine(env: E<'_>) -> CaseResult {
    compare_with_memory(&env, LOOP).await
}

async fn parallel(env: E<'_>) -> CaseResult {
    compare_with_memory(&env, PARALLEL).await
}

async fn foreach(env: E<'_>) -> CaseResult {
    compare_with_memory(&env, FOREACH).await
}

async fn launch(env: E<'_>) -> CaseResult {
    compare_with_memory(&env, LAUNCH).await
}

async fn on_error(env: E<'_>) -> CaseResult {
    compare_with_memory(&env, ON_ERROR).await
}

/// A corpus machine with its test input and pinned output.
struct Spec {
    machine: Machine,
    input: JsonMap,
    expect: Value,
}

fn load(yaml: &str) -> Result<Spec, String> {
    // Children are inline, so the base directory is never used.
    let machine = Machine::from_yaml(yaml, ".").map_err(|e| format!("corpus machine: {e}"))?;
    let test = machine
        .config()
        .metadata
        .get("conformance")
        .cloned()
        .unwrap_or(Value::Null);
    let input = match test.get("input") {
        Some(Value::Object(map)) => map.clone(),
        _ => JsonMap::new(),
    };
    let expect = test.get("expect").cloned().unwrap_or(Value::Null);
    Ok(Spec {
        machine,
        input,
        expect,
    })
}

fn runner(machine: &Machine, store: Store) -> Result<Runner, String> {
    Runtime::builder()
        .persistence(store)
        .build()
        .prepare(machine)
        .map_err(|e| format!("prepare the machine: {e}"))
}

fn options(id: &str, max_steps: Option<u64>) -> RunOptions {
    RunOptions {
        execution_id: Some(id.to_owned()),
        max_steps,
        ..RunOptions::default()
    }
}

async fn run(
    runner: &Runner,
    input: &JsonMap,
    id: &str,
    max_steps: Option<u64>,
) -> Result<RunOutcome, String> {
    let what = format!("run {id}");
    bounded(
        &what,
        RUN_LIMIT,
        runner.run(input.clone(), options(id, max_steps)),
    )
    .await?
    .ctx(&what)
}

async fn resume(runner: &Runner, id: &str) -> Result<RunOutcome, String> {
    let what = format!("resume {id}");
    bounded(&what, RUN_LIMIT, runner.resume(id, None))
        .await?
        .ctx(&what)
}

async fn keys(store: &Store) -> Result<Vec<String>, String> {
    store.list("").await.ctx("list the checkpoints")
}

/// The uninterrupted run on a fresh in-memory store: the reference outcome.
async fn memory_run(spec: &Spec, id: &str) -> Result<(RunOutcome, Store), String> {
    let memory: Store = Arc::new(MemoryBackend::new());
    let outcome = run(
        &runner(&spec.machine, Arc::clone(&memory))?,
        &spec.input,
        id,
        None,
    )
    .await?;
    ensure_eq!(
        outcome.status,
        RunStatus::Completed,
        "the in-memory run's status"
    );
    if !spec.expect.is_null() {
        ensure_eq!(
            outcome.output,
            spec.expect,
            "the in-memory run's output against the corpus file"
        );
    }
    Ok((outcome, memory))
}

async fn compare_with_memory(env: &E<'_>, yaml: &str) -> CaseResult {
    let spec = load(yaml)?;
    let id = format!("{}-run", env.case);
    let (expected, memory) = memory_run(&spec, &id).await?;
    let store = env.fresh().await?;
    let outcome = run(
        &runner(&spec.machine, Arc::clone(&store))?,
        &spec.input,
        &id,
        None,
    )
    .await?;
    ensure_eq!(
        outcome.output,
        expected.output,
        "output on this backend against the in-memory run"
    );
    ensure_eq!(
        (outcome.status, outcome.steps),
        (expected.status, expected.steps),
        "status and steps"
    );
    // Child ids derive from the parent's, so both stores must hold exactly the same keys.
    ensure_eq!(
        keys(&store).await?,
        keys(&memory).await?,
        "checkpoint keys against the in-memory run"
    );
    let latest = load_latest(&*store, &id)
        .await
        .ctx("load the latest checkpoint")?;
    ensure!(
        latest.is_some(),
        "no latest checkpoint of {id} on this backend"
    );
    Ok(())
}

/// The loop stopped at a step limit of 3 under `id` on a fresh store, and what its
/// uninterrupted run gives.
struct Stopped {
    spec: Spec,
    expected: RunOutcome,
    store: Store,
    runner: Runner,
}

async fn stopped_loop(env: &E<'_>, id: &str) -> Result<Stopped, String> {
    let spec = load(LOOP)?;
    let (expected, _) = memory_run(&spec, id).await?;
    let store = env.fresh().await?;
    let runner = runner(&spec.machine, Arc::clone(&store))?;
    let stopped = run(&runner, &spec.input, id, Some(3)).await?;
    ensure!(
        matches!(stopped.status, RunStatus::StepLimit { limit: 3, .. }),
        "a run with max_steps 3 ended {:?}",
        stopped.status
    );
    Ok(Stopped {
        spec,
        expected,
        store,
        runner,
    })
}

async fn execution_id_reuse(env: E<'_>) -> CaseResult {
    let id = "reused";
    let Stopped {
        spec,
        expected,
        store,
        runner,
    } = stopped_loop(&env, id).await?;
    let before = keys(&store).await?;
    let what = format!("a second fresh run of {id}");
    match bounded(
        &what,
        RUN_LIMIT,
        runner.run(spec.input.clone(), options(id, None)),
    )
    .await?
    {
        Err(RunError::ExecutionExists {
            execution_id,
            count,
            ..
        }) => {
            ensure_eq!(execution_id, id, "the id the refusal names");
            ensure!(count > 0, "the refusal counts no checkpoints");
        }
        other => return Err(format!("{what}: expected ExecutionExists, got {other:?}")),
    }
    ensure_eq!(keys(&store).await?, before, "keys after a refused run");
    let options = RunOptions {
        replace: true,
        ..options(id, None)
    };
    let what = format!("a fresh run of {id} with replace");
    let replaced = bounded(&what, RUN_LIMIT, runner.run(spec.input.clone(), options))
        .await?
        .ctx(&what)?;
    ensure_eq!(
        replaced.status,
        RunStatus::Completed,
        "status after replace"
    );
    ensure_eq!(replaced.output, expected.output, "output after replace");
    ensure_eq!(
        replaced.steps,
        expected.steps,
        "steps after replace: the old run's steps must not count"
    );
    // The stopped run's snapshots are gone: resuming the replaced run returns its output.
    let again = resume(&runner, id).await?;
    ensure_eq!(again.output, expected.output, "resuming the replaced run");
    Ok(())
}

async fn resume_after_step_limit(env: E<'_>) -> CaseResult {
    let id = "stepped";
    let Stopped {
        expected,
        store,
        runner,
        ..
    } = stopped_loop(&env, id).await?;
    let resumed = resume(&runner, id).await?;
    ensure_eq!(resumed.status, RunStatus::Completed, "status after resume");
    ensure_eq!(
        resumed.output,
        expected.output,
        "output after resume against an uninterrupted run"
    );
    ensure_eq!(
        resumed.steps,
        expected.steps,
        "steps after resume against an uninterrupted run"
    );
    let before = keys(&store).await?;
    let again = resume(&runner, id).await?;
    ensure_eq!(
        again.output,
        expected.output,
        "resuming a finished run returns its output"
    );
    ensure_eq!(
        keys(&store).await?,
        before,
        "resuming a finished run writes nothing"
    );
    Ok(())
}

async fn resume_after_interruption(env: E<'_>) -> CaseResult {
    let mut spec = load(LOOP)?;
    spec.input.insert("limit".into(), Value::from(30));
    spec.expect = Value::Null;
    let id = "interrupted";
    let (expected, _) = memory_run(&spec, id).await?;
    let store = env.fresh().await?;
    let runner = runner(&spec.machine, Arc::clone(&store))?;
    let latest = flatmachines_engine::latest_key(id);
    let mut started = false;
    let mut cut_short = 0;
    // Budgets grow so that every backend, however slow its writes, gets somewhere; the
    // sequence is fixed so a failure repeats.
    for attempt in 0..40_u64 {
        let budget = Duration::from_micros(200 + attempt * attempt * 40 + (attempt * 7919) % 700);
        let attempt = if started {
            tokio::time::timeout(budget, runner.resume(id, None)).await
        } else {
            // An attempt cut short before the pointer may have left uncommitted snapshots:
            // starting over replaces them, as `run --replace` does.
            let options = RunOptions {
                replace: true,
                ..options(id, None)
            };
            tokio::time::timeout(budget, runner.run(spec.input.clone(), options)).await
        };
        match attempt {
            Ok(Ok(outcome)) => {
                ensure_eq!(
                    outcome.output,
                    expected.output,
                    "output of an attempt that finished"
                );
                ensure!(cut_short > 0, "suite problem: no attempt was cut short");
                return Ok(());
            }
            // Cut short before its first checkpoint: the run starts over.
            Ok(Err(RunError::Resume { .. })) if !started => {}
            Ok(Err(e)) => return Err(format!("attempt after {cut_short} interruptions: {e}")),
            Err(_) => cut_short += 1,
        }
        // The pointer commits a checkpoint: until one exists the execution starts over.
        started = store.load(&latest).await.ctx("load the pointer")?.is_some();
    }
    let outcome = if started {
        resume(&runner, id).await?
    } else {
        let options = RunOptions {
            replace: true,
            ..options(id, None)
        };
        let what = format!("run {id} afresh");
        bounded(&what, RUN_LIMIT, runner.run(spec.input.clone(), options))
            .await?
            .ctx(&what)?
    };
    ensure_eq!(
        outcome.output,
        expected.output,
        "output after {cut_short} interruptions against an uninterrupted run"
    );
    Ok(())
}
