//! `docs/benchmarks.md` from one run's [`Results`], and the README's headline line.
//!
//! Series names and units: `loop.STORE`, `cli.loop.STORE`, `ref.loop.STORE`, `lg.loop.MODE`
//! (µs per state step); `fanout.N`, `cli.fanout.N`, `ref.fanout.N` (µs per child) and their
//! `.rss_mib` (peak RSS, MiB); `claims.BACKEND.W`, `raw.BACKEND.W` (claims per second),
//! `pgbench.W` (transactions per second), `redis-benchmark.CMD.W` (requests per second);
//! `agent.engine`, `agent.bare`, `agent.wall` (µs per call); `tools.engine`, `tools.bare`,
//! `tools.wall` (µs per tool call); `suspended.bytes` (bytes per parked machine).

use std::fmt::Write as _;
use std::path::Path;

use super::{Plan, Results};

/// The median of `values` (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

impl Results {
    /// The median of a series.
    pub(crate) fn get(&self, key: &str) -> Option<f64> {
        self.series.get(key).and_then(|v| median(v))
    }

    fn count(&self, key: &str) -> usize {
        self.series.get(key).map_or(0, Vec::len)
    }

    /// `a ÷ b` of two medians.
    fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        match (self.get(a), self.get(b)) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }
}

/// A number with three significant figures at most and thin groups of thousands.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "—".to_owned();
    }
    let text = if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    };
    let (int, frac) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    match frac {
        Some(frac) => format!("{sign}{grouped}.{frac}"),
        None => format!("{sign}{grouped}"),
    }
}

fn opt(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{}{unit}", num(v)))
}

fn times(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{}×", num(v)))
}

/// One §10 target and how this run did against it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The workload, as §10 names it.
    pub(crate) name: &'static str,
    /// The target, as §10 states it.
    pub(crate) goal: &'static str,
    /// What was measured.
    pub(crate) measured: String,
    /// Met, missed, or not measured in this run.
    pub(crate) met: Option<bool>,
    /// Why a miss is likely, from what the workload does.
    pub(crate) reason: &'static str,
    /// The harness workload that replays it for a profile.
    replay: Option<(&'static str, &'static str)>,
}

impl Target {
    /// `fm-bench` arguments that replay the workload (sized for a profile).
    pub(crate) fn replay(&self, plan: &Plan) -> Option<Vec<String>> {
        let (workload, which) = self.replay?;
        let s = |v: &str| v.to_owned();
        Some(match workload {
            "loop" => {
                let steps = match which {
                    "none" | "memory" => plan.steps * 10,
                    _ => plan.durable_steps,
                };
                vec![
                    s("loop"),
                    s("--store"),
                    s(which),
                    s("--steps"),
                    steps.to_string(),
                    s("--samples"),
                    s("3"),
                ]
            }
            "fanout" => vec![
                s("fanout"),
                s("--children"),
                s(which),
                s("--samples"),
                s("3"),
            ],
            "claims" => vec![
                s("claims"),
                s("--backend"),
                s("postgres"),
                s("--workers"),
                s(which),
                s("--items"),
                plan.pg_claim_items.to_string(),
                s("--samples"),
                s("1"),
            ],
            _ => return None,
        })
    }
}

/// Every §10 target (DESIGN.md §10), in its order.
pub(crate) fn targets(r: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    let step = r.get("loop.memory");
    out.push(Target {
        name: "state step, in-memory checkpoints (default events)",
        goal: "≤ 5 µs",
        measured: opt(step, " µs"),
        met: step.map(|v| v <= 5.0),
        reason: "three checkpoints per step, each encoding the 50-key context into a snapshot",
        replay: Some(("loop", "memory")),
    });
    let ratio = r.ratio("ref.loop.memory", "loop.memory");
    out.push(Target {
        name: "… against the reference",
        goal: "≥ 50× the reference",
        measured: match ratio {
            Some(x) => format!(
                "{} (reference {})",
                times(Some(x)),
                opt(r.get("ref.loop.memory"), " µs")
            ),
            None => "— (reference not run)".to_owned(),
        },
        met: ratio.map(|x| x >= 50.0),
        reason: "see the row above: the reference's time is its own, ours is the step's",
        replay: Some(("loop", "memory")),
    });
    let none = r.get("loop.none");
    out.push(Target {
        name: "state step, persistence disabled",
        goal: "≤ 1 µs",
        measured: opt(none, " µs"),
        met: none.map(|v| v <= 1.0),
        reason: "condition evaluation and the transition; no checkpoint is written",
        replay: Some(("loop", "none")),
    });
    let sizes = ["100", "1000", "10000"];
    let per_child: Vec<(&str, f64)> = sizes
        .iter()
        .filter_map(|n| r.get(&format!("fanout.{n}")).map(|v| (*n, v)))
        .collect();
    let worst = per_child
        .iter()
        .map(|(_, v)| *v)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    out.push(Target {
        name: "`foreach` child machine",
        goal: "≤ 20 µs per child",
        measured: if per_child.is_empty() {
            "—".to_owned()
        } else {
            per_child
                .iter()
                .map(|(n, v)| format!("{} µs at {}", num(*v), group(n)))
                .collect::<Vec<_>>()
                .join(", ")
        },
        met: worst.map(|v| v <= 20.0),
        reason: "each child is a full machine run: it writes its own checkpoints (two per state, plus start and end) to the shared in-memory store and its output to the result backend, and the store grows with the fan-out; on two busy cores the per-child time moves by ±30 % between runs",
        replay: Some(("fanout", "10000")),
    });
    let child_ratio = r.ratio("ref.fanout.1000", "fanout.1000");
    out.push(Target {
        name: "… against the reference (1 000 children)",
        goal: "≥ 80× the reference",
        measured: match child_ratio {
            Some(x) => format!(
                "{} (reference {})",
                times(Some(x)),
                opt(r.get("ref.fanout.1000"), " µs")
            ),
            None => "— (reference not run)".to_owned(),
        },
        met: child_ratio.map(|x| x >= 80.0),
        reason: "see the row above",
        replay: Some(("fanout", "1000")),
    });
    let total = r.get("fanout.10000").map(|us| us * 10_000.0 / 1e6);
    out.push(Target {
        name: "10 000 children, time",
        goal: "< 1 s",
        measured: opt(total, " s"),
        met: total.map(|s| s < 1.0),
        reason: "per-child cost times 10 000",
        replay: Some(("fanout", "10000")),
    });
    let rss = r.get("fanout.10000.rss_mib").map(|mib| mib * 1.048_576);
    out.push(Target {
        name: "10 000 children, peak memory (whole harness process)",
        goal: "< 200 MB",
        measured: opt(rss, " MB"),
        met: rss.map(|mb| mb < 200.0),
        reason: "every child's checkpoints stay in the in-memory store until the run ends",
        replay: None,
    });
    let paired_note = |key: &str| match key.starts_with("pair.") {
        true => format!("; {} alternated pairs", r.count(key)),
        false => String::new(),
    };
    // The alternated samples when there are some: they saw the same disk.
    let pick = |paired: &'static str, plain: &'static str| {
        if r.get(paired).is_some() {
            paired
        } else {
            plain
        }
    };
    let (ours_file, ref_file) = (
        pick("pair.loop.file", "loop.file"),
        pick("pair.ref.loop.file", "ref.loop.file"),
    );
    let file = r.ratio(ref_file, ours_file);
    out.push(Target {
        name: "state step, local-file checkpoints",
        goal: "fsync-durable and still faster than the reference (which does not fsync)",
        measured: match file {
            Some(x) => format!(
                "{} vs reference {} (reference ÷ ours: {}{}), fsync-durable",
                opt(r.get(ours_file), " µs"),
                opt(r.get(ref_file), " µs"),
                times(Some(x)),
                paired_note(ours_file)
            ),
            None => format!("{} (reference not run)", opt(r.get("loop.file"), " µs")),
        },
        met: file.map(|x| x > 1.0),
        reason: "three syncs per checkpoint (the snapshot, the pointer and the directory) where the reference does none: the disk's sync time decides, and it swings several-fold within minutes on these machines",
        replay: Some(("loop", "file")),
    });
    let (ours_sqlite, lg_sqlite) = (
        pick("pair.loop.sqlite", "loop.sqlite"),
        pick("pair.lg.loop.sqlite", "lg.loop.sqlite"),
    );
    let sqlite = r.ratio(lg_sqlite, ours_sqlite);
    out.push(Target {
        name: "state step, SQLite checkpoints",
        goal: "≥ 10× faster than LangGraph's SQLite saver per step",
        measured: match sqlite {
            Some(x) => format!(
                "{} ({} vs LangGraph {}{})",
                times(Some(x)),
                opt(r.get(ours_sqlite), " µs"),
                opt(r.get(lg_sqlite), " µs"),
                paired_note(ours_sqlite)
            ),
            None => format!("{} (LangGraph not run)", opt(r.get("loop.sqlite"), " µs")),
        },
        met: sqlite.map(|x| x >= 10.0),
        reason: "we commit three times per step (one checkpoint each for `state_enter`, `execute` and `state_exit`) where LangGraph commits once, and each commit hands its statement to sqlx's SQLite thread and back (the kernel scheduler's share of the profile) and appends WAL frames; LangGraph's one `synchronous=FULL` commit costs what this disk's sync costs, which has varied several-fold between sessions (4 057 µs a step on 2026-11-24 00:14 UTC, when the ratio was 32×)",
        replay: Some(("loop", "sqlite")),
    });
    out.push(tools_target(r));
    for (workers, name) in [
        ("1", "work-pool claim, Postgres, 1 worker"),
        ("4", "work-pool claim, Postgres, 4 workers"),
    ] {
        let ours = format!("claims.postgres.{workers}");
        let bare = r.ratio(&ours, &format!("raw.postgres.{workers}"));
        let tool = r.ratio(&ours, &format!("pgbench.{workers}"));
        out.push(Target {
            name,
            goal: "within 2× of a bare `FOR UPDATE SKIP LOCKED` update loop on the same server",
            measured: format!(
                "{} claims/s: {} the bare loop in the same harness, {} pgbench",
                opt(r.get(&ours), ""),
                times(bare),
                times(tool)
            ),
            met: bare.map(|x| x >= 0.5),
            reason: "each claim is one commit, whose WAL flush sets the pace; the claim adds its token, attempts and the returned item",
            replay: Some(("claims", if workers == "1" { "1" } else { "4" })),
        });
    }
    out
}

fn group(n: &str) -> String {
    n.parse::<f64>().map_or_else(|_| n.to_owned(), num)
}

fn status(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// The whole document.
pub(crate) fn markdown(r: &Results) -> String {
    let mut d = String::new();
    let mode = if r.meta.quick {
        "cargo xtask bench --quick"
    } else {
        "cargo xtask bench"
    };
    let _ = writeln!(d, "# Benchmarks\n");
    let _ = writeln!(
        d,
        "<!-- GENERATED by `{mode}` (xtask/src/bench/); do not edit by hand. Regenerate with `cargo xtask bench` (full) or `cargo xtask bench --quick`. -->\n"
    );
    let _ = writeln!(
        d,
        "Generated by `{mode}` on {} — {} logical cores ({}), load average {} during the run, which took {:.0} s. \
         All numbers below come from this one run on this one machine: the same workloads, in the same session, \
         for us, the Python reference and LangGraph. These machines are shared and noisy, so read the ratios \
         rather than the absolute times. Every figure is the **median** of the samples counted next to it.\n",
        r.meta.date, r.meta.cores, r.meta.cpu, r.meta.load, r.meta.elapsed_s
    );
    if !r.meta.versions.is_empty() {
        let list: Vec<String> = r
            .meta
            .versions
            .iter()
            .map(|(name, v)| match name.is_empty() {
                true => v.clone(),
                false => format!("{name} {v}"),
            })
            .collect();
        let _ = writeln!(d, "Others: {}.\n", list.join("; "));
    }
    let _ = writeln!(
        d,
        "**Ratios are theirs ÷ ours for times** (how many times faster we are: above 1 is faster) **and ours ÷ theirs \
         for rates** (claims per second: above 1 is faster).\n"
    );
    targets_section(&mut d, r);
    step_section(&mut d, r);
    fanout_section(&mut d, r);
    claims_section(&mut d, r);
    agent_section(&mut d, r);
    tools_section(&mut d, r);
    memory_section(&mut d, r);
    if !r.profiles.is_empty() {
        let _ = writeln!(d, "## Profiles of missed targets\n");
        let _ = writeln!(
            d,
            "`perf record -e cpu-clock -g` of the harness replaying the workload, then `perf report --no-children`: \
             the hottest symbols by self time.\n"
        );
        for (target, text) in &r.profiles {
            let _ = writeln!(d, "{target}:\n\n```text\n{text}\n```\n");
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(d, "## Notes from this run\n");
        for note in &r.notes {
            let _ = writeln!(d, "- {}", note.replace('\n', " "));
        }
        let _ = writeln!(d);
    }
    d.push_str(METHOD);
    d
}

fn targets_section(d: &mut String, r: &Results) {
    let _ = writeln!(d, "## Targets (DESIGN.md §10)\n");
    let _ = writeln!(
        d,
        "| workload | target | measured | status |\n|---|---|---|---|"
    );
    let all = targets(r);
    for t in &all {
        let _ = writeln!(
            d,
            "| {} | {} | {} | {} |",
            t.name,
            t.goal,
            t.measured,
            status(t.met)
        );
    }
    let _ = writeln!(d);
    let missed: Vec<&Target> = all.iter().filter(|t| t.met == Some(false)).collect();
    if !missed.is_empty() {
        let _ = writeln!(
            d,
            "Missed in this run, and why (profiles below when `perf` could record them):\n"
        );
        for t in missed {
            let _ = writeln!(d, "- {} ({}): {}.", t.name, t.goal, t.reason);
        }
        let _ = writeln!(d);
    }
}

fn step_section(d: &mut String, r: &Results) {
    let _ = writeln!(d, "## State step\n");
    let _ = writeln!(
        d,
        "`bench/loop.yml`: a two-state loop, one condition per step, a 50-key context, run to a step limit. \
         In-process: `fm-bench loop` times `Runner::run` (like the reference's timing of `execute`). \
         Whole process: `flatmachines run … --max-steps N --store URL`, wall time divided by the steps, \
         so process start, YAML loading and opening the store are included.\n"
    );
    let _ = writeln!(d, "![per-step cost](benchmarks/per_step.svg)\n");
    let _ = writeln!(
        d,
        "| checkpoints | ours, in-process (µs/step) | ours, whole CLI process | reference | LangGraph | reference ÷ ours | LangGraph ÷ ours |\n|---|---|---|---|---|---|---|"
    );
    let rows = [
        (
            "none (`persistence: {enabled: false}`; LangGraph: no saver)",
            "none",
            None,
            Some("none"),
        ),
        (
            "in memory (default)",
            "memory",
            Some("memory"),
            Some("memory"),
        ),
        (
            "local files, fsync-durable (`file://`)",
            "file",
            Some("file"),
            None,
        ),
        ("SQLite (`sqlite://`)", "sqlite", None, Some("sqlite")),
        ("Redis (`redis://127.0.0.1`)", "redis", None, None),
        (
            "PostgreSQL (`postgres://127.0.0.1`)",
            "postgres",
            None,
            None,
        ),
    ];
    for (label, store, reference, langgraph) in rows {
        let ours = format!("loop.{store}");
        let cli = format!("cli.loop.{store}");
        let rf = reference.map(|m| format!("ref.loop.{m}"));
        let lg = langgraph.map(|m| format!("lg.loop.{m}"));
        let cell = |key: &Option<String>| {
            key.as_ref()
                .map_or_else(|| "—".to_owned(), |k| with_n(r, k, " µs"))
        };
        let _ = writeln!(
            d,
            "| {label} | {} | {} | {} | {} | {} | {} |",
            with_n(r, &ours, " µs"),
            with_n(r, &cli, " µs"),
            cell(&rf),
            cell(&lg),
            times(rf.as_ref().and_then(|k| r.ratio(k, &ours))),
            times(lg.as_ref().and_then(|k| r.ratio(k, &ours))),
        );
    }
    let _ = writeln!(d);
    if r.get("pair.loop.file").is_some() || r.get("pair.loop.sqlite").is_some() {
        let _ = writeln!(
            d,
            "The disks of these machines change speed within minutes, so the two disk-bound comparisons are also \
             run alternated, one sample of ours then one of theirs, and the targets above use those pairs: local \
             files {} (ours) against {} (reference), SQLite {} (ours) against {} (LangGraph).\n",
            with_n(r, "pair.loop.file", " µs"),
            with_n(r, "pair.ref.loop.file", " µs"),
            with_n(r, "pair.loop.sqlite", " µs"),
            with_n(r, "pair.lg.loop.sqlite", " µs"),
        );
    }
}

/// `median (n = count)`.
fn with_n(r: &Results, key: &str, unit: &str) -> String {
    match r.get(key) {
        Some(v) => format!("{}{unit} (n={})", num(v), r.count(key)),
        None => "—".to_owned(),
    }
}

fn fanout_section(d: &mut String, r: &Results) {
    let _ = writeln!(d, "## `foreach` fan-out\n");
    let _ = writeln!(
        d,
        "`bench/fanout.yml` + `bench/child.yml`: a `foreach` over N integers, each child a two-state machine \
         rendering one template. Peak memory is the peak RSS (`VmHWM`) of a process that ran only that size \
         (the harness, the CLI under GNU time, the reference's `ru_maxrss`).\n"
    );
    let _ = writeln!(d, "![fan-out scaling](benchmarks/fanout.svg)\n");
    let _ = writeln!(
        d,
        "| children | ours (µs/child) | ours, total | ours, peak RSS | whole CLI process (µs/child) | CLI peak RSS | reference (µs/child) | reference peak RSS | reference ÷ ours |\n|---|---|---|---|---|---|---|---|---|"
    );
    for n in ["100", "1000", "10000"] {
        let ours = format!("fanout.{n}");
        let children: f64 = n.parse().unwrap_or(1.0);
        let _ = writeln!(
            d,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            group(n),
            with_n(r, &ours, " µs"),
            opt(r.get(&ours).map(|us| us * children / 1e3), " ms"),
            opt(r.get(&format!("{ours}.rss_mib")), " MiB"),
            with_n(r, &format!("cli.{ours}"), " µs"),
            opt(r.get(&format!("cli.{ours}.rss_mib")), " MiB"),
            with_n(r, &format!("ref.{ours}"), " µs"),
            opt(r.get(&format!("ref.{ours}.rss_mib")), " MiB"),
            times(r.ratio(&format!("ref.{ours}"), &ours)),
        );
    }
    let _ = writeln!(d);
}

fn claims_section(d: &mut String, r: &Results) {
    let _ = writeln!(d, "## Work-pool claims\n");
    let _ = writeln!(
        d,
        "`fm-bench claims`: a sample fills a new pool, then W workers claim until the pool is empty (claims only, \
         no `complete`); claims per second = items ÷ drain time. Redis: a client (connection) per worker. \
         PostgreSQL: one store with a pool of W connections. SQLite: one database handle shared by the workers \
         (one writer at a time). The bare loop runs in the same harness on the same server: on PostgreSQL the \
         bare `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id` on the store's own \
         table, one prepared statement per worker connection; on Redis an `EVALSHA` that pops an id and sets one \
         hash field. The servers' own tools run against the same servers in the same session: \
         `crates/backends/postgres/benches/pgbench_claim.sh` (pgbench, the same bare statement, `-M prepared`) \
         and `redis-benchmark` (an `EVAL` pushing, popping and setting one hash field; `SET` for one round trip). \
         SQLite has no server and so no bare-server baseline: its claims are bounded by one commit each, one \
         writer at a time.\n"
    );
    let _ = writeln!(
        d,
        "| backend | workers | ours (claims/s) | bare loop, same harness | ours ÷ bare | server's tool | ours ÷ tool |\n|---|---|---|---|---|---|---|"
    );
    for backend in ["sqlite", "redis", "postgres"] {
        for workers in ["1", "4"] {
            let ours = format!("claims.{backend}.{workers}");
            let raw = format!("raw.{backend}.{workers}");
            let (tool_key, tool_label) = match backend {
                "postgres" => (Some(format!("pgbench.{workers}")), "pgbench"),
                "redis" => (
                    Some(format!("redis-benchmark.eval.{workers}")),
                    "redis-benchmark EVAL",
                ),
                _ => (None, ""),
            };
            let tool = tool_key.as_ref().and_then(|k| r.get(k));
            let _ = writeln!(
                d,
                "| {backend} | {workers} | {} | {} | {} | {} | {} |",
                with_n(r, &ours, ""),
                with_n(r, &raw, ""),
                times(r.ratio(&ours, &raw)),
                tool.map_or_else(|| "—".to_owned(), |t| format!("{} ({tool_label})", num(t))),
                times(tool_key.as_ref().and_then(|k| r.ratio(&ours, k))),
            );
        }
    }
    let set1 = r.get("redis-benchmark.set.1");
    let set4 = r.get("redis-benchmark.set.4");
    if set1.is_some() || set4.is_some() {
        let _ = writeln!(
            d,
            "\n`redis-benchmark` `SET` (one round trip, the floor of anything on this server): {} req/s with 1 client, {} with 4.",
            opt(set1, ""),
            opt(set4, "")
        );
    }
    let _ = writeln!(d);
}

fn agent_section(d: &mut String, r: &Results) {
    let _ = writeln!(d, "## Agent-call overhead\n");
    let _ = writeln!(
        d,
        "`fm-bench agent`: a machine whose two looping states each call a `spec: flatagent` agent (OpenAI provider, \
         structured output) whose `base_url` is a mock chat-completions server the harness starts on 127.0.0.1. \
         The server adds up the time it spends on each request (headers in to answer written); the engine's time \
         is the wall time less that, per call. The same number of bare `reqwest` posts to the same server is the \
         HTTP floor: the difference is what the machine, the agent layer (prompt rendering, request building, \
         response parsing and validation) and the checkpoints add.\n"
    );
    let engine = r.get("agent.engine");
    let bare = r.get("agent.bare");
    let _ = writeln!(
        d,
        "| per agent call | median |\n|---|---|\n| machine + agent, excluding the server's time | {} |\n| bare HTTP post, excluding the server's time | {} |\n| **added by the engine and the agent layer** | **{}** |\n| machine + agent, wall time | {} |\n",
        with_n(r, "agent.engine", " µs"),
        with_n(r, "agent.bare", " µs"),
        opt(engine.zip(bare).map(|(e, b)| e - b), " µs"),
        with_n(r, "agent.wall", " µs"),
    );
}

fn tools_section(d: &mut String, r: &Results) {
    let plan = Plan::new(r.meta.quick);
    let _ = writeln!(d, "## Tool-call overhead\n");
    let _ = writeln!(
        d,
        "`fm-bench tools`: a `tool_loop` state whose agent (OpenAI provider) asks the same mock server for one call \
         of an in-process Rust tool per model turn, {} times, then answers with text; {} runs per sample. The \
         server is scripted by the conversation it receives (another call while it holds fewer than {} tool \
         results). Each figure is per tool call: the engine's time is the wall time less the server's, and the \
         HTTP floor is as many bare `reqwest` posts as the runs made model turns ({} per run), shared out the \
         same way. The difference is what the loop adds: rendering and sending the growing conversation, \
         parsing the tool calls, the guardrails, the tool call itself, the hooks, the run events and the \
         journal (a `tool_call` checkpoint in memory after every turn and every call, whose conversation \
         grows with the loop).\n",
        plan.tool_calls,
        plan.tool_runs,
        plan.tool_calls,
        plan.tool_calls + 1,
    );
    let added = |side: &str| {
        r.get(&format!("{side}.engine"))
            .zip(r.get(&format!("{side}.bare")))
            .map(|(e, b)| e - b)
    };
    let _ = writeln!(
        d,
        "| per tool call | ours (median) | flatmachines 4.2.1 (median) |\n|---|---|---|\n\
         | tool loop, excluding the server's time | {} | {} |\n\
         | bare HTTP posts, excluding the server's time | {} | {} |\n\
         | **added by the tool loop** | **{}** | **{}** |\n\
         | tool loop, wall time | {} | {} |\n",
        with_n(r, "tools.engine", " µs"),
        with_n(r, "ref421.tools.engine", " µs"),
        with_n(r, "tools.bare", " µs"),
        with_n(r, "ref421.tools.bare", " µs"),
        opt(added("tools"), " µs"),
        opt(added("ref421.tools"), " µs"),
        with_n(r, "tools.wall", " µs"),
        with_n(r, "ref421.tools.wall", " µs"),
    );
    let _ = writeln!(
        d,
        "flatmachines 4.2.1 (`bench/py_tools.py`) runs the same machine on the same server: `fm-bench \
         serve-tools` answers both sides with the same script and reports its busy time, which each side \
         takes out of its wall time. Its agent is a 4.2.1 bundle (litellm's OpenAI provider) and its tool \
         an in-process Python `ToolProvider`; persistence is on (memory backend), so 4.2.1 writes its \
         `tool_call` checkpoint after every call. Its machines are built before each sample's clock \
         starts, as our prepared runner is, and its HTTP floor is as many bare posts through httpx, the \
         client under litellm's OpenAI provider.\n"
    );
}

/// The tool-loop target: what our loop adds per call against what 4.2.1's adds.
fn tools_target(r: &Results) -> Target {
    let added = |side: &str| {
        r.get(&format!("{side}.engine"))
            .zip(r.get(&format!("{side}.bare")))
            .map(|(e, b)| e - b)
    };
    let (ours, theirs) = (added("tools"), added("ref421.tools"));
    let ratio = ours
        .zip(theirs)
        .filter(|(o, _)| *o > 0.0)
        .map(|(o, t)| t / o);
    Target {
        name: "tool loop, per tool call, excluding the servers' time (journal on)",
        goal: "≤ 1/20 of flatmachines 4.2.1's overhead on the same mocks",
        measured: match ratio {
            Some(x) => format!(
                "{} added, 4.2.1 {}: 1/{}",
                opt(ours, " µs"),
                opt(theirs, " µs"),
                num(x)
            ),
            None => format!("{} added (4.2.1 not run)", opt(ours, " µs")),
        },
        met: ratio.map(|x| x >= 20.0),
        reason: "each call is two journal checkpoints (after the model turn and after the result), each encoding the whole conversation so far, and one more render and send of that growing conversation",
        replay: None,
    }
}

fn memory_section(d: &mut String, r: &Results) {
    let _ = writeln!(d, "## Memory\n");
    let rss = r.get("fanout.10000.rss_mib");
    let parked = r.get("suspended.bytes");
    let _ = writeln!(
        d,
        "| measure | value |\n|---|---|\n| peak RSS, 10 000 `foreach` children (harness process) | {} |\n| peak RSS, 10 000 `foreach` children (`flatmachines run`, whole process) | {} |\n| peak RSS, 10 000 children on the reference | {} |\n| memory per parked machine | {} |\n",
        opt(rss, " MiB"),
        opt(r.get("cli.fanout.10000.rss_mib"), " MiB"),
        opt(r.get("ref.fanout.10000.rss_mib"), " MiB"),
        match parked {
            Some(b) => format!(
                "{} KiB (median of {} processes)",
                num(b / 1024.0),
                r.count("suspended.bytes")
            ),
            None => "—".to_owned(),
        }
    );
    let _ = writeln!(
        d,
        "Memory per parked machine, as measured: one process starts M runs of a machine with the loop's 50-key \
         context on one runtime; each stops in its second state, inside an in-process agent that waits for a \
         release signal. The process's resident memory (`VmRSS`) when all M are parked, less before they were \
         started (after 20 warm-up runs), divided by M, is what one machine parked mid-run costs: its task, \
         its context, its run state and the checkpoints it has written so far to the in-memory store. It is not \
         a checkpointed-and-unloaded machine, which costs no process memory at all.\n"
    );
}

/// Explanations that do not change from run to run.
const METHOD: &str = "## How it is measured\n\n\
- `cargo xtask bench [--quick]` builds `flatmachines-cli` and `flatmachines-bench` (`fm-bench`) in release, then \
runs every workload in a fresh process with a time limit. `--quick` uses fewer steps, items and samples and skips \
the reference's 10 000-child fan-out; the full run takes longer. Sizes: xtask/src/bench/mod.rs (`Plan`).\n\
- The Python side runs in a virtualenv cached under `~/.cache/flatmachines-rs/bench-venv` (made with `pip install \
flatmachines==1.0.0 langgraph langgraph-checkpoint-sqlite` when missing) through `bench/py_bench.py`, which times \
`FlatMachine.execute` (the reference) or `app.invoke` (LangGraph, the same two-node loop and payload) and leaves \
imports out. Its checkpoints land in a scratch copy of `bench/`.\n\
- Redis and PostgreSQL are the services on 127.0.0.1. Each workload uses a Redis namespace or PostgreSQL schema \
of its own and removes it; files go to temporary directories that are deleted.\n\
- How the step stays cheap: conditions are parsed once into a tree evaluated against the context without copying \
it; templates are compiled once and read the context through lazy views; the context's JSON encoding is cached \
until it changes, so a checkpoint of an unchanged context is a memory copy; snapshots are encoded into a reused \
buffer.\n\
- Durability differs between stores and decides most of their cost. Local files: per checkpoint the snapshot and \
the pointer are written to temporary files, synced, renamed in order, and the directory synced once; the reference \
does not sync. SQLite: `synchronous=NORMAL` by default (a commit survives a killed process, not a power loss), \
where LangGraph's saver uses `synchronous=FULL`. PostgreSQL: every checkpoint and every claim is a commit that \
waits for its WAL flush (`synchronous_commit = on`). A step writes three checkpoints (`state_enter`, `execute`, \
`state_exit`).\n\
- The divan benches (`cargo bench -p flatmachines-engine --bench engine`, `-p flatmachines-sqlite --bench sqlite`, \
`-p flatmachines-redis --bench claims`, `-p flatmachines-postgres --bench claims`, `-p flatmachines-s3 --bench \
loop_s3`) time the same workloads in-process for day-to-day work; this page does not parse them.\n";

/// The README line between `<!-- bench-headline -->` and `<!-- /bench-headline -->`.
pub(crate) fn headline(r: &Results) -> String {
    let step = r.get("loop.memory");
    let reference = r.get("ref.loop.memory");
    let child = r.get("fanout.1000");
    let ref_child = r.get("ref.fanout.1000");
    let vs = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
        (Some(o), Some(t)) if o > 0.0 => format!(
            " (the Python reference: {} µs, {}× slower)",
            num(t),
            num(t / o)
        ),
        _ => String::new(),
    };
    format!(
        "**Speed** ({}, `cargo xtask bench`): {} per state step with in-memory checkpoints{} and {} per `foreach` child{} ([docs/benchmarks.md](docs/benchmarks.md)).",
        r.meta.date.split_whitespace().next().unwrap_or_default(),
        opt(step, " µs"),
        vs(step, reference),
        opt(child, " µs"),
        vs(child, ref_child),
    )
}

const OPEN: &str = "<!-- bench-headline -->";
const CLOSE: &str = "<!-- /bench-headline -->";

/// `text` with the headline between the markers replaced.
pub(crate) fn replace_headline(text: &str, headline: &str) -> Option<String> {
    let start = text.find(OPEN)? + OPEN.len();
    let end = start + text[start..].find(CLOSE)?;
    Some(format!("{}{headline}{}", &text[..start], &text[end..]))
}

/// Rewrites the README's headline line, when its markers are there.
pub(crate) fn update_readme(path: &Path, r: &Results) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match replace_headline(&text, &headline(r)) {
        Some(new) if new != text => {
            std::fs::write(path, new).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        Some(_) => Ok(()),
        None => {
            eprintln!(
                "xtask: bench: {} has no `{OPEN}…{CLOSE}` markers; its headline was left alone",
                path.display()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
