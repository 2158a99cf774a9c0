//! `cargo xtask bench [--quick]`: runs the workloads of `bench/` through our in-process
//! harness (`fm-bench`, crate `crates/bench`) and through the CLI as whole processes, the
//! same workloads on the Python reference and LangGraph when a virtualenv with them can be
//! made, the bare-server baselines (pgbench, redis-benchmark), and writes
//! `docs/benchmarks.md` with its plots under `docs/benchmarks/`.
//!
//! Everything is bounded: each process has a time limit, sizes are fixed per mode, traffic goes
//! to 127.0.0.1 only, and what a workload creates (temporary directories, a Redis namespace, a
//! PostgreSQL schema) is removed after it.

mod external;
mod plot;
mod report;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::workspace_root;

/// Everything one run measured. Each series holds samples in the unit its name implies
/// (see [`report`]); notes say what was skipped and why.
#[derive(Debug, Default, Clone)]
pub(crate) struct Results {
    /// Samples per series, e.g. `loop.memory` → µs per step of each sample.
    pub(crate) series: BTreeMap<String, Vec<f64>>,
    /// Things the reader must know: missing tools, skipped workloads, failures.
    pub(crate) notes: Vec<String>,
    /// Profile summaries of missed targets: (target, text).
    pub(crate) profiles: Vec<(String, String)>,
    /// When, where and how.
    pub(crate) meta: Meta,
}

/// The run's circumstances.
#[derive(Debug, Default, Clone)]
pub(crate) struct Meta {
    /// UTC date and time the run started.
    pub(crate) date: String,
    /// Logical CPUs.
    pub(crate) cores: usize,
    /// The CPU model, from /proc/cpuinfo.
    pub(crate) cpu: String,
    /// The load average when the run started and ended.
    pub(crate) load: String,
    /// `--quick` or the full run.
    pub(crate) quick: bool,
    /// Wall time of the whole command, seconds.
    pub(crate) elapsed_s: f64,
    /// Versions of the other implementations and servers.
    pub(crate) versions: Vec<(String, String)>,
}

impl Results {
    fn push(&mut self, key: &str, value: f64) {
        self.series.entry(key.to_owned()).or_default().push(value);
    }

    fn extend(&mut self, key: &str, values: impl IntoIterator<Item = f64>) {
        self.series
            .entry(key.to_owned())
            .or_default()
            .extend(values);
    }

    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("xtask: bench: {note}");
        self.notes.push(note);
    }
}

/// Sizes of one mode: quick keeps the whole command under three minutes on two cores.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) quick: bool,
    /// Samples of the cheap in-process workloads.
    samples: u64,
    /// Steps of the in-memory and no-persistence loops.
    steps: u64,
    /// Steps of the loops on disk or a server.
    durable_steps: u64,
    /// Steps of the PostgreSQL and local-file loops (a WAL flush or fsyncs per checkpoint).
    slow_steps: u64,
    /// Claims per sample on Redis and SQLite.
    claim_items: u64,
    /// Claims per sample on PostgreSQL (a commit each).
    pg_claim_items: u64,
    /// Agent calls per sample.
    agent_calls: u64,
    /// Tool calls per tool-loop run, and runs per sample.
    tool_calls: u64,
    tool_runs: u64,
    /// Machines parked at once.
    parked: u64,
    /// Processes per whole-process workload.
    processes: u64,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                samples: 9,
                steps: 1000,
                durable_steps: 200,
                slow_steps: 40,
                claim_items: 500,
                pg_claim_items: 300,
                agent_calls: 200,
                tool_calls: 20,
                tool_runs: 10,
                parked: 2000,
                processes: 3,
            }
        } else {
            Plan {
                quick,
                samples: 21,
                // As many as the divan bench: more would grow the in-memory store, and the
                // page faults with it, into the per-step figure.
                steps: 1000,
                durable_steps: 500,
                slow_steps: 150,
                claim_items: 2000,
                pg_claim_items: 1000,
                agent_calls: 1000,
                tool_calls: 20,
                tool_runs: 50,
                parked: 10_000,
                processes: 5,
            }
        }
    }
}

const USAGE: &str = "usage: cargo xtask bench [--quick]";

/// `cargo xtask bench [--quick]`.
pub(crate) fn bench(args: &[String]) -> Result<(), String> {
    let mut quick = false;
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            other => return Err(format!("unknown bench option `{other}`\n{USAGE}")),
        }
    }
    let started = Instant::now();
    let plan = Plan::new(quick);
    let mut results = Results {
        meta: meta(quick),
        ..Results::default()
    };
    let root = workspace_root();
    build()?;
    let bins = Bins::find()?;
    let scratch = Scratch::new()?;

    ours(&plan, &bins, &mut results);
    cli(&plan, &bins, &scratch, &mut results);
    external::servers(&plan, &bins, &root, &mut results);
    match external::Python::prepare(&mut results) {
        Some(python) => python.run(&plan, &bins, &root, &scratch, &mut results),
        None => results.note("the Python reference and LangGraph were not run (no virtualenv)"),
    }
    external::tools_421(&plan, &bins, &root, &mut results);
    external::profile_misses(&plan, &bins, &mut results);

    results.meta.load = format!("{} → {}", results.meta.load, load_average());
    results.meta.elapsed_s = started.elapsed().as_secs_f64();
    let docs = root.join("docs");
    let svg_dir = docs.join("benchmarks");
    std::fs::create_dir_all(&svg_dir)
        .map_err(|e| format!("cannot create {}: {e}", svg_dir.display()))?;
    plot::per_step(&results, &svg_dir.join("per_step.svg"))?;
    plot::fanout(&results, &svg_dir.join("fanout.svg"))?;
    let doc = docs.join("benchmarks.md");
    std::fs::write(&doc, report::markdown(&results))
        .map_err(|e| format!("cannot write {}: {e}", doc.display()))?;
    report::update_readme(&root.join("README.md"), &results)?;
    eprintln!("xtask: bench: wrote {}", doc.display());
    println!(
        "bench ({}) finished in {:.1} s",
        if quick { "--quick" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn meta(quick: bool) -> Meta {
    let date = output_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .unwrap_or_else(|| "unknown date".to_owned());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    Meta {
        date,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        cpu,
        load: load_average(),
        quick,
        ..Meta::default()
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

/// The trimmed stdout of a command that succeeded.
fn output_of(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Builds the CLI and the harness in release in one invocation, so they share the facade.
///
/// `cargo run` gives xtask the package variables of xtask (`CARGO_PKG_NAME`, …); build scripts
/// that watch them (ring's) would rebuild when they differ from a plain `cargo build`, so the
/// nested cargo runs without them and shares its artifacts with one started by hand.
fn build() -> Result<(), String> {
    let args = [
        "build",
        "--release",
        "-p",
        "flatmachines-cli",
        "-p",
        "flatmachines-bench",
    ];
    eprintln!("xtask: bench build: cargo {}", args.join(" "));
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args).current_dir(workspace_root());
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        let of_xtask = name.starts_with("CARGO_PKG_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if of_xtask {
            command.env_remove(&key);
        }
    }
    let status = command
        .status()
        .map_err(|e| format!("bench build: cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("bench build failed ({status})"))
    }
}

/// The release binaries.
#[derive(Debug)]
pub(crate) struct Bins {
    pub(crate) cli: PathBuf,
    pub(crate) harness: PathBuf,
}

impl Bins {
    fn find() -> Result<Bins, String> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        let release = target.join("release");
        let bins = Bins {
            cli: release.join("flatmachines"),
            harness: release.join("fm-bench"),
        };
        for bin in [&bins.cli, &bins.harness] {
            if !bin.exists() {
                return Err(format!("{} was not built", bin.display()));
            }
        }
        Ok(bins)
    }
}

/// A temporary directory for the run, removed when dropped.
#[derive(Debug)]
pub(crate) struct Scratch {
    pub(crate) dir: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("fmbench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Scratch { dir })
    }

    /// A fresh, empty subdirectory.
    pub(crate) fn fresh(&self, name: &str) -> Result<PathBuf, String> {
        let dir = self.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a bounded process run gave back.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) wall: Duration,
}

/// Runs `command` with its output captured, killing it after `limit`.
pub(crate) fn run_bounded(command: &mut Command, limit: Duration) -> Result<Finished, String> {
    let name = format!("{:?}", command.get_program());
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name} ran over its {} s limit", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("cannot wait for {name}: {e}")),
        }
    };
    let wall = started.elapsed();
    Ok(Finished {
        success: status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        wall,
    })
}

/// Runs the harness with `args` and parses the JSON line it prints.
pub(crate) fn harness(bins: &Bins, args: &[&str], limit: Duration) -> Result<Value, String> {
    eprintln!("xtask: bench: fm-bench {}", args.join(" "));
    let done = run_bounded(
        Command::new(&bins.harness)
            .args(args)
            .current_dir(workspace_root()),
        limit,
    )?;
    if !done.success {
        return Err(format!(
            "fm-bench {} failed: {}",
            args.join(" "),
            done.stderr.trim()
        ));
    }
    serde_json::from_str(done.stdout.trim())
        .map_err(|e| format!("fm-bench {} printed no JSON: {e}", args.join(" ")))
}

/// The `samples_s` array of a harness answer.
fn samples(value: &Value, key: &str) -> Vec<f64> {
    value[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Our in-process workloads.
fn ours(plan: &Plan, bins: &Bins, results: &mut Results) {
    let limit = Duration::from_secs(if plan.quick { 60 } else { 300 });
    let n = |v: u64| v.to_string();
    let loops = [
        ("none", plan.steps, plan.samples),
        ("memory", plan.steps, plan.samples),
        ("file", plan.slow_steps, 5),
        ("sqlite", plan.durable_steps, 5),
        ("redis", plan.durable_steps, 5),
        ("postgres", plan.slow_steps, 5),
    ];
    for (store, steps, count) in loops {
        let args = [
            "loop",
            "--store",
            store,
            "--steps",
            &n(steps),
            "--samples",
            &n(count),
        ];
        match harness(bins, &args, limit) {
            Ok(v) => results.extend(
                &format!("loop.{store}"),
                samples(&v, "samples_s")
                    .into_iter()
                    .map(|s| s * 1e6 / steps as f64),
            ),
            Err(e) => results.note(format!("loop on `{store}` not measured: {e}")),
        }
    }
    for children in [100u64, 1000, 10_000] {
        let count = match (plan.quick, children) {
            (true, 10_000) => 2,
            (true, _) => 3,
            (false, 10_000) => 5,
            (false, _) => plan.samples,
        };
        let args = ["fanout", "--children", &n(children), "--samples", &n(count)];
        match harness(bins, &args, limit) {
            Ok(v) => {
                let s = samples(&v, "samples_s");
                results.extend(
                    &format!("fanout.{children}"),
                    s.iter().map(|s| s * 1e6 / children as f64),
                );
                if let Some(kib) = v["peak_rss_kib"].as_f64() {
                    results.push(&format!("fanout.{children}.rss_mib"), kib / 1024.0);
                }
            }
            Err(e) => results.note(format!("fan-out of {children} not measured: {e}")),
        }
    }
    let claim_samples = if plan.quick { 5 } else { 7 };
    for backend in ["sqlite", "redis", "postgres"] {
        let items = if backend == "postgres" {
            plan.pg_claim_items
        } else {
            plan.claim_items
        };
        for workers in [1u64, 4] {
            for raw in [false, true] {
                if raw && backend == "sqlite" {
                    continue;
                }
                let mut args = vec![
                    "claims".to_owned(),
                    "--backend".to_owned(),
                    backend.to_owned(),
                    "--workers".to_owned(),
                    n(workers),
                    "--items".to_owned(),
                    n(items),
                    "--samples".to_owned(),
                    n(claim_samples),
                ];
                if raw {
                    args.push("--raw".to_owned());
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let key = format!("{}.{backend}.{workers}", if raw { "raw" } else { "claims" });
                match harness(bins, &args, limit) {
                    Ok(v) => results.extend(
                        &key,
                        samples(&v, "samples_s")
                            .into_iter()
                            .map(|s| items as f64 / s),
                    ),
                    Err(e) => results.note(format!("{key} not measured: {e}")),
                }
            }
        }
    }
    let calls = plan.agent_calls;
    match harness(
        bins,
        &["agent", "--calls", &n(calls), "--samples", &n(5)],
        limit,
    ) {
        Ok(v) => {
            let per_call = |key: &str| {
                samples(&v, key)
                    .into_iter()
                    .map(|s| s * 1e6 / calls as f64)
                    .collect::<Vec<_>>()
            };
            results.extend("agent.engine", per_call("samples_s"));
            results.extend("agent.wall", per_call("wall_samples_s"));
            results.extend("agent.bare", per_call("bare_http_samples_s"));
        }
        Err(e) => results.note(format!("agent-call overhead not measured: {e}")),
    }
    let (tool_calls, tool_runs) = (plan.tool_calls, plan.tool_runs);
    match harness(
        bins,
        &[
            "tools",
            "--calls",
            &n(tool_calls),
            "--runs",
            &n(tool_runs),
            "--samples",
            &n(5),
        ],
        limit,
    ) {
        Ok(v) => {
            // Every series is shared out per tool call, the bare posts included: they are the
            // HTTP floor of the model turns those calls took (one each, and the final answer).
            let per_call = |key: &str| {
                samples(&v, key)
                    .into_iter()
                    .map(|s| s * 1e6 / (tool_calls * tool_runs) as f64)
                    .collect::<Vec<_>>()
            };
            results.extend("tools.engine", per_call("samples_s"));
            results.extend("tools.wall", per_call("wall_samples_s"));
            results.extend("tools.bare", per_call("bare_http_samples_s"));
        }
        Err(e) => results.note(format!("tool-call overhead not measured: {e}")),
    }
    for _ in 0..3 {
        match harness(bins, &["suspended", "--machines", &n(plan.parked)], limit) {
            Ok(v) => {
                if let Some(bytes) = v["per_machine_bytes"].as_f64() {
                    results.push("suspended.bytes", bytes);
                }
            }
            Err(e) => {
                results.note(format!("parked-machine memory not measured: {e}"));
                break;
            }
        }
    }
}

/// A loop input file (the 50-key payload), for whole-process runs.
pub(crate) fn loop_input_file(dir: &Path) -> Result<PathBuf, String> {
    let payload: serde_json::Map<String, Value> = (0..50)
        .map(|i| (format!("k{i}"), Value::String("v".repeat(20))))
        .collect();
    let input = serde_json::json!({"target": "x", "payload": payload});
    let path = dir.join("loop-input.json");
    std::fs::write(&path, input.to_string())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The same workloads through `flatmachines run`, one process per sample: the wall time
/// includes starting the process, loading the YAML and opening the store.
fn cli(plan: &Plan, bins: &Bins, scratch: &Scratch, results: &mut Results) {
    if let Err(e) = cli_runs(plan, bins, scratch, results) {
        results.note(format!("whole-process runs stopped: {e}"));
    }
}

fn cli_runs(
    plan: &Plan,
    bins: &Bins,
    scratch: &Scratch,
    results: &mut Results,
) -> Result<(), String> {
    let root = workspace_root();
    let bench = root.join("bench");
    let input = loop_input_file(&scratch.dir)?;
    let limit = Duration::from_secs(120);
    let loops = [
        ("memory", "loop.yml", plan.steps),
        ("file", "loop_local.yml", plan.slow_steps),
        ("sqlite", "loop_sqlite.yml", plan.durable_steps),
        ("redis", "loop_redis.yml", plan.durable_steps),
        ("postgres", "loop_postgres.yml", plan.slow_steps),
    ];
    for (kind, file, steps) in loops {
        for sample in 0..plan.processes {
            let store = match kind {
                "memory" => "memory://".to_owned(),
                "file" => format!(
                    "file://{}",
                    scratch.fresh(&format!("cli-file-{sample}"))?.display()
                ),
                "sqlite" => format!(
                    "sqlite://{}",
                    scratch
                        .fresh(&format!("cli-sqlite-{sample}"))?
                        .join("db.sqlite")
                        .display()
                ),
                "redis" => format!(
                    "redis://127.0.0.1:6379/0?namespace=fmbench-cli-{}",
                    unique()
                ),
                _ => format!(
                    "postgres://postgres@127.0.0.1:5432/test?schema=fmbench_cli_{}",
                    unique()
                ),
            };
            let done = run_bounded(
                Command::new(&bins.cli)
                    .arg("run")
                    .arg(bench.join(file))
                    .arg("--input-file")
                    .arg(&input)
                    .args(["--max-steps", &steps.to_string(), "--store", &store])
                    .current_dir(&scratch.dir),
                limit,
            );
            let shared = kind == "redis" || kind == "postgres";
            if let Err(e) = shared
                .then(|| harness(bins, &["cleanup", "--store", &store], limit))
                .transpose()
            {
                results.note(format!("cleanup of {store} failed: {e}"));
            }
            let done = done?;
            // The loop never ends on its own: the step limit stops it (exit 1, "step limit").
            if !done.stderr.contains("step limit") {
                return Err(format!(
                    "flatmachines run {file} did not stop at the step limit: {}",
                    done.stderr.trim()
                ));
            }
            results.push(
                &format!("cli.loop.{kind}"),
                done.wall.as_secs_f64() * 1e6 / steps as f64,
            );
        }
    }
    for children in [100u64, 1000, 10_000] {
        let xs: Vec<u64> = (0..children).collect();
        let path = scratch.dir.join(format!("fanout-{children}.json"));
        std::fs::write(&path, serde_json::json!({ "xs": xs }).to_string())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        for _ in 0..plan.processes {
            let (mut command, rss_file) = with_peak_rss(&bins.cli, &scratch.dir);
            command
                .arg("run")
                .arg(bench.join("fanout.yml"))
                .arg("--input-file")
                .arg(&path)
                .current_dir(&scratch.dir);
            let done = run_bounded(&mut command, limit)?;
            if !done.success {
                return Err(format!(
                    "flatmachines run fanout.yml failed: {}",
                    done.stderr.trim()
                ));
            }
            results.push(
                &format!("cli.fanout.{children}"),
                done.wall.as_secs_f64() * 1e6 / children as f64,
            );
            if let Some(mib) = read_peak_rss(rss_file.as_deref()) {
                results.push(&format!("cli.fanout.{children}.rss_mib"), mib);
            }
        }
    }
    Ok(())
}

/// A random suffix for namespaces and schemas, from the clock and the process id.
pub(crate) fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos % 0xffff_ffff)
}

/// `program` wrapped in GNU time (when installed) writing the peak RSS in KiB to a file.
pub(crate) fn with_peak_rss(program: &Path, dir: &Path) -> (Command, Option<PathBuf>) {
    let time = Path::new("/usr/bin/time");
    if time.exists() {
        let file = dir.join(format!("rss-{}", unique()));
        let mut command = Command::new(time);
        command
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&file)
            .arg(program);
        (command, Some(file))
    } else {
        (Command::new(program), None)
    }
}

/// The peak RSS in MiB GNU time wrote, and removes its file.
pub(crate) fn read_peak_rss(file: Option<&Path>) -> Option<f64> {
    let file = file?;
    let text = std::fs::read_to_string(file).ok();
    let _ = std::fs::remove_file(file);
    text?
        .lines()
        .rev()
        .find_map(|line| line.trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}
