//! What a backend can do beyond the contract every implementation meets.

use std::fmt;
use std::time::Duration;

use crate::process::ProcessLauncher;

/// An optional behaviour some cases need. A backend that does not declare it skips those
/// cases, and the report names the capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// Locks: while one holder has a key every other `acquire` is refused
    /// ([`ExecutionLock`](flatmachines_core::ExecutionLock) clause 2). The in-memory
    /// `NoOpLock` grants every acquire by design and lacks it.
    Exclusion,
    /// Locks: a holder that stops renewing loses the key once its lease ends (clause 5).
    /// Declared with [`Capabilities::lease_expiry`], which gives the lease's length.
    LeaseExpiry,
    /// Results: `read` with `block: true` waits for a write (clause 4).
    BlockingRead,
    /// Persistence: values of 5 MB and more are stored.
    LargeValues,
    /// Another OS process can open the same backend and namespace. Declared with
    /// [`Capabilities::cross_process`], which says how to start that process.
    CrossProcess,
}

impl Capability {
    /// Every capability, in the order reports and tables list them.
    pub const ALL: [Capability; 5] = [
        Capability::Exclusion,
        Capability::LeaseExpiry,
        Capability::BlockingRead,
        Capability::LargeValues,
        Capability::CrossProcess,
    ];

    /// The short name used in reports and tables (`exclusion`, `lease-expiry`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Capability::Exclusion => "exclusion",
            Capability::LeaseExpiry => "lease-expiry",
            Capability::BlockingRead => "blocking-read",
            Capability::LargeValues => "large-values",
            Capability::CrossProcess => "cross-process",
        }
    }

    /// One line on what declaring it promises.
    pub const fn description(self) -> &'static str {
        match self {
            Capability::Exclusion => "a held lock refuses every other acquirer",
            Capability::LeaseExpiry => "a lock held by a dead holder frees itself after a lease",
            Capability::BlockingRead => "result reads can wait for a write",
            Capability::LargeValues => "values of 5 MB and more are stored",
            Capability::CrossProcess => "another OS process can open the same backend",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The capabilities a backend declares for one suite run. Start from
/// [`Capabilities::none`] and add what the backend supports:
///
/// ```
/// use flatmachines_conformance::{Capabilities, Capability};
///
/// let caps = Capabilities::none().exclusion().large_values();
/// assert!(caps.has(Capability::Exclusion));
/// assert!(!caps.has(Capability::CrossProcess));
/// ```
///
/// Declaring a capability the backend lacks makes its cases fail, which is the point: the
/// declaration is checked, not trusted.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    exclusion: bool,
    lease: Option<Duration>,
    blocking_read: bool,
    large_values: bool,
    launcher: Option<ProcessLauncher>,
    claim_race: Option<(usize, usize)>,
}

/// The size of the cross-process claim race unless [`Capabilities::claim_race`] says
/// otherwise: helper processes, and items in the pool.
pub const DEFAULT_CLAIM_RACE: (usize, usize) = (3, 300);

impl Capabilities {
    /// No optional capability: only the cases every implementation must pass run.
    pub fn none() -> Self {
        Self::default()
    }

    /// Locks exclude: see [`Capability::Exclusion`].
    #[must_use]
    pub fn exclusion(mut self) -> Self {
        self.exclusion = true;
        self
    }

    /// Locks expire `lease` after their holder stops renewing them: see
    /// [`Capability::LeaseExpiry`]. The case waits up to three leases for the key to free.
    #[must_use]
    pub fn lease_expiry(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Result reads can block: see [`Capability::BlockingRead`].
    #[must_use]
    pub fn blocking_read(mut self) -> Self {
        self.blocking_read = true;
        self
    }

    /// Values of 5 MB and more are stored: see [`Capability::LargeValues`].
    #[must_use]
    pub fn large_values(mut self) -> Self {
        self.large_values = true;
        self
    }

    /// Another process can open the backend: `launcher` starts a process that serves the
    /// suite's helper tasks (see [`process`](crate::process)).
    #[must_use]
    pub fn cross_process(mut self, launcher: ProcessLauncher) -> Self {
        self.launcher = Some(launcher);
        self
    }

    /// Sizes the work suite's cross-process claim race: `processes` helper processes and this
    /// one claim from a pool of `items` items (default [`DEFAULT_CLAIM_RACE`]). Backends shared
    /// over the network raise it to show claims stay exact under load; it only matters with
    /// [`Capability::CrossProcess`]. Zero processes or items count as one.
    #[must_use]
    pub fn claim_race(mut self, processes: usize, items: usize) -> Self {
        self.claim_race = Some((processes.max(1), items.max(1)));
        self
    }

    /// The size of the cross-process claim race: helper processes and items.
    pub fn claim_race_size(&self) -> (usize, usize) {
        self.claim_race.unwrap_or(DEFAULT_CLAIM_RACE)
    }

    /// Whether `capability` is declared.
    pub fn has(&self, capability: Capability) -> bool {
        match capability {
            Capability::Exclusion => self.exclusion,
            Capability::LeaseExpiry => self.lease.is_some(),
            Capability::BlockingRead => self.blocking_read,
            Capability::LargeValues => self.large_values,
            Capability::CrossProcess => self.launcher.is_some(),
        }
    }

    /// The declared lease, if locks have one.
    pub fn lease(&self) -> Option<Duration> {
        self.lease
    }

    /// How to start a helper process, if the backend is shared between processes.
    pub fn launcher(&self) -> Option<&ProcessLauncher> {
        self.launcher.as_ref()
    }

    /// The declared capabilities, in [`Capability::ALL`] order.
    pub fn declared(&self) -> Vec<Capability> {
        Capability::ALL
            .into_iter()
            .filter(|c| self.has(*c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_declare_exactly_their_capability() {
        assert!(Capabilities::none().declared().is_empty());
        let caps = Capabilities::none()
            .blocking_read()
            .lease_expiry(Duration::from_secs(2));
        assert_eq!(
            caps.declared(),
            [Capability::LeaseExpiry, Capability::BlockingRead]
        );
        assert_eq!(caps.lease(), Some(Duration::from_secs(2)));
        let names: Vec<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "exclusion",
                "lease-expiry",
                "blocking-read",
                "large-values",
                "cross-process"
            ]
        );
    }
}
