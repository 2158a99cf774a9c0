//! Project automation. `cargo xtask test` runs everything CI runs; `cargo xtask conformance`
//! runs the backend conformance suites and prints their capability table; `cargo xtask
//! schema` regenerates `spec/`; `cargo xtask bench` writes `docs/benchmarks.md`; `cargo xtask
//! fuzz-reference` compares random machines with the Python reference.

mod bench;
mod fuzz;
mod mcp_servers;
mod s3_server;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [--no-lint]   format check, clippy (-D warnings; also the facade without default
                     features), every test of the workspace, doctests, and 100 cases of
                     fuzz-reference (plus one with a rule off, which must mismatch)
  lint               format check and clippy only
  conformance [--backend NAME] [--url URL]
                     the conformance suites against one backend (memory, local, sqlite,
                     redis, postgres, s3) or all in-tree ones (`all`, the default); --url
                     sets FLATMACHINES_TEST_<NAME>_URL for a single named backend
  schema [--check]   regenerate the JSON Schemas in spec/ from the Rust config types
                     (--check: fail if spec/ is stale instead of writing it)
  bench [--quick]    time the bench/ workloads (in-process, CLI, Python reference,
                     LangGraph, bare servers) and regenerate docs/benchmarks.md
  fuzz-reference [--cases N] [--seed S] [--jobs J] [--without-rule NAME] [--expect-mismatch]
                     run N random machines (default 200) on the Python reference
                     (flatmachines 1.0.0, installed into the cache) and here, compare them by
                     the documented divergences' rules, and minimise each mismatch into a
                     corpus case under target/fuzz-reference/; --without-rule turns a rule
                     off, --expect-mismatch succeeds only when a mismatch is found
";

/// Backend names `conformance --backend` accepts; the runner decides which are in the build.
const BACKENDS: [&str; 7] = [
    "memory", "local", "sqlite", "redis", "postgres", "s3", "all",
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(args[1..].iter().any(|a| a == "--no-lint")),
        Some("lint") => lint(),
        Some("conformance") => conformance(&args[1..]),
        Some("schema") => schema(args[1..].iter().any(|a| a == "--check")),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz-reference") => fuzz::fuzz_reference(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs `cargo <args>` in the workspace root, failing with the step's name.
fn cargo(step: &str, args: &[&str]) -> Result<(), String> {
    cargo_with_env(step, args, &[])
}

/// Runs `cargo <args>` with extra environment variables.
fn cargo_with_env(step: &str, args: &[&str], vars: &[(String, String)]) -> Result<(), String> {
    for (key, value) in vars {
        eprintln!("xtask: {step}: {key}={value}");
    }
    eprintln!("xtask: {step}: cargo {}", args.join(" "));
    let status = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("{step}: cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn has_nextest() -> bool {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn lint() -> Result<(), String> {
    cargo("format check", &["fmt", "--all", "--", "--check"])?;
    cargo(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // Users pick backends with the facade's features; the workspace build unifies them all,
    // so the smallest selection is checked on its own.
    cargo(
        "clippy, facade without default features",
        &[
            "clippy",
            "-p",
            "flatmachines",
            "--no-default-features",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )
}

fn test(skip_lint: bool) -> Result<(), String> {
    if !skip_lint {
        lint()?;
    }
    let ci = env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    // Stopped when it goes out of scope, after failed tests too.
    let s3 = s3_server::S3Server::prepare()?;
    let mut vars = s3.env();
    vars.extend(mcp_servers::prepare()?);
    if has_nextest() {
        let profile = if ci { "ci" } else { "default" };
        cargo_with_env(
            "tests",
            &["nextest", "run", "--workspace", "--profile", profile],
            &vars,
        )?;
    } else {
        eprintln!("xtask: cargo-nextest not found; using cargo test");
        cargo_with_env(
            "tests",
            &["test", "--workspace", "--lib", "--bins", "--tests"],
            &vars,
        )?;
    }
    cargo_with_env("doctests", &["test", "--workspace", "--doc"], &vars)?;
    // A short differential run against the Python reference, and the check that the fuzzer
    // finds a divergence when the rule that accepts it is switched off.
    let fixed = ["--cases", "100", "--seed", "7"].map(String::from);
    fuzz::fuzz_reference(&fixed)?;
    let planted = ["--without-rule", "python-booleans", "--expect-mismatch"].map(String::from);
    fuzz::fuzz_reference(&[&fixed[..], &planted[..]].concat())
}

/// `schema [--check]`: the schema test of flatmachines-core compares `spec/` with the schemas
/// generated from the config types, and rewrites `spec/` when asked to.
fn schema(check_only: bool) -> Result<(), String> {
    let args = [
        "test",
        "-p",
        "flatmachines-core",
        "--lib",
        "--",
        "schema::",
        "--quiet",
    ];
    if check_only {
        return cargo("schema check", &args);
    }
    cargo_with_env(
        "schema",
        &args,
        &[("FLATMACHINES_UPDATE_SPEC".to_owned(), "1".to_owned())],
    )?;
    eprintln!("xtask: spec/ regenerated; review it with `git diff spec/`");
    Ok(())
}

/// `conformance [--backend NAME] [--url URL]`: the suites through their libtest runner, whose
/// output (trials, then the capability and count tables) goes straight to the terminal.
fn conformance(args: &[String]) -> Result<(), String> {
    let mut backend = "all".to_owned();
    let mut url = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = |flag: &str| {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--backend" => backend = value("--backend")?,
            "--url" => url = Some(value("--url")?),
            other => {
                if let Some(name) = other.strip_prefix("--backend=") {
                    backend = name.to_owned();
                } else if let Some(given) = other.strip_prefix("--url=") {
                    url = Some(given.to_owned());
                } else {
                    return Err(format!("unknown conformance option `{other}`\n\n{USAGE}"));
                }
            }
        }
    }
    if !BACKENDS.contains(&backend.as_str()) {
        return Err(format!(
            "unknown backend `{backend}` (expected one of: {})",
            BACKENDS.join(", ")
        ));
    }
    let mut vars = vec![("FLATMACHINES_TEST_BACKEND".to_owned(), backend.clone())];
    if let Some(url) = url {
        if backend == "all" {
            return Err("--url applies to one backend: add --backend NAME".to_owned());
        }
        let var = format!("FLATMACHINES_TEST_{}_URL", backend.to_ascii_uppercase());
        vars.push((var, url));
    }
    let s3_selected = backend == "s3" || backend == "all";
    let s3_given = vars.iter().any(|(k, _)| k == "FLATMACHINES_TEST_S3_URL");
    // Stopped when it goes out of scope, after a failed run too.
    let s3 = if s3_selected && !s3_given {
        Some(s3_server::S3Server::prepare()?)
    } else {
        None
    };
    vars.extend(s3.iter().flat_map(s3_server::S3Server::env));
    cargo_with_env(
        "conformance",
        &[
            "test",
            "-p",
            "flatmachines-conformance",
            "--test",
            "conformance",
            "--",
            "--nocapture",
        ],
        &vars,
    )
}
