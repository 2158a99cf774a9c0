//! Which bucket and prefix, how to reach the server, and how long to wait for it.

use std::fmt;
use std::time::Duration;

use flatmachines_core::{Error, Result, validate_key};

use crate::error::ConfigError;

/// How to reach an S3 bucket and where the checkpoints go in it.
///
/// Built from a URL with [`S3Config::from_url`], then adjusted with the builder methods:
///
/// ```
/// use std::time::Duration;
/// use flatmachines_s3::S3Config;
///
/// let config = S3Config::from_url("s3://my-bucket/prod/checkpoints?region=eu-west-1")?
///     .with_connect_timeout(Duration::from_secs(1));
/// assert_eq!(config.bucket(), "my-bucket");
/// assert_eq!(config.prefix(), "prod/checkpoints/");
/// assert_eq!(config.region(), Some("eu-west-1"));
/// # Ok::<(), flatmachines_core::Error>(())
/// ```
///
/// Whatever the URL and the builder leave open comes from the standard AWS configuration
/// chain: credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, the shared
/// `~/.aws/credentials` and `~/.aws/config` profiles (`AWS_PROFILE`), web identity and
/// container or instance roles; the region from `AWS_REGION` or the profile; the endpoint from
/// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `region` | the AWS chain's, else `us-east-1` | the bucket's region (signing, endpoint) |
/// | `endpoint` | the AWS chain's, else AWS S3 | the server, for S3-compatible ones (`http://127.0.0.1:9000`) |
/// | `path_style` | on when an endpoint is set, else off | `http://host/bucket/key` instead of `http://bucket.host/key` |
/// | `conditional_snapshots` | on | create snapshot keys with `If-None-Match: *` (see [`S3Backend`](crate::S3Backend)) |
/// | `connect_timeout` | 3 s | one attempt to open a connection |
/// | `attempt_timeout` | 20 s | one attempt of a request, response included |
/// | `operation_timeout` | 60 s | a request with all its retries |
/// | `max_attempts` | 3 | attempts per request (the SDK's standard retry policy: throttling, 5xx and dropped connections are retried with backoff) |
/// | `list_page_size` | 1000 | keys per `ListObjectsV2` page |
///
/// Its `Debug` output hides the secret key of explicit credentials.
#[derive(Clone)]
pub struct S3Config {
    bucket: String,
    prefix: String,
    region: Option<String>,
    endpoint: Option<String>,
    path_style: Option<bool>,
    credentials: Option<StaticCredentials>,
    conditional_snapshots: bool,
    connect_timeout: Duration,
    attempt_timeout: Duration,
    operation_timeout: Duration,
    max_attempts: u32,
    list_page_size: i32,
}

/// An access key given in code rather than found by the AWS chain.
#[derive(Clone)]
pub(crate) struct StaticCredentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
}

impl S3Config {
    /// The URL scheme: `s3`.
    pub const SCHEME: &'static str = "s3";

    /// A configuration for `bucket`, with every key under `prefix` (`""` for the bucket's
    /// root; a trailing `/` is added when missing).
    pub fn new(bucket: &str, prefix: &str) -> Result<Self> {
        validate_bucket(bucket)?;
        let prefix = normalize_prefix(prefix)?;
        Ok(S3Config {
            bucket: bucket.to_owned(),
            prefix,
            region: None,
            endpoint: None,
            path_style: None,
            credentials: None,
            conditional_snapshots: true,
            connect_timeout: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(20),
            operation_timeout: Duration::from_secs(60),
            max_attempts: 3,
            list_page_size: 1000,
        })
    }

    /// Reads `s3://BUCKET[/PREFIX][?region=R&endpoint=URL&path_style=true|false&conditional_snapshots=true|false]`.
    /// Nothing is connected yet.
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |message: String| Error::backend("s3", ConfigError::new(message, URL_FORM));
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(bad(format!("`{url}` is not an S3 URL")));
        };
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (rest, None),
        };
        if location.contains('#') || query.is_some_and(|q| q.contains('#')) {
            return Err(bad(format!(
                "`{url}` has a fragment (`#…`), which S3 URLs do not take"
            )));
        }
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad(format!("`{url}` names no bucket")));
        }
        let mut config = S3Config::new(bucket, prefix)?;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "region" => config = config.with_region(value)?,
                "endpoint" => config = config.with_endpoint(value)?,
                "path_style" => config = config.with_path_style(parse_bool(url, name, value)?),
                "conditional_snapshots" => {
                    config = config.with_conditional_snapshots(parse_bool(url, name, value)?);
                }
                other => {
                    return Err(bad(format!(
                        "`{url}` has the unknown parameter `{other}` (known: region, endpoint, path_style, conditional_snapshots)"
                    )));
                }
            }
        }
        Ok(config)
    }

    /// Sets the bucket's region (`us-east-1`, `eu-west-1`, `auto` for R2, …).
    pub fn with_region(mut self, region: &str) -> Result<Self> {
        let valid = !region.is_empty()
            && region.len() <= 64
            && region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(Error::backend(
                "s3",
                ConfigError::new(
                    format!("invalid region `{}`", region.escape_debug()),
                    "expected a region name such as us-east-1",
                ),
            ));
        }
        self.region = Some(region.to_owned());
        Ok(self)
    }

    /// Sends requests to `endpoint` (`http://127.0.0.1:9000`, `https://ACCOUNT.r2.cloudflarestorage.com`)
    /// instead of AWS S3.
    pub fn with_endpoint(mut self, endpoint: &str) -> Result<Self> {
        let host = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"));
        if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
            return Err(Error::backend(
                "s3",
                ConfigError::new(
                    format!("invalid endpoint `{}`", endpoint.escape_debug()),
                    "expected an http:// or https:// URL such as http://127.0.0.1:9000",
                ),
            ));
        }
        self.endpoint = Some(endpoint.trim_end_matches('/').to_owned());
        Ok(self)
    }

    /// Addresses the bucket in the path (`http://host/bucket/key`) rather than in the host
    /// name. Most S3-compatible servers need it; the default turns it on when an endpoint is
    /// configured.
    #[must_use]
    pub fn with_path_style(mut self, on: bool) -> Self {
        self.path_style = Some(on);
        self
    }

    /// Uses this access key instead of the AWS credential chain.
    #[must_use]
    pub fn with_credentials(mut self, access_key_id: &str, secret_access_key: &str) -> Self {
        self.credentials = Some(StaticCredentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
        });
        self
    }

    /// Whether snapshot keys are created with `If-None-Match: *` (default on).
    #[must_use]
    pub fn with_conditional_snapshots(mut self, on: bool) -> Self {
        self.conditional_snapshots = on;
        self
    }

    /// Sets the timeout of one connection attempt.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the timeout of one attempt of a request, its response included.
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Sets the timeout of a request with all its retries.
    #[must_use]
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets the attempts per request (at least 1; 1 turns retries off).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets how many keys one `ListObjectsV2` page holds (1 to 1000).
    #[must_use]
    pub fn with_list_page_size(mut self, keys: u16) -> Self {
        self.list_page_size = i32::from(keys.clamp(1, 1000));
        self
    }

    /// Uses `bucket` instead.
    pub fn with_bucket(mut self, bucket: &str) -> Result<Self> {
        validate_bucket(bucket)?;
        self.bucket = bucket.to_owned();
        Ok(self)
    }

    /// Puts every key under `prefix` instead (see [`S3Config::new`]).
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        self.prefix = normalize_prefix(prefix)?;
        Ok(self)
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix every object key starts with: `""` or a path ending with `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The region, when given here rather than left to the AWS chain.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The endpoint, when given here rather than left to the AWS chain.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Path-style addressing, when decided here rather than by the default.
    pub fn path_style(&self) -> Option<bool> {
        self.path_style
    }

    /// Whether explicit credentials replace the AWS chain.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    pub(crate) fn credentials(&self) -> Option<&StaticCredentials> {
        self.credentials.as_ref()
    }

    /// Whether snapshot keys are created with `If-None-Match: *`.
    pub fn conditional_snapshots(&self) -> bool {
        self.conditional_snapshots
    }

    /// The timeout of one connection attempt.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The timeout of one attempt of a request.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// The timeout of a request with all its retries.
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// Attempts per request.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Keys per `ListObjectsV2` page.
    pub fn list_page_size(&self) -> i32 {
        self.list_page_size
    }

    /// The store's URL, `s3://BUCKET/PREFIX` with the region and endpoint set here.
    pub fn url(&self) -> String {
        let mut url = format!("s3://{}/{}", self.bucket, self.prefix);
        let mut params = Vec::new();
        if let Some(region) = &self.region {
            params.push(format!("region={region}"));
        }
        if let Some(endpoint) = &self.endpoint {
            params.push(format!("endpoint={endpoint}"));
        }
        if let Some(path_style) = self.path_style {
            params.push(format!("path_style={path_style}"));
        }
        if !self.conditional_snapshots {
            params.push("conditional_snapshots=false".to_owned());
        }
        if !params.is_empty() {
            url.push('?');
            url.push_str(&params.join("&"));
        }
        url
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|c| format!("{} / ***", c.access_key_id)),
            )
            .field("conditional_snapshots", &self.conditional_snapshots)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("list_page_size", &self.list_page_size)
            .finish()
    }
}

const URL_FORM: &str =
    "expected s3://BUCKET[/PREFIX][?region=R&endpoint=URL&path_style=true|false]";

fn parse_bool(url: &str, name: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(Error::backend(
            "s3",
            ConfigError::new(
                format!("`{url}`: `{name}={other}` is not a boolean"),
                "expected true or false",
            ),
        )),
    }
}

/// Checks a bucket name against S3's rules for new buckets: 3 to 63 bytes of lowercase
/// letters, digits, `.` and `-`, starting and ending with a letter or digit, no `..`.
pub(crate) fn validate_bucket(bucket: &str) -> Result<()> {
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let reason = if !(3..=63).contains(&bucket.len()) {
        "it must be 3 to 63 bytes long"
    } else if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        "it may hold only lowercase letters, digits, `.` and `-`"
    } else if !edge_ok(bucket.as_bytes().first()) || !edge_ok(bucket.as_bytes().last()) {
        "it must start and end with a letter or digit"
    } else if bucket.contains("..") {
        "it may not contain `..`"
    } else {
        return Ok(());
    };
    Err(Error::backend(
        "s3",
        ConfigError::new(
            format!("invalid bucket name `{}`: {reason}", bucket.escape_debug()),
            "expected a bucket name such as my-checkpoints",
        ),
    ))
}

/// `""` stays empty; anything else must be a valid key path and gets a trailing `/`.
fn normalize_prefix(prefix: &str) -> Result<String> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return if prefix.is_empty() {
            Ok(String::new())
        } else {
            Err(invalid_prefix(prefix, "keys may not start with `/`"))
        };
    }
    validate_key(trimmed).map_err(|e| match e {
        Error::InvalidKey { reason, .. } => invalid_prefix(prefix, reason),
        other => other,
    })?;
    Ok(format!("{trimmed}/"))
}

fn invalid_prefix(prefix: &str, reason: &str) -> Error {
    Error::backend(
        "s3",
        ConfigError::new(
            format!("invalid prefix `{}`: {reason}", prefix.escape_debug()),
            "expected a path such as checkpoints/prod, or nothing",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls_give_bucket_prefix_and_parameters() {
        let config = S3Config::from_url("s3://bucket-1").unwrap();
        assert_eq!((config.bucket(), config.prefix()), ("bucket-1", ""));
        let config = S3Config::from_url("s3://bucket-1/").unwrap();
        assert_eq!(config.prefix(), "");
        let config = S3Config::from_url("s3://b.c-d/a/b/").unwrap();
        assert_eq!((config.bucket(), config.prefix()), ("b.c-d", "a/b/"));
        let config = S3Config::from_url(
            "s3://bkt/p?region=eu-west-1&endpoint=http://127.0.0.1:5000/&path_style=false&conditional_snapshots=0",
        )
        .unwrap();
        assert_eq!(config.region(), Some("eu-west-1"));
        assert_eq!(config.endpoint(), Some("http://127.0.0.1:5000"));
        assert_eq!(config.path_style(), Some(false));
        assert!(!config.conditional_snapshots());
        assert_eq!(
            config.url(),
            "s3://bkt/p/?region=eu-west-1&endpoint=http://127.0.0.1:5000&path_style=false&conditional_snapshots=false"
        );
        assert_eq!(
            S3Config::from_url(&config.url()).unwrap().url(),
            config.url()
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_expected_form() {
        for (url, says) in [
            ("file:///x", "is not an S3 URL"),
            ("s3://", "names no bucket"),
            ("s3:///prefix", "names no bucket"),
            ("s3://Upper", "lowercase"),
            ("s3://ab", "3 to 63"),
            ("s3://-ab", "start and end"),
            ("s3://a..b", "`..`"),
            ("s3://bkt/../x", "`..`"),
            ("s3://bkt//x", "invalid prefix"),
            ("s3://bkt/.hidden", "invalid prefix"),
            ("s3://bkt/p?color=red", "unknown parameter `color`"),
            ("s3://bkt/p?path_style=maybe", "not a boolean"),
            ("s3://bkt/p?endpoint=ftp://x", "invalid endpoint"),
            ("s3://bkt/p?endpoint=http://", "invalid endpoint"),
            ("s3://bkt/p?region=", "invalid region"),
            ("s3://bkt/p#x", "fragment"),
        ] {
            let error = S3Config::from_url(url).unwrap_err().to_string();
            assert!(error.contains(says), "{url}: {error}");
            assert!(error.contains("(expected "), "{url}: {error}");
        }
    }

    #[test]
    fn secrets_never_show() {
        let config = S3Config::new("bkt", "")
            .unwrap()
            .with_credentials("AKIDEXAMPLE", "hunter2-secret");
        let shown = format!("{config:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!config.url().contains("hunter2"));
    }

    #[test]
    fn limits_are_clamped() {
        let config = S3Config::new("bkt", "")
            .unwrap()
            .with_max_attempts(0)
            .with_list_page_size(5000);
        assert_eq!((config.max_attempts(), config.list_page_size()), (1, 1000));
        assert_eq!(config.with_list_page_size(0).list_page_size(), 1);
    }

    proptest! {
        /// Whatever follows `s3://`, parsing returns a config or an error, never panics; a
        /// config's own URL parses back to the same config.
        #[test]
        fn parsing_never_panics_and_round_trips(rest in "[a-z0-9./?&=:_-]{0,40}") {
            if let Ok(config) = S3Config::from_url(&format!("s3://{rest}")) {
                let again = S3Config::from_url(&config.url()).unwrap();
                prop_assert_eq!(again.url(), config.url());
                prop_assert!(config.prefix().is_empty() || config.prefix().ends_with('/'));
            }
        }

        /// Valid bucket names and prefixes always come back as given (plus the `/`).
        #[test]
        fn valid_locations_parse(bucket in "[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", prefix in "([a-z0-9_-]{1,8}/){0,3}") {
            let config = S3Config::from_url(&format!("s3://{bucket}/{prefix}")).unwrap();
            prop_assert_eq!(config.bucket(), bucket.as_str());
            prop_assert_eq!(config.prefix(), prefix.as_str());
        }
    }
}
