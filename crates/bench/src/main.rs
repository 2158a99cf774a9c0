//! `fm-bench`: times one workload in-process and prints one JSON object on stdout.
//!
//! `cargo xtask bench` runs it once per workload and size (a fresh process each time, so the
//! peak resident memory it reports belongs to that workload alone) and turns the JSON into
//! `docs/benchmarks.md`. Every workload runs `--samples` times and reports each sample's wall
//! time in seconds; the caller takes the median.
//!
//! ```text
//! fm-bench loop --store none|memory|file://DIR|sqlite://PATH|redis://…|postgres://… --steps N --samples K
//! fm-bench fanout --children N --samples K
//! fm-bench suspended --machines N
//! fm-bench claims --backend sqlite|redis|postgres --workers W --items N --samples K [--raw]
//! fm-bench agent --calls N --samples K
//! fm-bench tools --calls N --runs R --samples K
//! fm-bench serve-tools --calls N      # the tools workload's model, for bench/py_tools.py
//! fm-bench cleanup --store URL        # purge a Redis namespace or drop a PostgreSQL schema
//! ```
//!
//! Everything it talks to is on 127.0.0.1, and it removes what it creates (temporary
//! directories, its Redis namespace, its PostgreSQL schema) before it exits.

mod agent;
mod claims;
mod tool_calls;
mod workloads;

use std::collections::HashMap;
use std::process::ExitCode;

use serde_json::Value;

/// Errors are reported as text: this is a command-line harness.
type Result<T> = std::result::Result<T, String>;

/// `--key value` pairs after the workload name (`--raw` alone is a flag).
#[derive(Debug, Default)]
struct Args {
    values: HashMap<String, String>,
}

impl Args {
    fn parse(rest: &[String]) -> Result<Args> {
        let mut values = HashMap::new();
        let mut iter = rest.iter().peekable();
        while let Some(arg) = iter.next() {
            let key = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("expected an option `--NAME`, got `{arg}`"))?;
            let value = match iter.peek() {
                Some(next) if !next.starts_with("--") => iter.next().cloned().unwrap_or_default(),
                _ => "true".to_owned(),
            };
            values.insert(key.to_owned(), value);
        }
        Ok(Args { values })
    }

    fn text(&self, key: &str) -> Result<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("missing option --{key}"))
    }

    fn number(&self, key: &str, default: u64) -> Result<u64> {
        match self.values.get(key) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| format!("--{key} expects a whole number, got `{text}`")),
        }
    }

    fn flag(&self, key: &str) -> bool {
        self.values.get(key).is_some_and(|v| v == "true")
    }
}

/// The process's peak and current resident memory in KiB (`VmHWM`, `VmRSS`), on Linux.
pub(crate) fn memory_kib() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A multi-threaded runtime with two workers: the machine has two cores.
fn tokio() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))
}

fn run(args: &[String]) -> Result<Value> {
    let (workload, rest) = args.split_first().ok_or(
        "usage: fm-bench loop|fanout|suspended|claims|agent|tools|serve-tools|cleanup [--OPTION VALUE]…",
    )?;
    let options = Args::parse(rest)?;
    let rt = tokio()?;
    let samples = options.number("samples", 3)?.max(1);
    match workload.as_str() {
        "loop" => rt.block_on(workloads::step_loop(
            options.text("store")?,
            options.number("steps", 1000)?,
            samples,
        )),
        "fanout" => rt.block_on(workloads::fanout(
            options.number("children", 1000)?,
            samples,
        )),
        "suspended" => rt.block_on(workloads::suspended(options.number("machines", 1000)?)),
        "claims" => rt.block_on(claims::claims(&claims::ClaimOptions {
            backend: options.text("backend")?.to_owned(),
            workers: options.number("workers", 1)?.max(1),
            items: options.number("items", 1000)?.max(1),
            samples,
            raw: options.flag("raw"),
        })),
        "agent" => rt.block_on(agent::agent_calls(options.number("calls", 200)?, samples)),
        "tools" => rt.block_on(tool_calls::tool_calls(
            options.number("calls", 20)?,
            options.number("runs", 10)?.max(1),
            samples,
        )),
        "serve-tools" => rt.block_on(tool_calls::serve_tools(options.number("calls", 20)?)),
        "cleanup" => rt.block_on(workloads::cleanup(options.text("store")?)),
        other => Err(format!("unknown workload `{other}`")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("fm-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_take_values_and_flags() {
        let args = Args::parse(&strings(&["--steps", "10", "--raw", "--store", "memory"]))
            .expect("parses");
        assert_eq!(args.number("steps", 1).expect("number"), 10);
        assert!(args.flag("raw"));
        assert_eq!(args.text("store").expect("text"), "memory");
        assert_eq!(args.number("samples", 3).expect("default"), 3);
    }

    #[test]
    fn bad_options_are_refused_with_their_name() {
        let error = Args::parse(&strings(&["steps"])).expect_err("not an option");
        assert!(error.contains("steps"), "{error}");
        let args = Args::parse(&strings(&["--steps", "many"])).expect("parses");
        let error = args.number("steps", 1).expect_err("not a number");
        assert!(
            error.contains("--steps") && error.contains("many"),
            "{error}"
        );
    }
}
