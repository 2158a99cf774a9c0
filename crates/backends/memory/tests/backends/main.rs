//! Contract tests of the in-memory backends, through their public API. Test names start with
//! the contract clause they check. The result backend's tests live next to it in
//! `src/results/tests.rs` because they inspect its private waiter bookkeeping.

mod lock;
mod persistence;
mod registration;
mod work;
