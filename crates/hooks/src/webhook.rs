//! [`WebhookHooks`]: hook events posted to an HTTP endpoint.
//!
//! ```yaml
//! hooks:
//!   class: webhook
//!   args:
//!     endpoint: https://hooks.example.com/flatmachines
//!     timeout: 5                       # seconds (default 5)
//!     api_key_env: HOOKS_TOKEN         # sent as `Authorization: Bearer …`
//!     signing_secret_env: HOOKS_SECRET # signs each request (see `signature`)
//!     fatal: false                     # a failed webhook fails the state (default: logged)
//!     events: [state_enter, error]     # the events sent (default: all)
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use flatmachines_core::JsonMap;

use crate::args::{Args, SetupError};
use crate::error::{DeliveryError, clip};
use crate::event::HookEvent;
use crate::secret::Secret;
use crate::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::sink::{DeliveryPolicy, EventHooks, EventSink};

/// Machine hooks posting every event to a webhook.
pub type WebhookHooks = EventHooks<Webhook>;

/// The largest reply body read; a receiver sending more is answering with something else.
const MAX_REPLY_BYTES: usize = 32 * 1024 * 1024;

/// How much of an error response's body goes into the error message.
const ERROR_BODY_CHARS: usize = 200;

/// The arguments a webhook's YAML `args` may hold.
const KNOWN_ARGS: &[&str] = &[
    "endpoint",
    "timeout",
    "api_key_env",
    "api_key",
    "signing_secret_env",
    "fatal",
    "events",
];

/// What a missing endpoint should have been.
const ENDPOINT_NEEDED: &str = "the URL to post events to";

/// What an endpoint must be.
const ENDPOINT_EXPECTED: &str =
    "an http or https URL with a host, such as https://hooks.example.com/events";

/// A webhook's settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The URL events are posted to (`http` or `https`).
    pub endpoint: String,
    /// How long one event may take, reply included (default 5 s, as in the reference).
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// Signs each request (see [`crate::signature`]).
    pub signing_secret: Option<Secret>,
    /// Whether a failure fails the state, and which events are sent.
    pub policy: DeliveryPolicy,
}

impl WebhookConfig {
    /// The reference's default timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A webhook at `endpoint` with the defaults: 5 s, no token, no signature, failures
    /// logged.
    pub fn new(endpoint: impl Into<String>) -> Self {
        WebhookConfig {
            endpoint: endpoint.into(),
            timeout: Self::DEFAULT_TIMEOUT,
            bearer_token: None,
            signing_secret: None,
            policy: DeliveryPolicy::LENIENT,
        }
    }

    /// Reads YAML `args`: `endpoint` (required; an `http` or `https` URL with a host, else
    /// [`SetupError::BadUrl`]), `timeout`, `api_key_env` (or `api_key`, as the reference
    /// allows), `signing_secret_env`, `fatal`, `events`.
    pub fn from_args(args: &JsonMap) -> Result<Self, SetupError> {
        let args = Args::new("webhook", args, KNOWN_ARGS)?;
        let endpoint = args.required_string("endpoint", ENDPOINT_NEEDED)?;
        // Checked here too, so a bad endpoint is named when the config is read.
        parse_endpoint(endpoint)?;
        let bearer_token = match args.env_secret("api_key_env")? {
            Some(token) => Some(token),
            None => args.string("api_key")?.map(Secret::new),
        };
        Ok(WebhookConfig {
            endpoint: endpoint.to_owned(),
            timeout: args.seconds("timeout", Self::DEFAULT_TIMEOUT)?,
            bearer_token,
            signing_secret: args.env_secret("signing_secret_env")?,
            policy: DeliveryPolicy {
                fatal: args.flag("fatal", false)?,
                events: args.events()?,
            },
        })
    }
}

impl WebhookHooks {
    /// Hooks for the webhook `config` describes.
    pub fn new(config: WebhookConfig) -> Result<Self, SetupError> {
        let policy = config.policy;
        Ok(EventHooks::with_sink(Webhook::new(config)?, policy))
    }

    /// Hooks from YAML `args` (see [`WebhookConfig::from_args`]).
    pub fn from_args(args: &JsonMap) -> Result<Self, SetupError> {
        Self::new(WebhookConfig::from_args(args)?)
    }
}

/// The sink posting events to one endpoint; it reuses its connections.
pub struct Webhook {
    endpoint: Url,
    /// The endpoint without credentials or query, for messages.
    shown: String,
    client: reqwest::Client,
    timeout: Duration,
    /// `Bearer <token>`, marked sensitive so no `Debug` of a request shows it.
    authorization: Option<HeaderValue>,
    signing_secret: Option<Secret>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("endpoint", &self.shown)
            .field("timeout", &self.timeout)
            .field("bearer_token", &self.authorization.as_ref().map(|_| ".."))
            .field("signing_secret", &self.signing_secret)
            .finish()
    }
}

/// `scheme://host:port/path`: what a log may show of a URL.
pub(crate) fn redacted(url: &Url) -> String {
    // `mailto:…`, `javascript:…`: no authority to show, and none to hide.
    if url.cannot_be_a_base() {
        return clip(&format!("{}:{}", url.scheme(), url.path()), 80);
    }
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

/// The endpoint of webhook `args`, every argument checked as [`WebhookConfig::from_args`]
/// does, except that the variables `api_key_env` and `signing_secret_env` name are not read:
/// what the config says, whatever the environment of the moment.
pub(crate) fn checked_endpoint(args: &JsonMap) -> Result<Url, SetupError> {
    let args = Args::new("webhook", args, KNOWN_ARGS)?;
    let endpoint = parse_endpoint(args.required_string("endpoint", ENDPOINT_NEEDED)?)?;
    args.seconds("timeout", WebhookConfig::DEFAULT_TIMEOUT)?;
    for field in ["api_key_env", "api_key", "signing_secret_env"] {
        args.string(field)?;
    }
    args.flag("fatal", false)?;
    args.events()?;
    Ok(endpoint)
}

/// `text` as a webhook endpoint: an `http` or `https` URL with a host. Anything else
/// (`file:///etc/passwd`, `ftp://…`, `http://` without a host, a path) would make the runtime
/// read files or speak protocols a hook has no business with, so it is refused up front.
pub(crate) fn parse_endpoint(text: &str) -> Result<Url, SetupError> {
    let bad = |url: String, problem: String| SetupError::BadUrl {
        class: "webhook",
        field: "endpoint",
        url,
        expected: ENDPOINT_EXPECTED,
        problem,
    };
    let url = Url::parse(text.trim())
        .map_err(|e| bad(redacted_text(text), format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(
            redacted(&url),
            format!("has the scheme `{}`", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(redacted(&url), "has no host".to_owned()));
    }
    Ok(url)
}

/// What a message may show of text that is not a URL: no user or password (before an `@`),
/// no query or fragment, and not too long.
fn redacted_text(text: &str) -> String {
    let text = text.trim();
    let text = text.split(['?', '#']).next().unwrap_or_default();
    let shown = match text.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://…@{host}{path}"),
                None => text.to_owned(),
            }
        }
        None => text.to_owned(),
    };
    clip(&shown.replace('\n', "\\n"), 80)
}

impl Webhook {
    /// The sink for `config`; an endpoint that is not an `http` or `https` URL with a host is
    /// refused with [`SetupError::BadUrl`].
    pub fn new(config: WebhookConfig) -> Result<Self, SetupError> {
        let endpoint = parse_endpoint(&config.endpoint)?;
        let authorization = match &config.bearer_token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| SetupError::Invalid {
                        class: "webhook",
                        field: "api_key_env".to_owned(),
                        expected: "a token of printable ASCII characters".to_owned(),
                        found: "other characters".to_owned(),
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("flatmachines/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SetupError::Client {
                class: "webhook",
                message: e.to_string(),
            })?;
        Ok(Webhook {
            shown: redacted(&endpoint),
            endpoint,
            client,
            timeout: config.timeout,
            authorization,
            signing_secret: config.signing_secret,
        })
    }

    fn transport_error(&self, event: &'static str, error: reqwest::Error) -> DeliveryError {
        if error.is_timeout() {
            return DeliveryError::Timeout {
                hook: self.describe(),
                event,
                timeout: self.timeout,
            };
        }
        // The URL is left out: it may carry credentials, and the hook name shows the rest.
        let error = error.without_url();
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        DeliveryError::Unreachable {
            hook: self.describe(),
            event,
            message,
        }
    }

    /// The response body, up to `limit` bytes.
    async fn body(
        &self,
        event: &'static str,
        mut response: reqwest::Response,
        limit: usize,
    ) -> Result<(Vec<u8>, bool), DeliveryError> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(event, e))?
        {
            if body.len() + chunk.len() > limit {
                body.extend_from_slice(&chunk[..limit - body.len()]);
                return Ok((body, true));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, false))
    }
}

#[async_trait]
impl EventSink for Webhook {
    async fn deliver(&self, event: &HookEvent<'_>) -> Result<Option<JsonMap>, DeliveryError> {
        let name = event.kind().name();
        let body = serde_json::to_vec(event).map_err(|e| DeliveryError::Encode {
            event: name,
            message: e.to_string(),
        })?;
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("flatmachines/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if let Some(secret) = &self.signing_secret {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            request = request.header(TIMESTAMP_HEADER, now).header(
                SIGNATURE_HEADER,
                sign(secret.expose().as_bytes(), now, &body),
            );
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(name, e))?;
        let status = response.status();
        if !status.is_success() {
            let (body, _) = self.body(name, response, 4 * ERROR_BODY_CHARS).await?;
            return Err(DeliveryError::Status {
                hook: self.describe(),
                event: name,
                status: status.as_u16(),
                body: clip(&String::from_utf8_lossy(&body), ERROR_BODY_CHARS),
            });
        }
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let (body, cut) = self.body(name, response, MAX_REPLY_BYTES).await?;
        let bad_reply = |problem: String| DeliveryError::BadReply {
            hook: self.describe(),
            event: name,
            problem,
        };
        if cut {
            return Err(bad_reply(format!(
                "a body larger than {MAX_REPLY_BYTES} bytes"
            )));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            Ok(Value::Null) => Ok(None),
            Ok(other) => Err(bad_reply(format!(
                "{}, where a JSON object was expected",
                flatmachines_core::config::describe(&other)
            ))),
            Err(e) => Err(bad_reply(format!(
                "a body that is not JSON ({e}): {}",
                clip(&String::from_utf8_lossy(&body), 80)
            ))),
        }
    }

    fn describe(&self) -> String {
        format!("webhook {}", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn args(value: Value) -> JsonMap {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn endpoints_are_checked_and_shown_without_credentials() {
        let hooks = WebhookHooks::from_args(&args(json!({
            "endpoint": "https://user:pw@hooks.example.com:8443/in?token=abc",
            "api_key": "tok-xyz",
            "timeout": 1,
        })))
        .unwrap();
        assert_eq!(
            hooks.sink().describe(),
            "webhook https://hooks.example.com:8443/in"
        );
        let debug = format!("{hooks:?}");
        assert!(
            !debug.contains("tok-xyz") && !debug.contains("pw") && !debug.contains("abc"),
            "{debug}"
        );

        for endpoint in ["ftp://x/y", "not a url", "file:///etc/passwd"] {
            let error = WebhookHooks::from_args(&args(json!({"endpoint": endpoint}))).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("`webhook` hooks: `endpoint` must be an http or https URL"),
                "{error}"
            );
        }
        let error = WebhookHooks::from_args(&JsonMap::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`webhook` hooks need `endpoint`: the URL to post events to"
        );
    }

    /// The error a bad `endpoint` gives, read from YAML and built directly alike.
    fn bad_endpoint(endpoint: &str) -> SetupError {
        let from_args = WebhookConfig::from_args(&args(json!({"endpoint": endpoint}))).unwrap_err();
        let built = WebhookHooks::new(WebhookConfig::new(endpoint)).unwrap_err();
        assert_eq!(from_args, built);
        from_args
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_are_endpoints() {
        for (endpoint, url, problem) in [
            (
                "file:///etc/passwd",
                "file:///etc/passwd",
                "has the scheme `file`",
            ),
            (
                "ftp://files.example.com/in",
                "ftp://files.example.com/in",
                "has the scheme `ftp`",
            ),
            (
                "unix:///run/hooks.sock",
                "unix:///run/hooks.sock",
                "has the scheme `unix`",
            ),
            (
                "mailto:ops@example.com",
                "mailto:ops@example.com",
                "has the scheme `mailto`",
            ),
            (
                "javascript:alert(1)",
                "javascript:alert(1)",
                "has the scheme `javascript`",
            ),
            ("http://", "http://", "is not a URL (empty host)"),
            ("https://", "https://", "is not a URL (empty host)"),
            (
                "http://:8080/in",
                "http://:8080/in",
                "is not a URL (empty host)",
            ),
            (
                "/hooks/in",
                "/hooks/in",
                "is not a URL (relative URL without a base)",
            ),
            (
                "hooks.example.com/in",
                "hooks.example.com/in",
                "is not a URL (relative URL without a base)",
            ),
        ] {
            let error = bad_endpoint(endpoint);
            assert_eq!(
                error,
                SetupError::BadUrl {
                    class: "webhook",
                    field: "endpoint",
                    url: url.to_owned(),
                    expected: ENDPOINT_EXPECTED,
                    problem: problem.to_owned(),
                },
                "{endpoint}"
            );
        }
        assert_eq!(
            bad_endpoint("file:///etc/passwd").to_string(),
            "`webhook` hooks: `endpoint` must be an http or https URL with a host, such as https://hooks.example.com/events; `file:///etc/passwd` has the scheme `file`"
        );
        // Credentials and queries stay out of the message, parsed or not.
        for endpoint in [
            "ftp://user:pw@files.example.com/in?token=abc",
            "https://user:pw@/in?token=abc",
        ] {
            let message = bad_endpoint(endpoint).to_string();
            assert!(
                !message.contains("pw") && !message.contains("abc"),
                "{message}"
            );
        }
        for endpoint in [
            "http://127.0.0.1:9/in",
            "https://hooks.example.com",
            "HTTPS://Hooks.Example.com/in",
        ] {
            assert!(parse_endpoint(endpoint).is_ok(), "{endpoint}");
            assert!(
                WebhookHooks::new(WebhookConfig::new(endpoint)).is_ok(),
                "{endpoint}"
            );
        }
    }
}
