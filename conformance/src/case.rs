//! A case: one named check of one contract, and the plumbing every case shares.

use std::fmt::{self, Debug, Display};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::factory::Factory;
use crate::report::{CaseReport, Outcome, SuiteReport};
use crate::{Capabilities, Capability};

/// What a case body returns: `Err` carries the failure message.
pub(crate) type CaseResult = Result<(), String>;

/// The body of a case.
pub(crate) type RunFn<F> = for<'a> fn(Env<'a, F>) -> BoxFuture<'a, CaseResult>;

/// The longest a case may run. Every wait inside a case is bounded much tighter; this catches
/// a backend call that never returns.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(180);

/// One case of a suite, run against a factory of type `F` (such as
/// [`PersistenceFactory`](crate::PersistenceFactory)).
///
/// Cases are listed by each suite's `cases()` (for example
/// [`suites::persistence::cases`](crate::suites::persistence::cases)) so that a test runner
/// can make one trial per case.
pub struct Case<F: 'static> {
    pub(crate) suite: &'static str,
    pub(crate) name: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) requires: &'static [Capability],
    pub(crate) run: RunFn<F>,
}

impl<F> Case<F> {
    /// The suite the case belongs to (`persistence`, `lock`, …).
    pub fn suite(&self) -> &'static str {
        self.suite
    }

    /// The case's name, unique within its suite.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What it checks, naming the contract clauses.
    pub fn summary(&self) -> &'static str {
        self.summary
    }

    /// The capabilities it needs.
    pub fn requires(&self) -> &'static [Capability] {
        self.requires
    }

    /// The needed capabilities that `capabilities` does not declare; the case is skipped
    /// unless this is empty.
    pub fn missing(&self, capabilities: &Capabilities) -> Vec<Capability> {
        self.requires
            .iter()
            .copied()
            .filter(|c| !capabilities.has(*c))
            .collect()
    }

    /// Runs the case (or skips it, if a capability is missing). It needs a Tokio runtime with
    /// the time driver; a panic or a run longer than [`CASE_TIMEOUT`] is a failure.
    pub async fn run(&self, factory: &F, capabilities: &Capabilities) -> CaseReport
    where
        F: Sync,
    {
        let missing = self.missing(capabilities);
        if !missing.is_empty() {
            return self.report(Outcome::Skipped { missing }, Duration::ZERO);
        }
        let env = Env {
            factory,
            caps: capabilities,
            case: self.name,
        };
        let started = Instant::now();
        let body = AssertUnwindSafe((self.run)(env)).catch_unwind();
        let outcome = match tokio::time::timeout(CASE_TIMEOUT, body).await {
            Ok(Ok(Ok(()))) => Outcome::Passed,
            Ok(Ok(Err(message))) => Outcome::Failed { message },
            Ok(Err(panic)) => Outcome::Failed {
                message: format!("panicked: {}", panic_message(&*panic)),
            },
            Err(_) => Outcome::Failed {
                message: format!("did not finish within {CASE_TIMEOUT:?}"),
            },
        };
        self.report(outcome, started.elapsed())
    }

    fn report(&self, outcome: Outcome, duration: Duration) -> CaseReport {
        CaseReport {
            suite: self.suite,
            case: self.name,
            outcome,
            duration,
        }
    }
}

impl<F> Debug for Case<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("suite", &self.suite)
            .field("name", &self.name)
            .field("requires", &self.requires)
            .finish_non_exhaustive()
    }
}

/// Runs every case of a suite in order against `factory` and collects the outcomes.
pub async fn run_cases<F: Sync>(
    suite: &'static str,
    cases: &[Case<F>],
    factory: &F,
    capabilities: &Capabilities,
) -> SuiteReport {
    let mut reports = Vec::with_capacity(cases.len());
    for case in cases {
        reports.push(case.run(factory, capabilities).await);
    }
    SuiteReport {
        suite,
        cases: reports,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}

/// What a case body gets: the factory, the declared capabilities and its own name.
pub(crate) struct Env<'a, F> {
    pub(crate) factory: &'a F,
    pub(crate) caps: &'a Capabilities,
    pub(crate) case: &'static str,
}

impl<T: ?Sized + Send + Sync + 'static> Env<'_, Factory<T>> {
    /// A namespace no other call returns: the case name and 8 random hex digits.
    pub(crate) fn namespace(&self) -> String {
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{}-{}", self.case, &random[..8])
    }

    /// Opens `namespace`, naming it in the failure.
    pub(crate) async fn open(&self, namespace: &str) -> Result<Arc<T>, String> {
        self.factory
            .open(namespace)
            .await
            .map_err(|e| format!("the factory could not open namespace `{namespace}`: {e}"))
    }

    /// A backend in a namespace of its own.
    pub(crate) async fn fresh(&self) -> Result<Arc<T>, String> {
        self.open(&self.namespace()).await
    }
}

/// Builds a [`Case`] of the suite named by the enclosing module's `SUITE` constant.
macro_rules! case {
    ($name:literal, $summary:literal, [$($cap:ident),*], $body:path) => {
        $crate::case::Case {
            suite: SUITE,
            name: $name,
            summary: $summary,
            requires: &[$($crate::Capability::$cap),*],
            run: |env| Box::pin($body(env)),
        }
    };
}

/// Fails the case with the formatted message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+));
        }
    };
}

/// Fails the case unless both sides are equal, showing both (shortened).
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($message:tt)+) => {
        // A `match` keeps temporaries in the operands alive for the comparison.
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    return Err(format!(
                        "{}\n  got:      {}\n  expected: {}",
                        format!($($message)+),
                        $crate::case::short(left),
                        $crate::case::short(right),
                    ));
                }
            }
        }
    };
}

pub(crate) use {case, ensure, ensure_eq};

/// `value`'s `Debug` text, cut to a readable length.
pub(crate) fn short(value: &dyn Debug) -> String {
    const LIMIT: usize = 400;
    let text = format!("{value:?}");
    if text.len() <= LIMIT {
        return text;
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

/// Adds what was being done to a backend error.
pub(crate) trait Context<T> {
    /// Maps the error to `"{what}: {error}"`.
    fn ctx(self, what: impl Display) -> Result<T, String>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn ctx(self, what: impl Display) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Awaits `future` for at most `limit`, so a backend that hangs fails the case.
pub(crate) async fn bounded<T>(
    what: impl Display,
    limit: Duration,
    future: impl Future<Output = T>,
) -> Result<T, String> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| format!("{what} did not finish within {limit:?}"))
}

/// Waits for a spawned task, turning a panic in it into a failure.
pub(crate) async fn join<T>(what: &str, task: tokio::task::JoinHandle<T>) -> Result<T, String> {
    bounded(what, Duration::from_secs(60), task)
        .await?
        .map_err(|e| format!("{what} panicked or was cancelled: {e}"))
}
