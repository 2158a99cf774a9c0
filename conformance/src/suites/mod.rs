//! The suites' case lists, one module per runtime trait plus the machine-level suite.
//!
//! Each module's `cases()` lists its cases in the order the suite runs them. A runner makes
//! one trial per case and runs it with [`Case::run`](crate::Case::run); the crate-level
//! functions ([`persistence`](crate::persistence), …) run a whole suite.

pub mod lock;
pub mod machines;
pub mod persistence;
pub mod registration;
pub mod results;
pub mod work;
