//! Tests of the local-file backends through their public API. Test names start with the
//! contract clause they check, where they check one.

mod lock;
mod persistence;
mod support;
