//! Where the PostgreSQL server is, which schema to use, and how long to wait for it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use flatmachines_core::Result;
use tokio_postgres::config::SslMode;

use crate::error::PgError;

/// How to reach PostgreSQL and how to behave there.
///
/// Built from a URL with [`PostgresConfig::from_url`], then adjusted with the builder methods:
///
/// ```
/// use std::time::Duration;
/// use flatmachines_postgres::PostgresConfig;
///
/// let config = PostgresConfig::from_url(
///     "postgres://app:secret@127.0.0.1:5432/prod?schema=runs&pool_size=16",
/// )?
/// .with_connect_timeout(Duration::from_secs(2));
/// assert_eq!(config.schema(), "runs");
/// assert_eq!(config.pool_size(), 16);
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), flatmachines_core::Error>(())
/// ```
///
/// | setting | URL parameter | default | meaning |
/// |---|---|---|---|
/// | schema | `schema` | [`DEFAULT_SCHEMA`](Self::DEFAULT_SCHEMA) | the schema holding every table |
/// | migrate | `migrate` | `true` | create or upgrade the tables at first use; `false` only checks their version |
/// | pool size | `pool_size` | 8 | connections shared by checkpoints, results, registration and work |
/// | connect timeout | `connect_timeout` (seconds) | 5 s | one attempt to open a connection, handshake included |
/// | query timeout | `query_timeout` (seconds) | 30 s | one statement's answer |
/// | retries | `retries` | 3 | retries of a statement whose connection dropped (50 ms, 100 ms, … apart) |
/// | lock lease | `lock_lease` (seconds) | 15 s | how long an execution lock counts as held without its session being confirmed alive |
/// | application name | `application_name` | `flatmachines` | shown in `pg_stat_activity` |
/// | TLS | `sslmode`, `sslrootcert` | no TLS | `sslmode=require` (feature `tls`) verifies the server against the Mozilla roots and the PEM file `sslrootcert` |
///
/// Every other parameter (`user`, `password`, `host`, `port`, `dbname`, `options`,
/// `keepalives`, `target_session_attrs`, …) goes to the driver, `tokio-postgres`, as libpq
/// would read it. Its `Debug` output hides the password.
#[derive(Clone)]
pub struct PostgresConfig {
    url: String,
    driver: tokio_postgres::Config,
    schema: String,
    migrate: bool,
    pool_size: usize,
    connect_timeout: Duration,
    query_timeout: Duration,
    retries: u32,
    lock_lease: Duration,
    root_cert: Option<PathBuf>,
}

impl PostgresConfig {
    /// The schema used when neither the URL nor the caller names one.
    pub const DEFAULT_SCHEMA: &'static str = "flatmachines";

    /// The application name connections report unless the URL gives one.
    pub const DEFAULT_APPLICATION_NAME: &'static str = "flatmachines";

    /// Longest schema name, in bytes: PostgreSQL's 63-byte identifiers, less room for the
    /// names derived from it (the results channel `{schema}.results`).
    pub const MAX_SCHEMA_LEN: usize = 48;

    /// Reads a `postgres://[user[:password]@]host[:port][/dbname][?param=value&…]` URL
    /// (`postgresql://` too). The parameters of the table above are taken off; the others go
    /// to the driver. Nothing is connected yet.
    pub fn from_url(url: &str) -> Result<Self> {
        let redacted = redact_url(url);
        let invalid = |reason: String| {
            PgError::config(
                format!("`{redacted}` is not a PostgreSQL URL: {reason}"),
                "expected postgres://[user[:password]@]host[:port][/dbname][?schema=NAME&…]",
            )
        };
        let Some((scheme, _)) = url.split_once("://") else {
            return Err(invalid("it has no scheme".to_owned()).into());
        };
        if !matches!(scheme, "postgres" | "postgresql") {
            return Err(invalid(format!(
                "the scheme `{scheme}` is not postgres or postgresql"
            ))
            .into());
        }
        let (driver_url, ours) = split_params(url);
        let mut driver =
            tokio_postgres::Config::from_str(&driver_url).map_err(|e| invalid(e.to_string()))?;
        if driver.get_hosts().is_empty() {
            return Err(invalid("it names no host".to_owned()).into());
        }
        if driver.get_application_name().is_none() {
            driver.application_name(Self::DEFAULT_APPLICATION_NAME);
        }
        let mut config = PostgresConfig {
            url: url.to_owned(),
            driver,
            schema: Self::DEFAULT_SCHEMA.to_owned(),
            migrate: true,
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(30),
            retries: 3,
            lock_lease: Duration::from_secs(15),
            root_cert: None,
        };
        for (name, value) in ours {
            config
                .apply(&name, &value)
                .map_err(|reason| invalid(format!("parameter `{name}={value}`: {reason}")))?;
        }
        Ok(config)
    }

    fn apply(&mut self, name: &str, value: &str) -> Result<(), String> {
        let seconds = |value: &str| {
            value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| "expected a positive number of seconds".to_owned())
        };
        match name {
            "schema" => {
                validate_schema(value)?;
                self.schema = value.to_owned();
            }
            "migrate" => {
                self.migrate = match value {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => return Err("expected true or false".to_owned()),
                }
            }
            "pool_size" => {
                self.pool_size = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or("expected a number of connections from 1 to 1000")?;
            }
            "connect_timeout" => self.connect_timeout = seconds(value)?,
            "query_timeout" => self.query_timeout = seconds(value)?,
            "lock_lease" => self.lock_lease = seconds(value)?.max(Duration::from_millis(300)),
            "retries" => {
                self.retries = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= 100)
                    .ok_or("expected a number from 0 to 100")?;
            }
            "sslrootcert" => self.root_cert = Some(PathBuf::from(value)),
            _ => return Err(format!("`{name}` is not a parameter of this crate")),
        }
        Ok(())
    }

    /// Puts every table in `schema`: 1 to 48 bytes of lowercase ASCII letters, digits and
    /// `_`, not starting with a digit or `pg_`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Result<Self> {
        let schema = schema.into();
        validate_schema(&schema).map_err(|reason| {
            PgError::config(
                format!("invalid schema name `{}`: {reason}", schema.escape_debug()),
                "for example `flatmachines` or `app_prod`",
            )
        })?;
        self.schema = schema;
        Ok(self)
    }

    /// Whether the tables are created or upgraded at first use (`true`), or only checked.
    #[must_use]
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Sets the number of pooled connections (at least 1).
    #[must_use]
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets the timeout of one connection attempt, handshake and authentication included.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets the timeout of one statement's answer.
    #[must_use]
    pub fn with_query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets how often a statement is retried after its connection dropped.
    #[must_use]
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the execution locks' lease (at least 300 ms): a holder that cannot confirm its
    /// session alive for this long stops counting on its locks.
    #[must_use]
    pub fn with_lock_lease(mut self, lease: Duration) -> Self {
        self.lock_lease = lease.max(Duration::from_millis(300));
        self
    }

    /// Sets the application name every connection reports (`pg_stat_activity`).
    #[must_use]
    pub fn with_application_name(mut self, name: &str) -> Self {
        self.driver.application_name(name);
        self
    }

    /// The URL as given, parameters included.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL with its password replaced by `***`, for messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Whether the tables are created or upgraded at first use.
    pub fn migrate(&self) -> bool {
        self.migrate
    }

    /// The number of pooled connections.
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// The timeout of one connection attempt.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The timeout of one statement.
    pub fn query_timeout(&self) -> Duration {
        self.query_timeout
    }

    /// Retries of a statement whose connection dropped.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The execution locks' lease.
    pub fn lock_lease(&self) -> Duration {
        self.lock_lease
    }

    /// The application name connections report.
    pub fn application_name(&self) -> &str {
        self.driver
            .get_application_name()
            .unwrap_or(Self::DEFAULT_APPLICATION_NAME)
    }

    /// Whether the URL asks for TLS (`sslmode=require`).
    pub fn is_tls(&self) -> bool {
        self.driver.get_ssl_mode() == SslMode::Require
    }

    /// The PEM file of extra trusted certificates (`sslrootcert`), if any.
    pub fn root_cert(&self) -> Option<&std::path::Path> {
        self.root_cert.as_deref()
    }

    /// The driver's configuration, with the connect timeout applied. `prefer`, the driver's
    /// default, becomes `disable`: TLS is used only when asked for, and then verified.
    pub(crate) fn driver(&self) -> tokio_postgres::Config {
        let mut driver = self.driver.clone();
        driver.connect_timeout(self.connect_timeout);
        if driver.get_ssl_mode() != SslMode::Require {
            driver.ssl_mode(SslMode::Disable);
        }
        driver
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted_url())
            .field("schema", &self.schema)
            .field("migrate", &self.migrate)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("retries", &self.retries)
            .field("lock_lease", &self.lock_lease)
            .field("application_name", &self.application_name())
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

/// The URL parameters this crate reads itself; the driver would refuse them.
const OUR_PARAMS: [&str; 8] = [
    "schema",
    "migrate",
    "pool_size",
    "connect_timeout",
    "query_timeout",
    "retries",
    "lock_lease",
    "sslrootcert",
];

/// Splits this crate's parameters (percent-decoded) off the URL's query.
fn split_params(url: &str) -> (String, Vec<(String, String)>) {
    let (rest, fragment) = match url.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (url, None),
    };
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut ours = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if OUR_PARAMS.contains(&name) {
            ours.push((name.to_owned(), percent_decode(value)));
        } else {
            kept.push(pair);
        }
    }
    let mut rebuilt = base.to_owned();
    if !kept.is_empty() {
        rebuilt.push('?');
        rebuilt.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        rebuilt.push('#');
        rebuilt.push_str(fragment);
    }
    (rebuilt, ours)
}

/// Decodes `%XX` escapes (and `+` as a space, as query strings write it); a malformed escape
/// stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks a schema name: 1 to [`PostgresConfig::MAX_SCHEMA_LEN`] bytes of `[a-z0-9_]`, not
/// starting with a digit, and not `pg_…` (reserved by PostgreSQL).
pub(crate) fn validate_schema(schema: &str) -> Result<(), String> {
    let reason = if schema.is_empty() {
        "it is empty"
    } else if schema.len() > PostgresConfig::MAX_SCHEMA_LEN {
        "it is longer than 48 bytes"
    } else if !schema
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        "it may hold only lowercase ASCII letters, digits and `_`"
    } else if schema.starts_with(|c: char| c.is_ascii_digit()) {
        "it may not start with a digit"
    } else if schema.starts_with("pg_") {
        "names starting with `pg_` are reserved by PostgreSQL"
    } else {
        return Ok(());
    };
    Err(reason.to_owned())
}

/// `url` with the password of its user-info part (and a `password=` parameter) replaced by
/// `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_owned(),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_parameters_are_taken_off_and_the_rest_go_to_the_driver() {
        let config = PostgresConfig::from_url(
            "postgres://u@h:5433/db?schema=s1&application_name=x&migrate=false&pool_size=3&connect_timeout=1.5&retries=0",
        )
        .unwrap();
        assert_eq!(config.schema(), "s1");
        assert!(!config.migrate());
        assert_eq!(config.pool_size(), 3);
        assert_eq!(config.connect_timeout(), Duration::from_millis(1500));
        assert_eq!(config.retries(), 0);
        assert_eq!(config.application_name(), "x");
        assert_eq!(config.driver().get_ports(), [5433]);
        assert_eq!(config.driver().get_dbname(), Some("db"));
        let config = PostgresConfig::from_url("postgresql://127.0.0.1").unwrap();
        assert_eq!(config.schema(), PostgresConfig::DEFAULT_SCHEMA);
        assert_eq!(config.application_name(), "flatmachines");
        assert!(config.migrate());
        assert!(!config.is_tls());
        assert_eq!(config.driver().get_ssl_mode(), SslMode::Disable);
        let tls =
            PostgresConfig::from_url("postgres://h/db?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem")
                .unwrap();
        assert!(tls.is_tls());
        assert_eq!(tls.root_cert(), Some(std::path::Path::new("/tmp/ca.pem")));
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://u:pw@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw&x=1"),
            "postgres://h/db?user=u&password=***&x=1"
        );
        assert_eq!(redact_url("postgres://u@h"), "postgres://u@h");
        let config = PostgresConfig::from_url("postgres://u:hunter2@127.0.0.1/db").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        let error = PostgresConfig::from_url("postgres://u:hunter2@h/db?bogus=1")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn bad_urls_and_schemas_are_refused_clearly() {
        for (url, expected) in [
            ("mysql://h/db", "scheme `mysql`"),
            ("127.0.0.1:5432", "no scheme"),
            ("postgres://h/db?bogus=1", "bogus"),
            ("postgres://h:notaport/db", "not a PostgreSQL URL"),
            ("postgres://h/db?schema=Bad-Name", "lowercase"),
            ("postgres://h/db?migrate=maybe", "true or false"),
            ("postgres://h/db?pool_size=0", "1 to 1000"),
            (
                "postgres://h/db?query_timeout=-1",
                "positive number of seconds",
            ),
        ] {
            let error = PostgresConfig::from_url(url).unwrap_err().to_string();
            assert!(error.contains(expected), "{url}: {error}");
        }
        for schema in ["", "1abc", "pg_x", "a-b", "A", &"s".repeat(49)] {
            assert!(validate_schema(schema).is_err(), "{schema:?}");
        }
        for schema in ["flatmachines", "app_prod", "_x1", &"s".repeat(48)] {
            assert!(validate_schema(schema).is_ok(), "{schema:?}");
        }
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("a%20b+c%2f"), "a b c/");
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
