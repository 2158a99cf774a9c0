//! `cargo xtask fuzz-reference`: random machines run on the Python reference (flatmachines
//! 1.0.0, installed into the project's cache) and here, their outcomes compared. A difference
//! passes only by a named rule of [`compare::RULES`], each a documented divergence; any other
//! is a mismatch, minimised and written under `target/fuzz-reference/` as a corpus case.

mod compare;
mod expressions;
mod generate;
mod minimise;
mod node;
mod rng;
mod run;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use serde_json::{Value, json};

use crate::s3_server::{cache_dir, fresh_venv_with, install_lock, venv_bin};
use compare::{Rules, Verdict, compare};
use generate::Case;
use node::Node;
use run::{Outcome, Reference};

/// The reference and what it runs on, pinned so that a seed means the same on every machine.
const REFERENCE: [&str; 5] = [
    "flatmachines==1.0.0",
    "cel-python==0.5.0",
    "Jinja2==3.1.6",
    "PyYAML==6.0.4",
    "aiofiles",
];

const DRIVER: &str = include_str!("reference_driver.py");

struct Options {
    cases: u64,
    seed: u64,
    jobs: usize,
    rules: Rules,
    expect_mismatch: bool,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        cases: 200,
        seed: 1,
        jobs: 2,
        rules: Rules::all(),
        expect_mismatch: false,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = |flag: &str| {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |flag: &str, text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("{flag} takes a whole number, not `{text}`"))
        };
        match arg.as_str() {
            "--cases" => options.cases = number("--cases", value("--cases")?)?,
            "--seed" => options.seed = number("--seed", value("--seed")?)?,
            "--jobs" => options.jobs = number("--jobs", value("--jobs")?)?.clamp(1, 16) as usize,
            "--without-rule" => options.rules = options.rules.without(&value("--without-rule")?)?,
            "--expect-mismatch" => options.expect_mismatch = true,
            other => return Err(format!("unknown fuzz-reference option `{other}`")),
        }
    }
    Ok(options)
}

/// The outcome of one case on both sides.
struct Result1 {
    index: u64,
    case: Case,
    ours: Outcome,
    reference: Outcome,
    verdict: Verdict,
}

pub(crate) fn fuzz_reference(args: &[String]) -> Result<(), String> {
    let options = options(args)?;
    let root = crate::workspace_root();
    // The workspace's selection, so that after `cargo xtask test` built the tests this is a
    // no-op rather than a rebuild with other features.
    crate::cargo("build", &["build", "--workspace", "--bins"])?;
    let binary = target_dir(&root).join("debug").join("flatmachines");
    let python = reference_python()?;
    let out = target_dir(&root).join("fuzz-reference");
    let scratch = out.join(format!("seed-{}", options.seed));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let driver = scratch.join("reference_driver.py");
    fs::write(&driver, DRIVER).map_err(|e| format!("cannot write {}: {e}", driver.display()))?;

    let started = Instant::now();
    eprintln!(
        "xtask: fuzz-reference: {} cases, seed {}, {} jobs",
        options.cases, options.seed, options.jobs
    );
    let results = run_all(&options, &binary, &python, &driver, &scratch);
    let elapsed = started.elapsed();

    let mut accepted: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut same, mut lost) = (0, 0);
    let mut mismatches = Vec::new();
    for result in &results {
        match &result.verdict {
            Verdict::Same => same += 1,
            Verdict::Accepted(rules) => {
                for rule in rules {
                    *accepted.entry(rule).or_default() += 1;
                }
            }
            Verdict::Lost(why) => {
                lost += 1;
                eprintln!(
                    "xtask: fuzz-reference: case {} not compared: {why}",
                    result.index
                );
            }
            Verdict::Mismatch(_) => mismatches.push(result),
        }
    }
    let agreed_by_rule = results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Accepted(_)))
        .count();
    eprintln!(
        "xtask: fuzz-reference: {} cases in {:.1} s: {same} identical, {agreed_by_rule} by a documented divergence, {} mismatched, {lost} not compared",
        results.len(),
        elapsed.as_secs_f64(),
        mismatches.len()
    );
    for (rule, count) in &accepted {
        eprintln!("xtask: fuzz-reference:   rule {rule}: {count} cases");
    }
    let mut reference = Reference::new(&python, &driver, &scratch);
    // A planted divergence needs showing once; real mismatches, the first few of them.
    let shown = if options.expect_mismatch { 1 } else { 5 };
    for result in mismatches.iter().take(shown) {
        let path = minimised(result, &options, &binary, &mut reference, &scratch, &out)?;
        eprintln!(
            "xtask: fuzz-reference: case {} mismatched ({}); minimised into {}",
            result.index,
            class(&result.verdict),
            path.display()
        );
    }
    if lost > results.len() / 20 {
        return Err(format!(
            "{lost} of {} cases could not be compared",
            results.len()
        ));
    }
    match (mismatches.is_empty(), options.expect_mismatch) {
        (true, false) | (false, true) => Ok(()),
        (false, false) => Err(format!(
            "{} mismatches with the reference",
            mismatches.len()
        )),
        (true, true) => Err("no mismatch found, though one was expected".to_owned()),
    }
}

fn class(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Mismatch(class) => class,
        _ => "",
    }
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The Python of `~/.cache/flatmachines-rs/reference/venv`, installed from PyPI when missing.
fn reference_python() -> Result<PathBuf, String> {
    let cache = cache_dir("reference");
    let venv = cache.join("venv");
    let python = venv_bin(&venv, "python");
    let check = "import importlib.metadata as m, celpy, flatmachines; assert m.version('flatmachines') == '1.0.0'";
    let ready = || {
        std::process::Command::new(&python)
            .args(["-c", check])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready() {
        return Ok(python);
    }
    let _lock = install_lock(&cache)?;
    if !ready() {
        eprintln!(
            "xtask: fuzz-reference: installing {} from PyPI into {} (once)",
            REFERENCE.join(" "),
            venv.display()
        );
        fresh_venv_with(&venv, &REFERENCE)?;
    }
    if ready() {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import the reference after installing it",
            python.display()
        ))
    }
}

/// Runs every case, `jobs` at a time, each job with its own reference driver.
fn run_all(
    options: &Options,
    binary: &Path,
    python: &Path,
    driver: &Path,
    scratch: &Path,
) -> Vec<Result1> {
    let next = Arc::new(AtomicU64::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    thread::scope(|scope| {
        for job in 0..options.jobs {
            let (next, results) = (Arc::clone(&next), Arc::clone(&results));
            let dir = scratch.join(format!("job-{job}"));
            scope.spawn(move || {
                let _ = fs::create_dir_all(&dir);
                let mut reference = Reference::new(python, driver, &dir);
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= options.cases {
                        break;
                    }
                    let case = generate::case(options.seed, index);
                    let (ours, theirs) = run_case(&case, binary, &mut reference, &dir, index);
                    let verdict = compare(&ours, &theirs, &options.rules);
                    if let Ok(mut all) = results.lock() {
                        all.push(Result1 {
                            index,
                            case,
                            ours,
                            reference: theirs,
                            verdict,
                        });
                    }
                }
            });
        }
    });
    let mut results = Arc::try_unwrap(results)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .unwrap_or_default();
    results.sort_by_key(|r| r.index);
    results
}

fn run_case(
    case: &Case,
    binary: &Path,
    reference: &mut Reference,
    dir: &Path,
    index: u64,
) -> (Outcome, Outcome) {
    let path = dir.join(format!("case-{index}.yml"));
    if let Err(e) = fs::write(&path, case.doc.to_yaml()) {
        let lost = Outcome::Lost(format!("cannot write {}: {e}", path.display()));
        return (lost.clone(), lost);
    }
    let ours = run::ours(binary, &path, &case.input, case.max_steps);
    let theirs = reference.run(&path, &case.input, case.max_steps);
    (ours, theirs)
}

/// Minimises a mismatch and writes it as a corpus case; returns its path.
fn minimised(
    result: &Result1,
    options: &Options,
    binary: &Path,
    reference: &mut Reference,
    scratch: &Path,
    out: &Path,
) -> Result<PathBuf, String> {
    let wanted = class(&result.verdict);
    let dir = scratch.join("minimise");
    let _ = fs::create_dir_all(&dir);
    let (small, attempts) = minimise::minimise(&result.case, |candidate| {
        let (ours, theirs) = run_case(candidate, binary, reference, &dir, u64::MAX);
        compare(&ours, &theirs, &options.rules) == Verdict::Mismatch(wanted)
    });
    let (ours, theirs) = run_case(&small, binary, reference, &dir, u64::MAX);
    let path = out.join(format!(
        "mismatch-seed{}-case{}.yml",
        options.seed, result.index
    ));
    let text = corpus_case(
        &small,
        &ours,
        &theirs,
        wanted,
        options.seed,
        result.index,
        attempts,
    );
    fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let _ = (&result.ours, &result.reference);
    Ok(path)
}

/// The case as a file for `crates/engine/tests/corpus/`: a comment saying what differed, the
/// machine, and its `metadata.test`.
fn corpus_case(
    case: &Case,
    ours: &Outcome,
    reference: &Outcome,
    class: &str,
    seed: u64,
    index: u64,
    attempts: usize,
) -> String {
    let mut doc = case.doc.clone();
    let input = json_node(&case.input);
    doc.insert(
        "metadata",
        Node::map([(
            "test",
            Node::map([
                ("input", input),
                ("max_steps", Node::plain(case.max_steps.to_string())),
                ("reference", Node::plain("same")),
            ]),
        )]),
    );
    format!(
        "# Found by `cargo xtask fuzz-reference --seed {seed}` (case {index}), minimised in {attempts} runs: {class}.\n# ours:      {}\n# reference: {}\n{}",
        one_line(ours),
        one_line(reference),
        doc.to_yaml()
    )
}

fn one_line(outcome: &Outcome) -> String {
    let text = match outcome {
        Outcome::Output(v) => json!({"output": v}).to_string(),
        Outcome::StepLimit(v) => json!({"step_limit": v}).to_string(),
        Outcome::NoTransition => "no transition".to_owned(),
        Outcome::Failed { kind, message } => format!("failed ({kind}): {message}"),
        Outcome::Refused(message) => format!("refused: {message}"),
        Outcome::Lost(why) => format!("lost: {why}"),
    };
    text.replace('\n', " ").chars().take(400).collect()
}

/// A JSON value as a node: strings quoted, everything else as JSON text (which YAML reads
/// the same way).
fn json_node(value: &Value) -> Node {
    match value {
        Value::Object(map) => {
            Node::Map(map.iter().map(|(k, v)| (k.clone(), json_node(v))).collect())
        }
        Value::Array(items) => Node::List(items.iter().map(json_node).collect()),
        Value::String(s) => Node::str(s.clone()),
        other => Node::plain(other.to_string()),
    }
}
