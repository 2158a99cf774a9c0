//! Where the Redis server is, which namespace to use, and how long to wait for it.

use std::fmt;
use std::time::Duration;

use flatmachines_core::{Error, Result};

use crate::error::ConfigError;

/// How to reach Redis and how to behave there.
///
/// Built from a URL with [`RedisConfig::from_url`], then adjusted with the builder methods:
///
/// ```
/// use std::time::Duration;
/// use flatmachines_redis::RedisConfig;
///
/// let config = RedisConfig::from_url("redis://:secret@127.0.0.1:6379/0?namespace=app:prod")?
///     .with_lease(Duration::from_secs(10));
/// assert_eq!(config.namespace(), "app:prod");
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), flatmachines_core::Error>(())
/// ```
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `namespace` | [`DEFAULT_NAMESPACE`](Self::DEFAULT_NAMESPACE) | every key starts with `{namespace}:` |
/// | `lease` | 30 s | how long an execution lock outlives its last renewal |
/// | `connect_timeout` | 5 s | one attempt to open a connection |
/// | `response_timeout` | 10 s | one command's answer |
/// | `retries` | 5 | retries of an operation whose connection dropped (50 ms, 100 ms, … apart) |
///
/// Connections speak RESP3 unless the URL says `protocol=resp2`: with RESP3 the driver learns
/// at once that a connection dropped and opens a new one before the next command needs it.
/// Use `protocol=resp2` only for servers older than Redis 6.
///
/// Its `Debug` output hides the URL's password.
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    namespace: String,
    lease: Duration,
    connect_timeout: Duration,
    response_timeout: Duration,
    retries: u32,
}

impl RedisConfig {
    /// The namespace used when neither the URL nor the caller names one.
    pub const DEFAULT_NAMESPACE: &'static str = "flatmachines";

    /// Longest namespace, in bytes.
    pub const MAX_NAMESPACE_LEN: usize = 128;

    /// Reads a `redis://[user[:password]@]host[:port][/db]` or `rediss://…` (TLS) URL. A
    /// `namespace=NAME` query parameter sets the namespace and is not passed on to the driver;
    /// other parameters (`protocol=resp3`, …) are. Nothing is connected yet.
    pub fn from_url(url: &str) -> Result<Self> {
        let (base, namespace) = split_url(url);
        let config = RedisConfig {
            url: base,
            namespace: namespace.unwrap_or_else(|| Self::DEFAULT_NAMESPACE.to_owned()),
            lease: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            retries: 5,
        };
        validate_namespace(&config.namespace)?;
        // Parsing is cheap and catches a bad host, port or database before the first use.
        redis::Client::open(config.url.as_str()).map_err(|e| {
            Error::backend(
                "redis",
                ConfigError::new(
                    format!("`{}` is not a Redis URL: {e}", config.redacted_url()),
                    "expected redis://[user[:password]@]host[:port][/db] or rediss://… for TLS",
                ),
            )
        })?;
        Ok(config)
    }

    /// Puts every key under `namespace`: 1 to 128 bytes of ASCII letters, digits and
    /// `_ . : / -`.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Result<Self> {
        let namespace = namespace.into();
        validate_namespace(&namespace)?;
        self.namespace = namespace;
        Ok(self)
    }

    /// Sets the lease of execution locks (at least 100 ms).
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// Sets the timeout of one connection attempt.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the timeout of one command's answer.
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets how often an operation is retried after its connection dropped.
    #[must_use]
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The URL handed to the driver (without the `namespace` parameter).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL with its password replaced by `***`, for messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The namespace every key starts with.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The lease of execution locks.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The timeout of one connection attempt.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The timeout of one command's answer.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Retries of an operation whose connection dropped.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Whether the URL asks for TLS.
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("namespace", &self.namespace)
            .field("lease", &self.lease)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// Checks a namespace: 1 to 128 bytes of `[A-Za-z0-9_.:/-]`. Keys are `{namespace}:…`, so
/// braces are excluded (they close the namespace), and so are glob characters (they would
/// need escaping in every SCAN pattern).
pub(crate) fn validate_namespace(namespace: &str) -> Result<()> {
    let reason = if namespace.is_empty() {
        "it is empty"
    } else if namespace.len() > RedisConfig::MAX_NAMESPACE_LEN {
        "it is longer than 128 bytes"
    } else if !namespace
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b))
    {
        "it may hold only ASCII letters, digits and `_ . : / -`"
    } else {
        return Ok(());
    };
    Err(Error::backend(
        "redis",
        ConfigError::new(
            format!("invalid namespace `{}`: {reason}", namespace.escape_debug()),
            "for example `flatmachines` or `app:prod`",
        ),
    ))
}

/// Splits the `namespace` parameter off the URL's query, and asks for RESP3 unless the URL
/// names a protocol.
fn split_url(url: &str) -> (String, Option<String>) {
    let (rest, fragment) = match url.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (url, None),
    };
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut namespace = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("namespace", value)) => namespace = Some(value.to_owned()),
            _ => kept.push(pair),
        }
    }
    if !kept.iter().any(|pair| pair.starts_with("protocol=")) {
        kept.push("protocol=resp3");
    }
    let mut rebuilt = format!("{base}?{}", kept.join("&"));
    if let Some(fragment) = fragment {
        rebuilt.push('#');
        rebuilt.push_str(fragment);
    }
    (rebuilt, namespace)
}

/// `url` with the password of its user-info part replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = match user_info.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => user_info.to_owned(),
    };
    format!("{scheme}://{user}@{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_parameter_is_taken_off_the_url() {
        let config =
            RedisConfig::from_url("redis://127.0.0.1:6379/2?namespace=a:b&protocol=resp3").unwrap();
        assert_eq!(config.namespace(), "a:b");
        assert_eq!(config.url(), "redis://127.0.0.1:6379/2?protocol=resp3");
        let config = RedisConfig::from_url("rediss://h:1/0?namespace=x").unwrap();
        assert_eq!(
            (config.url(), config.namespace()),
            ("rediss://h:1/0?protocol=resp3", "x")
        );
        assert!(config.is_tls());
        let config = RedisConfig::from_url("redis://h/0?protocol=2").unwrap();
        assert_eq!(config.url(), "redis://h/0?protocol=2");
        assert!(!config.is_tls());
        assert_eq!(
            split_url("rediss://h/0#insecure"),
            ("rediss://h/0?protocol=resp3#insecure".to_owned(), None)
        );
        let config = RedisConfig::from_url("redis://127.0.0.1").unwrap();
        assert_eq!(config.namespace(), RedisConfig::DEFAULT_NAMESPACE);
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://:pw@h/0?x=1"), "redis://:***@h/0?x=1");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact_url("redis://user@h"), "redis://user@h");
        let config = RedisConfig::from_url("redis://:hunter2@127.0.0.1/0").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn bad_urls_and_namespaces_are_refused_clearly() {
        let error = RedisConfig::from_url("redis://:pw@h:notaport/0")
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a Redis URL"), "{error}");
        assert!(!error.contains(":pw@"), "{error}");
        for namespace in ["", "a b", "{x}", "a*", &"n".repeat(129)] {
            assert!(validate_namespace(namespace).is_err(), "{namespace:?}");
        }
        for namespace in ["flatmachines", "app:prod", "t/1.2_-x"] {
            assert!(validate_namespace(namespace).is_ok(), "{namespace:?}");
        }
    }
}
