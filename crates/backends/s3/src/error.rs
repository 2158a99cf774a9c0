//! The crate's own errors: which operation failed, on which object, against which server, and
//! why in words a user can act on.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// A configuration that cannot work: a bad URL, bucket name, prefix or endpoint.
#[derive(Debug)]
pub(crate) struct ConfigError {
    message: String,
    expected: &'static str,
}

impl ConfigError {
    pub(crate) fn new(message: String, expected: &'static str) -> Self {
        ConfigError { message, expected }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.expected)
    }
}

impl std::error::Error for ConfigError {}

/// What went wrong with an S3 request, for callers that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum S3ErrorKind {
    /// The bucket does not exist.
    NoSuchBucket,
    /// The credentials were refused or lack a permission.
    AccessDenied,
    /// No credentials could be found.
    NoCredentials,
    /// The bucket lives in another region than the one configured.
    WrongRegion,
    /// The server kept throttling after every retry.
    Throttled,
    /// No connection could be made to the endpoint.
    Unreachable,
    /// The server did not answer in time.
    TimedOut,
    /// Any other failure; the message has the server's code and text.
    Other,
}

/// A failed S3 operation. Its `Display` names the operation, the object (`s3://bucket/key`)
/// and the endpoint, then the reason. Reach it from a
/// [`flatmachines_core::Error::Backend`] with `source.downcast_ref::<S3Error>()`.
#[derive(Debug)]
pub struct S3Error {
    kind: S3ErrorKind,
    operation: &'static str,
    object: String,
    endpoint: String,
    reason: String,
}

impl S3Error {
    /// What went wrong.
    pub fn kind(&self) -> S3ErrorKind {
        self.kind
    }

    /// The object or prefix the operation was about, as `s3://bucket/key`.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// Whether the same call may succeed if tried again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            S3ErrorKind::Throttled | S3ErrorKind::Unreachable | S3ErrorKind::TimedOut
        )
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} `{}` at {}: {}",
            self.operation, self.object, self.endpoint, self.reason
        )
    }
}

impl StdError for S3Error {}

impl From<S3Error> for flatmachines_core::Error {
    fn from(error: S3Error) -> Self {
        if error.is_transient() {
            flatmachines_core::Error::transient("s3", error)
        } else {
            flatmachines_core::Error::backend("s3", error)
        }
    }
}

/// What an error message says about the request: the operation, the object, where it went,
/// and the limits it ran under.
pub(crate) struct Request<'a> {
    pub(crate) operation: &'static str,
    pub(crate) bucket: &'a str,
    pub(crate) key: &'a str,
    pub(crate) endpoint: &'a str,
    pub(crate) connect_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) attempts: u32,
}

impl Request<'_> {
    fn error(&self, kind: S3ErrorKind, reason: String) -> S3Error {
        S3Error {
            kind,
            operation: self.operation,
            object: format!("s3://{}/{}", self.bucket, self.key),
            endpoint: self.endpoint.to_owned(),
            reason,
        }
    }

    /// Names the failure of an SDK call.
    pub(crate) fn failed<E>(&self, error: &SdkError<E, HttpResponse>) -> S3Error
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        let detail = causes(error);
        match error {
            SdkError::TimeoutError(_) => self.error(
                S3ErrorKind::TimedOut,
                format!(
                    "no answer in time ({} attempts of at most {:?}, {:?} in all): {detail}",
                    self.attempts, self.attempt_timeout, self.operation_timeout
                ),
            ),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => self.error(
                S3ErrorKind::Unreachable,
                format!(
                    "the endpoint is unreachable: no connection within {:?} ({} attempts); check AWS_ENDPOINT_URL or the URL's endpoint: {detail}",
                    self.connect_timeout, self.attempts
                ),
            ),
            SdkError::DispatchFailure(failure) if failure.is_io() => self.error(
                S3ErrorKind::Unreachable,
                format!(
                    "the endpoint is unreachable ({} attempts; is the server running, is AWS_ENDPOINT_URL right?): {detail}",
                    self.attempts
                ),
            ),
            _ if mentions_credentials(&detail) && error.raw_response().is_none() => self.error(
                S3ErrorKind::NoCredentials,
                format!(
                    "no AWS credentials were found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): {detail}"
                ),
            ),
            _ => self.answered(error),
        }
    }

    /// Names a failure the server answered (an error document or a bare status).
    fn answered<E>(&self, error: &SdkError<E, HttpResponse>) -> S3Error
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        let status = error.raw_response().map(|r| r.status().as_u16());
        let code = error.code().unwrap_or_default();
        // The server's own words when it sent an error document, else the cause chain.
        let detail = match (code, error.message(), status) {
            ("", _, _) => causes(error),
            (code, Some(message), Some(status)) => format!("{code} ({status}): {message}"),
            (code, message, _) => format!("{code}: {}", message.unwrap_or("no message")),
        };
        let bucket = self.bucket;
        match (code, status) {
            ("NoSuchBucket", _) | ("NotFound", _) | ("", Some(404)) => self.error(
                S3ErrorKind::NoSuchBucket,
                format!(
                    "the bucket `{bucket}` does not exist (create it, or fix the bucket name)"
                ),
            ),
            ("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden", _)
            | ("", Some(403)) => self.error(
                S3ErrorKind::AccessDenied,
                format!(
                    "access denied to bucket `{bucket}` (check the credentials and that their policy allows this operation): {}",
                    error.message().unwrap_or(code)
                ),
            ),
            ("PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException", _)
            | ("", Some(301)) => {
                let region = error
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .map(str::to_owned);
                let hint = region.map_or_else(
                    || "set the bucket's region (AWS_REGION or `?region=`)".to_owned(),
                    |r| format!("the bucket is in `{r}`: set AWS_REGION={r} or add `?region={r}`"),
                );
                self.error(
                    S3ErrorKind::WrongRegion,
                    format!("the bucket `{bucket}` is in another region: {hint}"),
                )
            }
            ("SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests", _)
            | (_, Some(429 | 503)) => self.error(
                S3ErrorKind::Throttled,
                format!(
                    "the server is throttling requests and did not accept this one in {} attempts: {detail}",
                    self.attempts
                ),
            ),
            _ => self.error(S3ErrorKind::Other, detail),
        }
    }

    /// An error not from the SDK: a body that could not be read, a size over the limit.
    pub(crate) fn other(&self, reason: String) -> S3Error {
        self.error(S3ErrorKind::Other, reason)
    }

    /// A transient failure reading a response body.
    pub(crate) fn interrupted(&self, reason: String) -> S3Error {
        self.error(S3ErrorKind::TimedOut, reason)
    }
}

/// The error's message and those of its causes, without repeats: `dispatch failure: io
/// error: tcp connect error: Connection refused (os error 111)`.
fn causes(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let text = current.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}

fn mentions_credentials(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    lower.contains("credentials")
        && (lower.contains("no ") || lower.contains("not") || lower.contains("fail"))
}
