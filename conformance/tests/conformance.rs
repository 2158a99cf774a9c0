//! The conformance runner: every suite against every selected backend, one trial per case.
//!
//! ```text
//! FLATMACHINES_TEST_BACKEND=local FLATMACHINES_TEST_LOCAL_URL=file:///tmp/x \
//!     cargo test -p flatmachines-conformance --test conformance
//! ```
//!
//! Trials are named `backend::suite::case`; cases a backend lacks a capability for are
//! ignored, and the tables printed after the run say which and why. The same binary is also
//! the helper process of the cross-process cases: started with the helper variable set, it
//! serves that task instead of running trials.

mod runner;

use std::collections::HashSet;
use std::process::ExitCode;

use flatmachines_conformance::process::{HelperTask, serve_helper};

fn main() -> ExitCode {
    if let Some(task) = HelperTask::from_env() {
        return helper(task);
    }
    let args = libtest_mimic::Arguments::from_args();
    let entries = runner::select();
    let ran = runner::Ran::default();
    let (trials, planned) = runner::trials(&entries, &ran);
    let selected: HashSet<String> = trials
        .iter()
        .filter(|t| !args.is_filtered_out(t))
        .map(|t| t.name().to_owned())
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // nextest runs one trial per process with `--exact`: the tables would only repeat.
    if !args.list && !args.exact {
        print!(
            "{}",
            runner::summary::render(&entries, &planned, &selected, &ran)
        );
    }
    // The backends, and with them the run's namespace directories, go before the exit.
    drop(entries);
    conclusion.exit_code()
}

/// Serves one cross-process task as the helper of a case in the parent process.
fn helper(task: Result<HelperTask, String>) -> ExitCode {
    let served = task.and_then(|task| {
        let backends = runner::backends::helper_backends()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a Tokio runtime: {e}"))?;
        let served = runtime.block_on(serve_helper(task, &backends));
        // A reader of stdin may still be blocked; it must not keep the process alive.
        runtime.shutdown_background();
        served
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("conformance helper: {message}");
            ExitCode::FAILURE
        }
    }
}
