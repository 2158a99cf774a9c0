//! Tests of the Redis backends against a live server (`FLATMACHINES_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379/0`). Each test works in a namespace of its own, connects as an ACL
//! user of its own (so it can kill exactly its own connections) and deletes both afterwards.
//! Without a server the tests are skipped, except under `CI=true`, where that fails.
//!
//! The conformance suites run from `flatmachines-conformance`'s runner; these tests cover
//! what is particular to Redis: dropped connections, lost leases, subscriptions, glob
//! characters in keys.

mod engine;
mod faults;
mod lock;
mod persistence;
mod results;
mod support;
mod work;
