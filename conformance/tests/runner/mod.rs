//! The plan of a run: which backends, which trials, and what became of them.

pub(crate) mod backends;
pub(crate) mod summary;

use std::sync::{Arc, Mutex, PoisonError};

use flatmachines_conformance::{Capabilities, Capability, Case, Outcome, suites};
use libtest_mimic::{Completion, Failed, Trial};

use backends::{Backend, IN_TREE, NOT_IN_BUILD};

/// Selects the backends to test.
pub(crate) const BACKEND_ENV: &str = "FLATMACHINES_TEST_BACKEND";

/// A selected backend: open, or why not.
pub(crate) enum Entry {
    Ready(Box<Backend>),
    Unavailable {
        name: String,
        reason: String,
        /// Fail the run (under `CI=true`, or for a name this build cannot test), rather than
        /// report the backend as skipped.
        fail: bool,
    },
}

/// What one case trial is about, known before anything runs.
#[derive(Clone)]
pub(crate) struct Planned {
    pub(crate) backend: &'static str,
    pub(crate) suite: &'static str,
    pub(crate) case: &'static str,
    pub(crate) requires: &'static [Capability],
    pub(crate) missing: Vec<Capability>,
}

/// Outcomes of the trials that ran, by trial name.
pub(crate) type Ran = Arc<Mutex<Vec<(String, Outcome)>>>;

/// Whether `CI` says this is a CI run.
pub(crate) fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The backends `FLATMACHINES_TEST_BACKEND` selects, each opened or explained.
pub(crate) fn select() -> Vec<Entry> {
    let selection = std::env::var(BACKEND_ENV).unwrap_or_default();
    let selection = if selection.trim().is_empty() {
        "all".to_owned()
    } else {
        selection
    };
    let ci = is_ci();
    let mut names: Vec<String> = Vec::new();
    for name in selection.split(',').map(|n| n.trim().to_ascii_lowercase()) {
        let expanded = if name == "all" {
            IN_TREE.map(str::to_owned).to_vec()
        } else {
            vec![name]
        };
        for name in expanded {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
        .into_iter()
        .map(|name| match IN_TREE.iter().find(|n| **n == name) {
            Some(known) => match backends::open(known) {
                Ok(backend) => Entry::Ready(Box::new(backend)),
                // The generic CI rule: a backend that cannot be opened fails a CI run and
                // is reported as skipped elsewhere.
                Err(reason) => Entry::Unavailable {
                    name,
                    reason,
                    fail: ci,
                },
            },
            None if NOT_IN_BUILD.contains(&name.as_str()) => Entry::Unavailable {
                reason: format!(
                    "the `{name}` backend is not in this build yet (in-tree backends: {})",
                    IN_TREE.join(", ")
                ),
                name,
                fail: true,
            },
            None => Entry::Unavailable {
                reason: format!(
                    "unknown backend `{name}` in {BACKEND_ENV} (known: {}, all)",
                    IN_TREE
                        .iter()
                        .chain(&NOT_IN_BUILD)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                name,
                fail: true,
            },
        })
        .collect()
}

/// One trial per (backend, suite, case), plus one `open` trial per unavailable backend.
pub(crate) fn trials(entries: &[Entry], ran: &Ran) -> (Vec<Trial>, Vec<Planned>) {
    let mut trials = Vec::new();
    let mut planned = Vec::new();
    for entry in entries {
        match entry {
            Entry::Ready(backend) => {
                let mut add = |suite_trials: (Vec<Trial>, Vec<Planned>)| {
                    trials.extend(suite_trials.0);
                    planned.extend(suite_trials.1);
                };
                let name = backend.name;
                if let Some((f, caps)) = &backend.persistence {
                    add(suite(name, suites::persistence::cases(), f, caps, ran));
                }
                if let Some((f, caps)) = &backend.lock {
                    add(suite(name, suites::lock::cases(), f, caps, ran));
                }
                if let Some((f, caps)) = &backend.results {
                    add(suite(name, suites::results::cases(), f, caps, ran));
                }
                if let Some((f, caps)) = &backend.registration {
                    add(suite(name, suites::registration::cases(), f, caps, ran));
                }
                if let Some((f, caps)) = &backend.work {
                    add(suite(name, suites::work::cases(), f, caps, ran));
                }
                if let Some((f, caps)) = &backend.machines {
                    add(suite(name, suites::machines::cases(), f, caps, ran));
                }
            }
            Entry::Unavailable { name, reason, fail } => {
                let (reason, fail) = (reason.clone(), *fail);
                let trial = Trial::ignorable_test(format!("{name}::open"), move || {
                    if fail {
                        Err(Failed::from(reason))
                    } else {
                        Ok(Completion::ignored_with(reason))
                    }
                });
                // Statically ignored, so that nextest shows it as skipped too.
                trials.push(trial.with_ignored_flag(!fail));
            }
        }
    }
    (trials, planned)
}

fn suite<F: Clone + Send + Sync + 'static>(
    backend: &'static str,
    cases: &'static [Case<F>],
    factory: &F,
    caps: &Capabilities,
    ran: &Ran,
) -> (Vec<Trial>, Vec<Planned>) {
    let mut trials = Vec::new();
    let mut planned = Vec::new();
    for case in cases {
        let name = format!("{backend}::{}::{}", case.suite(), case.name());
        let missing = case.missing(caps);
        planned.push(Planned {
            backend,
            suite: case.suite(),
            case: case.name(),
            requires: case.requires(),
            missing: missing.clone(),
        });
        let (factory, caps, ran, trial_name) =
            (factory.clone(), caps.clone(), Arc::clone(ran), name.clone());
        let trial = Trial::ignorable_test(name, move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| Failed::from(format!("cannot start a Tokio runtime: {e}")))?;
            let report = runtime.block_on(case.run(&factory, &caps));
            let result = match &report.outcome {
                Outcome::Passed => Ok(Completion::Completed),
                Outcome::Failed { message } => Err(Failed::from(message.clone())),
                skipped @ Outcome::Skipped { .. } => Ok(Completion::ignored_with(
                    skipped.skip_reason().unwrap_or_default(),
                )),
            };
            ran.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((trial_name, report.outcome));
            result
        });
        // Cases the backend lacks a capability for are ignored up front; `--include-ignored`
        // runs them into their skip, which then prints its reason.
        trials.push(trial.with_ignored_flag(!missing.is_empty()));
    }
    (trials, planned)
}
