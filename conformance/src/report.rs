//! What a suite run found, case by case.

use std::fmt;
use std::time::Duration;

use crate::Capability;

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// A check failed, or the case panicked or ran out of time.
    Failed {
        /// What went wrong, naming the contract clause where there is one.
        message: String,
    },
    /// Not run: the backend did not declare capabilities the case needs.
    Skipped {
        /// The capabilities the case needs and the backend lacks.
        missing: Vec<Capability>,
    },
}

impl Outcome {
    /// Whether the case passed.
    pub fn is_passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }

    /// Whether the case failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }

    /// Whether the case was skipped.
    pub fn is_skipped(&self) -> bool {
        matches!(self, Outcome::Skipped { .. })
    }

    /// Why a skipped case was skipped, e.g. `lacks exclusion (a held lock refuses every
    /// other acquirer)`; `None` for cases that ran.
    pub fn skip_reason(&self) -> Option<String> {
        let Outcome::Skipped { missing } = self else {
            return None;
        };
        let parts: Vec<String> = missing
            .iter()
            .map(|c| format!("{} ({})", c.name(), c.description()))
            .collect();
        Some(format!("lacks {}", parts.join(", ")))
    }
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// The suite's name (`persistence`, `lock`, …).
    pub suite: &'static str,
    /// The case's name (`list_by_prefix`, …).
    pub case: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it ran (zero when skipped).
    pub duration: Duration,
}

/// The outcomes of every case of one suite, in the suite's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteReport {
    /// The suite's name.
    pub suite: &'static str,
    /// One report per case.
    pub cases: Vec<CaseReport>,
}

impl SuiteReport {
    /// Whether no case failed. Skipped cases do not count against it; check
    /// [`skipped`](Self::skipped) to see what was not covered.
    pub fn is_success(&self) -> bool {
        !self.cases.iter().any(|c| c.outcome.is_failed())
    }

    /// The report of the case called `name`.
    pub fn case(&self, name: &str) -> Option<&CaseReport> {
        self.cases.iter().find(|c| c.case == name)
    }

    /// The cases that passed.
    pub fn passed(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases.iter().filter(|c| c.outcome.is_passed())
    }

    /// The cases that failed.
    pub fn failed(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases.iter().filter(|c| c.outcome.is_failed())
    }

    /// The cases that were skipped.
    pub fn skipped(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases.iter().filter(|c| c.outcome.is_skipped())
    }
}

/// One line per case: `ok`, `FAILED` with its message indented below, or `skipped` with the
/// missing capabilities; then the counts.
impl fmt::Display for SuiteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.cases.iter().map(|c| c.case.len()).max().unwrap_or(0);
        writeln!(f, "{} suite:", self.suite)?;
        for case in &self.cases {
            match &case.outcome {
                Outcome::Passed => writeln!(
                    f,
                    "  ok       {:width$}  ({} ms)",
                    case.case,
                    case.duration.as_millis()
                )?,
                Outcome::Failed { message } => {
                    writeln!(f, "  FAILED   {}", case.case)?;
                    for line in message.lines() {
                        writeln!(f, "             {line}")?;
                    }
                }
                outcome @ Outcome::Skipped { .. } => writeln!(
                    f,
                    "  skipped  {:width$}  {}",
                    case.case,
                    outcome.skip_reason().unwrap_or_default()
                )?,
            }
        }
        write!(
            f,
            "{}: {} passed, {} failed, {} skipped",
            self.suite,
            self.passed().count(),
            self.failed().count(),
            self.skipped().count()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcomes: Vec<(&'static str, Outcome)>) -> SuiteReport {
        SuiteReport {
            suite: "lock",
            cases: outcomes
                .into_iter()
                .map(|(case, outcome)| CaseReport {
                    suite: "lock",
                    case,
                    outcome,
                    duration: Duration::from_millis(3),
                })
                .collect(),
        }
    }

    #[test]
    fn display_lists_every_case_and_the_counts() {
        let report = report(vec![
            ("reacquire", Outcome::Passed),
            (
                "exclusive",
                Outcome::Failed {
                    message: "clause 2: second acquire\ngot true".into(),
                },
            ),
            (
                "lease",
                Outcome::Skipped {
                    missing: vec![Capability::LeaseExpiry],
                },
            ),
        ]);
        assert!(!report.is_success());
        let text = report.to_string();
        assert!(text.contains("  ok       reacquire"), "{text}");
        assert!(text.contains("FAILED   exclusive\n"), "{text}");
        assert!(text.contains("             got true"), "{text}");
        assert!(
            text.contains("skipped  lease      lacks lease-expiry ("),
            "{text}"
        );
        assert!(
            text.ends_with("lock: 1 passed, 1 failed, 1 skipped"),
            "{text}"
        );
        assert_eq!(
            report.case("lease").map(|c| c.outcome.is_skipped()),
            Some(true)
        );
    }

    #[test]
    fn skips_alone_are_a_success() {
        let report = report(vec![(
            "lease",
            Outcome::Skipped {
                missing: vec![Capability::LeaseExpiry, Capability::Exclusion],
            },
        )]);
        assert!(report.is_success());
        let reason = report.cases[0].outcome.skip_reason().unwrap();
        assert!(reason.starts_with("lacks lease-expiry ("), "{reason}");
        assert!(reason.contains(", exclusion ("), "{reason}");
        assert_eq!(Outcome::Passed.skip_reason(), None);
    }
}
