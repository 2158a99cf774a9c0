//! Tests of the S3 backend. Most run against an S3-compatible server
//! (`FLATMACHINES_TEST_S3_URL`, default the local emulator `cargo xtask test` starts on
//! 127.0.0.1:5000), each under a prefix of its own that is deleted afterwards; without a
//! server they are skipped, except under `CI=true`, where that fails. Answers a real server
//! will not give on demand (throttling, refusals, silence, ignored conditions) come from a
//! scripted fake on 127.0.0.1.
//!
//! The conformance suites run from `flatmachines-conformance`'s runner; these tests cover
//! what is particular to S3.

mod engine;
mod fake;
mod faults;
mod persistence;
mod support;
