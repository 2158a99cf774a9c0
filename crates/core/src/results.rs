//! Results of executions, addressed by `flatagents://{execution_id}/{path}` URIs.

use std::fmt::{self, Debug};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::{Error, Result};

/// The URI scheme of result addresses.
pub const SCHEME: &str = "flatagents://";

/// How [`ResultBackend::read`] waits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadOptions {
    /// Wait until a value is written.
    pub block: bool,
    /// Give up waiting after this long (`None`: wait forever). Ignored unless `block`.
    pub timeout: Option<Duration>,
}

impl ReadOptions {
    /// Return at once, with `None` when nothing is stored.
    pub const fn now() -> Self {
        ReadOptions {
            block: false,
            timeout: None,
        }
    }

    /// Wait for a value, at most `timeout` when given.
    pub const fn blocking(timeout: Option<Duration>) -> Self {
        ReadOptions {
            block: true,
            timeout,
        }
    }
}

/// Where machines leave their outputs for whoever launched them.
///
/// A parent chooses a child's execution id, the child writes its output to
/// `flatagents://{child_id}/result`, and the parent reads it there.
///
/// # Contract
///
/// 1. URIs are parsed with [`ResultUri::parse`]; a malformed URI fails with
///    [`Error::InvalidUri`] in every method.
/// 2. `write` stores the value (replacing an older one) and wakes every blocked reader of that
///    URI.
/// 3. A non-blocking `read` returns `Ok(None)` when nothing is stored.
/// 4. A blocking `read` returns as soon as a value is written, or fails with
///    [`Error::Timeout`] once its timeout passes.
/// 5. `exists` tells whether a value is stored; `delete` removes it and succeeds when there is
///    none.
#[async_trait]
pub trait ResultBackend: Send + Sync + Debug {
    /// Stores `data` at `uri` and wakes its readers.
    async fn write(&self, uri: &str, data: Value) -> Result<()>;
    /// Reads the value at `uri`, waiting as `options` say.
    async fn read(&self, uri: &str, options: ReadOptions) -> Result<Option<Value>>;
    /// Whether a value is stored at `uri`.
    async fn exists(&self, uri: &str) -> Result<bool>;
    /// Removes the value at `uri`.
    async fn delete(&self, uri: &str) -> Result<()>;
}

/// A parsed `flatagents://{execution_id}/{path}` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultUri<'a> {
    /// The execution that owns the value.
    pub execution_id: &'a str,
    /// The value's path under it (`result` when the URI has none).
    pub path: &'a str,
}

impl<'a> ResultUri<'a> {
    /// Parses a URI. The execution id must be non-empty; a missing path means `result`.
    pub fn parse(uri: &'a str) -> Result<Self> {
        let invalid = |reason| Error::InvalidUri {
            uri: uri.to_owned(),
            reason,
        };
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| invalid("it must start with `flatagents://`"))?;
        let (execution_id, path) = match rest.split_once('/') {
            Some((id, "")) => (id, "result"),
            Some((id, path)) => (id, path),
            None => (rest, "result"),
        };
        if execution_id.is_empty() {
            return Err(invalid("the execution id is empty"));
        }
        if execution_id.contains("..") || path.split('/').any(|seg| seg == "..") {
            return Err(invalid("it may not contain `..`"));
        }
        if uri.chars().any(char::is_control) {
            return Err(invalid("it may not contain control characters"));
        }
        Ok(ResultUri { execution_id, path })
    }

    /// The storage key backends use for this URI: `{execution_id}/{path}`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.execution_id, self.path)
    }

    /// `data` as compact JSON text, refused with [`Error::TooLarge`] when it is longer than
    /// `limit` bytes, the most `backend` stores for one value.
    pub fn encode(&self, data: &Value, limit: usize, backend: &'static str) -> Result<String> {
        let text = serde_json::to_string(data).map_err(|source| Error::Serialization {
            action: "encode",
            what: format!("the result at {self}"),
            source,
        })?;
        if text.len() > limit {
            return Err(Error::TooLarge {
                key: self.to_string(),
                size: text.len(),
                limit,
                backend,
            });
        }
        Ok(text)
    }
}

impl fmt::Display for ResultUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.execution_id, self.path)
    }
}

/// The URI of `path` under `execution_id`, e.g. `result_uri(id, "result")`.
pub fn result_uri(execution_id: &str, path: &str) -> String {
    format!("{SCHEME}{execution_id}/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_a_result_names_its_uri_when_it_is_too_large() {
        let uri = ResultUri::parse("flatagents://run-1/result").expect("parses");
        assert_eq!(
            uri.encode(&serde_json::json!({"y": 2}), 100, "test")
                .expect("fits"),
            r#"{"y":2}"#
        );
        let error = uri
            .encode(&Value::String("x".repeat(20)), 10, "test")
            .expect_err("too large");
        assert!(
            matches!(&error, Error::TooLarge { key, size: 22, limit: 10, backend: "test" } if key == "flatagents://run-1/result"),
            "{error}"
        );
    }

    #[test]
    fn parses_the_spec_shapes() {
        let uri = ResultUri::parse("flatagents://abc/result").unwrap();
        assert_eq!((uri.execution_id, uri.path), ("abc", "result"));
        let uri = ResultUri::parse("flatagents://abc").unwrap();
        assert_eq!((uri.execution_id, uri.path), ("abc", "result"));
        let uri = ResultUri::parse("flatagents://abc/a/b").unwrap();
        assert_eq!((uri.execution_id, uri.path), ("abc", "a/b"));
        assert_eq!(uri.to_string(), "flatagents://abc/a/b");
        assert_eq!(result_uri("abc", "result"), "flatagents://abc/result");
    }

    #[test]
    fn rejects_malformed_uris() {
        for uri in [
            "http://abc/result",
            "flatagents://",
            "flatagents:///result",
            "flatagents://../x",
            "flatagents://a/../b",
            "abc",
        ] {
            assert!(
                matches!(ResultUri::parse(uri), Err(Error::InvalidUri { .. })),
                "{uri}"
            );
        }
    }
}
