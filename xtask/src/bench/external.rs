//! Everything that is not ours: the bare-server baselines (pgbench, redis-benchmark), the
//! Python reference and LangGraph in a cached virtualenv, and `perf` profiles of missed
//! targets.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{Bins, Plan, Results, Scratch, harness, output_of, run_bounded, unique};

/// Whether `program` is on the PATH.
fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// pgbench's bare claim (crates/backends/postgres/benches/pgbench_claim.sh) and
/// redis-benchmark, on the servers our backends used in the same run.
pub(super) fn servers(plan: &Plan, bins: &Bins, root: &Path, results: &mut Results) {
    if installed("pgbench") && installed("psql") {
        let script = root.join("crates/backends/postgres/benches/pgbench_claim.sh");
        let items = (plan.pg_claim_items * 2).to_string();
        for round in 0..2 {
            let done = run_bounded(
                Command::new("sh")
                    .arg(&script)
                    .env("PGBENCH_CLAIM_ITEMS", &items),
                Duration::from_secs(300),
            );
            match done {
                Ok(done) if done.success => {
                    for (clients, tps) in pgbench_tps(&done.stdout) {
                        results.push(&format!("pgbench.{clients}"), tps);
                    }
                }
                Ok(done) => {
                    results.note(format!("pgbench_claim.sh failed: {}", done.stderr.trim()));
                    break;
                }
                Err(e) => {
                    results.note(format!("pgbench_claim.sh (round {round}): {e}"));
                    break;
                }
            }
        }
        if let Some(v) = output_of(Command::new("pgbench").arg("--version")) {
            results.meta.versions.push((String::new(), v));
        }
    } else {
        results.note(
            "pgbench or psql is not installed (Debian: `apt-get install postgresql-client`): no pgbench baseline",
        );
    }
    if installed("redis-benchmark") {
        if let Err(e) = redis_benchmark(plan, bins, results) {
            results.note(format!("redis-benchmark: {e}"));
        }
        if let Some(v) = output_of(Command::new("redis-benchmark").arg("--version")) {
            results.meta.versions.push((String::new(), v));
        }
    } else {
        results.note(
            "redis-benchmark is not installed (Debian: `apt-get install redis-tools`): no redis-benchmark baseline",
        );
    }
}

/// `N clients: tps = X (…)` lines of pgbench_claim.sh.
pub(super) fn pgbench_tps(stdout: &str) -> Vec<(u64, f64)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (clients, rest) = line.split_once(" clients:")?;
            let tps = rest.split("tps = ").nth(1)?.split_whitespace().next()?;
            Some((clients.trim().parse().ok()?, tps.parse().ok()?))
        })
        .collect()
}

/// The requests per second of redis-benchmark's `--csv` output (its second line).
pub(super) fn redis_benchmark_rps(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| !l.starts_with("\"test\""))?;
    line.split("\",\"").nth(1)?.trim_matches('"').parse().ok()
}

/// SET (one round trip) and an EVAL doing a claim's least work (push, pop, one hash field), on
/// keys of a namespace of their own, deleted afterwards.
fn redis_benchmark(plan: &Plan, bins: &Bins, results: &mut Results) -> Result<(), String> {
    let namespace = format!("fmbench-rb-{}", unique());
    let key = |name: &str| format!("{{{namespace}}}:{name}");
    let script = "redis.call('RPUSH', KEYS[1], ARGV[1]) local id = redis.call('LPOP', KEYS[1]) \
                  redis.call('HSET', KEYS[2], id, ARGV[1]) return id";
    let requests = (plan.claim_items * 10).to_string();
    let mut outcome = Ok(());
    for clients in [1u64, 4] {
        let cases: [(&str, Vec<String>); 2] = [
            ("set", vec!["SET".into(), key("k"), "v".into()]),
            (
                "eval",
                vec![
                    "EVAL".into(),
                    script.into(),
                    "2".into(),
                    key("list"),
                    key("hash"),
                    "w".into(),
                ],
            ),
        ];
        for (name, command) in cases {
            let done = run_bounded(
                Command::new("redis-benchmark")
                    .args(["-h", "127.0.0.1", "-p", "6379", "-q", "--csv"])
                    .args(["-n", &requests, "-c", &clients.to_string()])
                    .args(&command),
                Duration::from_secs(120),
            );
            match done {
                Ok(done) => match redis_benchmark_rps(&done.stdout) {
                    Some(rps) => results.push(&format!("redis-benchmark.{name}.{clients}"), rps),
                    None => {
                        outcome = Err(format!("unreadable output: {}", done.stdout.trim()));
                    }
                },
                Err(e) => outcome = Err(e),
            }
        }
    }
    let url = format!("redis://127.0.0.1:6379/0?namespace={namespace}");
    harness(bins, &["cleanup", "--store", &url], Duration::from_secs(60))?;
    outcome
}

/// The cached virtualenv with the reference and LangGraph.
#[derive(Debug)]
pub(super) struct Python {
    python: PathBuf,
}

/// The packages the virtualenv holds.
const PACKAGES: [&str; 3] = [
    "flatmachines==1.0.0",
    "langgraph",
    "langgraph-checkpoint-sqlite",
];

/// The packages of upstream's current SDK, whose tool loop the tool workload is compared with;
/// a virtualenv of their own, since they replace 1.0.0.
const PACKAGES_421: [&str; 3] = ["flatmachines==4.2.1", "flatagents==4.2.1", "litellm"];

/// The Python of the virtualenv `~/.cache/flatmachines-rs/NAME`, made with `packages` from PyPI
/// when `check` does not import there, its versions of `versions` recorded in the report.
fn virtualenv(
    results: &mut Results,
    name: &str,
    packages: &[&str],
    check: &str,
    versions: &[&str],
) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let venv = home.join(".cache/flatmachines-rs").join(name);
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", check])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&python) {
        eprintln!("xtask: bench: creating {} (pip, from PyPI)", venv.display());
        let made = run_bounded(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            Duration::from_secs(120),
        )
        .and_then(|_| {
            run_bounded(
                Command::new(venv.join("bin/pip"))
                    .args(["install", "-q", "--disable-pip-version-check"])
                    .args(packages),
                Duration::from_secs(600),
            )
        });
        match made {
            Ok(done) if done.success && ready(&python) => {}
            Ok(done) => {
                results.note(format!(
                    "could not install {} into {}: {}",
                    packages.join(" "),
                    venv.display(),
                    done.stderr.trim()
                ));
                return None;
            }
            Err(e) => {
                results.note(format!("could not make {}: {e}", venv.display()));
                return None;
            }
        }
    }
    let script = format!(
        "import importlib.metadata as m, json; print(json.dumps({{p: m.version(p) for p in {versions:?}}}))"
    );
    let text = output_of(Command::new(&python).args(["-c", &script])).unwrap_or_default();
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) {
        for (name, version) in map {
            let version = version.as_str().unwrap_or("?").to_owned();
            let label = format!("{name} (PyPI)");
            if !results
                .meta
                .versions
                .iter()
                .any(|(l, v)| *l == label && *v == version)
            {
                results.meta.versions.push((label, version));
            }
        }
    }
    if let Some(v) = output_of(Command::new(&python).arg("--version"))
        && !results.meta.versions.iter().any(|(_, seen)| *seen == v)
    {
        results.meta.versions.push((String::new(), v));
    }
    Some(python)
}

/// flatmachines 4.2.1's tool loop on the tool workload's model server (`bench/py_tools.py`,
/// which starts `fm-bench serve-tools`): `ref421.tools.*`, per tool call, as ours are.
pub(super) fn tools_421(plan: &Plan, bins: &Bins, root: &Path, results: &mut Results) {
    let check = "import flatmachines, flatagents, litellm";
    let versions = ["flatmachines", "flatagents", "litellm"];
    let Some(python) = virtualenv(results, "bench-venv-421", &PACKAGES_421, check, &versions)
    else {
        results.note("flatmachines 4.2.1's tool loop was not run (no virtualenv)");
        return;
    };
    let (calls, runs) = (plan.tool_calls, plan.tool_runs);
    let args = [calls, runs, 5].map(|n| n.to_string());
    eprintln!("xtask: bench: py_tools.py {}", args.join(" "));
    let done = run_bounded(
        Command::new(&python)
            .arg(root.join("bench/py_tools.py"))
            .arg(&bins.harness)
            .args(&args),
        Duration::from_secs(600),
    );
    let value = match done {
        Ok(done) if done.success => done
            .stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str::<Value>(line).ok()),
        Ok(done) => {
            results.note(format!(
                "flatmachines 4.2.1's tool loop failed: {}",
                done.stderr.trim()
            ));
            return;
        }
        Err(e) => {
            results.note(format!("flatmachines 4.2.1's tool loop: {e}"));
            return;
        }
    };
    let Some(value) = value else {
        results.note("py_tools.py printed no JSON");
        return;
    };
    for (series, key) in [
        ("samples_s", "ref421.tools.engine"),
        ("wall_samples_s", "ref421.tools.wall"),
        ("bare_http_samples_s", "ref421.tools.bare"),
    ] {
        let per_call = value[series]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
            .unwrap_or_default();
        results.extend(
            key,
            per_call
                .into_iter()
                .map(|s| s * 1e6 / (calls * runs) as f64),
        );
    }
}

impl Python {
    /// The virtualenv under ~/.cache/flatmachines-rs/bench-venv, made when missing.
    pub(super) fn prepare(results: &mut Results) -> Option<Python> {
        let check = "import flatmachines, langgraph, langgraph.checkpoint.sqlite";
        let versions = ["flatmachines", "langgraph", "langgraph-checkpoint-sqlite"];
        let python = virtualenv(results, "bench-venv", &PACKAGES, check, &versions)?;
        Some(Python { python })
    }

    /// Runs `bench/py_bench.py ARGS` in `dir` (where its checkpoints land), with a time limit.
    fn harness(&self, root: &Path, dir: &Path, args: &[String]) -> Result<Value, String> {
        eprintln!("xtask: bench: py_bench.py {}", args.join(" "));
        let done = run_bounded(
            Command::new(&self.python)
                .arg(root.join("bench/py_bench.py"))
                .args(args)
                .current_dir(dir),
            Duration::from_secs(600),
        )?;
        if !done.success {
            return Err(format!(
                "py_bench.py {} failed: {}",
                args.join(" "),
                done.stderr.trim()
            ));
        }
        let last = done.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).map_err(|e| format!("py_bench.py printed no JSON: {e}"))
    }

    /// The reference and LangGraph on the same workloads, samples in one process each (so the
    /// import time stays out), in a scratch copy of `bench/`.
    pub(super) fn run(
        &self,
        plan: &Plan,
        bins: &Bins,
        root: &Path,
        scratch: &Scratch,
        results: &mut Results,
    ) {
        let dir = match copy_bench(root, scratch) {
            Ok(dir) => dir,
            Err(e) => {
                results.note(format!("the Python workloads were not run: {e}"));
                return;
            }
        };
        self.paired(plan, bins, root, &dir, results);
        let reps = |full: u64, quick: u64| if plan.quick { quick } else { full };
        // The same step counts as our loops, so both stores hold as many checkpoints.
        let mut jobs: Vec<(String, Vec<String>, u64)> = vec![
            (
                "ref.loop.memory".into(),
                vec!["reference".into(), "loop.yml".into()],
                plan.steps,
            ),
            (
                "ref.loop.file".into(),
                vec!["reference".into(), "loop_local.yml".into()],
                plan.slow_steps,
            ),
            (
                "lg.loop.none".into(),
                vec!["langgraph".into(), "none".into()],
                plan.steps,
            ),
            (
                "lg.loop.memory".into(),
                vec!["langgraph".into(), "memory".into()],
                plan.steps,
            ),
            (
                "lg.loop.sqlite".into(),
                vec!["langgraph".into(), "sqlite".into()],
                plan.durable_steps,
            ),
        ];
        let sizes: &[u64] = if plan.quick {
            &[100, 1000]
        } else {
            &[100, 1000, 10_000]
        };
        for &children in sizes {
            jobs.push((
                format!("ref.fanout.{children}"),
                vec!["reference".into(), "fanout.yml".into()],
                children,
            ));
        }
        for (key, mut args, n) in jobs {
            // The slow ones (seconds a sample) get fewer samples.
            let samples = match key.as_str() {
                "ref.fanout.10000" => 1,
                "ref.loop.file" => reps(5, 3),
                _ => reps(7, 5),
            };
            args.push(n.to_string());
            args.push(samples.to_string());
            match self.harness(root, &dir, &args) {
                Ok(v) => {
                    let values: Vec<f64> = v["samples_s"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_f64).collect())
                        .unwrap_or_default();
                    results.extend(&key, values.into_iter().map(|s| s * 1e6 / n as f64));
                    if let Some(kib) = v["peak_rss_kib"].as_f64() {
                        results.push(&format!("{key}.rss_mib"), kib / 1024.0);
                    }
                }
                Err(e) => results.note(format!("{key} not measured: {e}")),
            }
        }
        if !plan.quick {
            return;
        }
        results
            .note("--quick: the reference's 10 000-child fan-out is only run by the full command");
    }
}

impl Python {
    /// The disk-bound comparisons, ours and theirs alternated one sample at a time, so a
    /// change in the disk's speed during the run hits both sides alike: local files against
    /// the reference, SQLite against LangGraph.
    fn paired(&self, plan: &Plan, bins: &Bins, root: &Path, dir: &Path, results: &mut Results) {
        let rounds = if plan.quick { 3 } else { 7 };
        let pairs = [
            (
                "file",
                plan.slow_steps,
                "pair.ref.loop.file",
                ["reference", "loop_local.yml"],
            ),
            (
                "sqlite",
                plan.durable_steps,
                "pair.lg.loop.sqlite",
                ["langgraph", "sqlite"],
            ),
        ];
        for (store, steps, theirs, what) in pairs {
            for _ in 0..rounds {
                let ours = harness(
                    bins,
                    &[
                        "loop",
                        "--store",
                        store,
                        "--steps",
                        &steps.to_string(),
                        "--samples",
                        "1",
                    ],
                    Duration::from_secs(300),
                );
                let args: Vec<String> = what
                    .iter()
                    .map(|s| (*s).to_owned())
                    .chain([steps.to_string(), "1".to_owned()])
                    .collect();
                let other = self.harness(root, dir, &args);
                match (ours, other) {
                    (Ok(ours), Ok(other)) => {
                        let per_step = |v: &Value| {
                            v["samples_s"]
                                .as_array()
                                .and_then(|a| a.first())
                                .and_then(Value::as_f64)
                                .map(|s| s * 1e6 / steps as f64)
                        };
                        if let (Some(a), Some(b)) = (per_step(&ours), per_step(&other)) {
                            results.push(&format!("pair.loop.{store}"), a);
                            results.push(theirs, b);
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        results.note(format!("alternated {store} comparison stopped: {e}"));
                        break;
                    }
                }
            }
        }
    }
}

/// A scratch copy of the YAML workloads, so the reference's `.checkpoints/` lands there.
fn copy_bench(root: &Path, scratch: &Scratch) -> Result<PathBuf, String> {
    let dir = scratch.fresh("python")?;
    let source = root.join("bench");
    let entries =
        std::fs::read_dir(&source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yml") {
            std::fs::copy(&path, dir.join(entry.file_name()))
                .map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
        }
    }
    Ok(dir)
}

/// For each missed §10 target that our harness can replay, a `perf` profile of that workload:
/// the hottest symbols, self time.
pub(super) fn profile_misses(plan: &Plan, bins: &Bins, results: &mut Results) {
    let misses: Vec<_> = super::report::targets(results)
        .into_iter()
        .filter(|t| t.met == Some(false))
        .collect();
    if misses.is_empty() {
        return;
    }
    if plan.quick {
        results.note("--quick: missed targets are profiled by the full command only");
        return;
    }
    if !installed("perf") {
        results.note(
            "perf is not installed (Debian: `apt-get install linux-perf`): missed targets have no profile",
        );
        return;
    }
    let scratch = std::env::temp_dir().join(format!("fmbench-perf-{}", unique()));
    if std::fs::create_dir_all(&scratch).is_err() {
        return;
    }
    let mut done_args: Vec<Vec<String>> = Vec::new();
    for miss in misses {
        // Several targets replay the same workload: profile it once.
        let Some(args) = miss.replay(plan).filter(|a| !done_args.contains(a)) else {
            continue;
        };
        done_args.push(args.clone());
        let data = scratch.join("perf.data");
        let recorded = run_bounded(
            Command::new("perf")
                .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
                .arg(&data)
                .arg("--")
                .arg(&bins.harness)
                .args(&args),
            Duration::from_secs(180),
        );
        let summary = match recorded {
            Ok(done) if done.success => {
                let cpu = on_cpu(&done.stdout, &done.stderr);
                let top = run_bounded(
                    Command::new("perf")
                        .args(["report", "--stdio", "--no-children", "--sort", "dso,symbol"])
                        .args(["--percent-limit", "2", "-g", "none", "-i"])
                        .arg(&data),
                    Duration::from_secs(120),
                )
                .map(|done| top_symbols(&done.stdout, 12))
                .unwrap_or_else(|e| format!("perf report failed: {e}"));
                format!("{cpu}\n{top}")
            }
            Ok(done) => format!("perf record failed: {}", done.stderr.trim()),
            Err(e) => format!("perf record failed: {e}"),
        };
        results.profiles.push((
            format!("{} (`fm-bench {}`)", miss.name, args.join(" ")),
            summary,
        ));
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// How much of the replay's timed wall time the process spent on a CPU: `perf record`'s sample
/// count at 999 Hz against the sum of the samples the harness printed. A workload that waits
/// (for a disk sync, a server) shows a low share, and its profile only covers that share.
pub(super) fn on_cpu(stdout: &str, stderr: &str) -> String {
    let samples = stderr
        .split('(')
        .filter_map(|part| part.split_once(" samples)"))
        .filter_map(|(n, _)| n.trim().parse::<f64>().ok())
        .next_back();
    let wall: Option<f64> = serde_json::from_str::<Value>(stdout.trim())
        .ok()
        .and_then(|v| {
            v["samples_s"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).sum())
        });
    match (samples, wall) {
        (Some(samples), Some(wall)) if wall > 0.0 => {
            let cpu = samples / 999.0;
            format!(
                "on CPU ≈ {:.0} ms (whole process, setup included) for {:.0} ms of timed wall time ({:.0} %); self time by symbol:",
                cpu * 1e3,
                wall * 1e3,
                100.0 * cpu / wall
            )
        }
        _ => "self time by symbol:".to_owned(),
    }
}

/// The first `count` sample lines of `perf report --stdio`, blanks collapsed.
pub(super) fn top_symbols(report: &str, count: usize) -> String {
    report
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#') && t.contains('%')
        })
        .take(count)
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            // `-g none` leaves two `-` columns at the end.
            let end = words.len() - words.iter().rev().take_while(|w| **w == "-").count();
            words[..end].join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_lines_give_clients_and_tps() {
        let out = "1 clients: tps = 187.123456 (without initial connection time)\n\
                   4 clients: tps = 756.5 (without initial connection time)\n";
        assert_eq!(pgbench_tps(out), vec![(1, 187.123456), (4, 756.5)]);
        assert!(pgbench_tps("pending items left: 3").is_empty());
    }

    #[test]
    fn redis_benchmark_csv_gives_rps() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET {x}:k v\",\"4032.26\",\"0.242\"\n";
        assert_eq!(redis_benchmark_rps(out), Some(4032.26));
        assert_eq!(redis_benchmark_rps("\"test\",\"rps\"\n"), None);
    }

    #[test]
    fn perf_report_keeps_sample_lines_only() {
        let report = "# Samples: 1K\n#\n    12.50%  fm-bench  [.] serde_json::ser::format    -    -   \n\n     3.10%  libc.so  [.] malloc\n";
        assert_eq!(
            top_symbols(report, 5),
            "12.50% fm-bench [.] serde_json::ser::format\n3.10% libc.so [.] malloc"
        );
    }

    #[test]
    fn on_cpu_compares_perf_samples_with_the_timed_wall() {
        let stderr = "[ perf record: Woken up 1 times to write data ]\n[ perf record: Captured and wrote 0.019 MB /tmp/p.data (141 samples) ]\n";
        let stdout = r#"{"samples_s": [0.5, 0.5]}"#;
        let text = on_cpu(stdout, stderr);
        assert!(
            text.starts_with("on CPU ≈ 141 ms")
                && text.contains("1000 ms")
                && text.contains("(14 %)"),
            "{text}"
        );
        assert_eq!(on_cpu("not json", stderr), "self time by symbol:");
    }
}
