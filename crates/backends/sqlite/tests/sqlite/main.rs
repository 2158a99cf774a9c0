//! Tests of the SQLite backends through their public API: the shared conformance suites
//! (cross-process cases included), results shared between processes, behaviour beyond the
//! contracts, schema upgrades, and faults — processes killed mid-transaction or holding
//! execution locks, read-only, corrupt and foreign files.

mod conformance;
mod faults;
mod migrations;
mod results;
mod shared_file;
mod support;
mod takeover;
