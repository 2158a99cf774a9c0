//! Tests of the PostgreSQL backends against a live server (`FLATMACHINES_TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`). Each test works in a schema of its
//! own, marks its connections with an application name of its own (so it can terminate
//! exactly those), and drops the schema afterwards. Without a server the tests are skipped,
//! except under `CI=true`, where that fails.
//!
//! The conformance suites run from `flatmachines-conformance`'s runner; these tests cover
//! what is particular to PostgreSQL: terminated sessions, advisory locks, LISTEN sessions,
//! migrations, the claim index, TLS, and servers that refuse or never answer.

mod faults;
mod lock;
mod persistence;
mod results;
mod schema;
mod support;
mod tls;
mod work;
