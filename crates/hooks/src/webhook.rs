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

    /// Reads YAML `args`: `endpoint` (required), `timeout`, `api_key_env` (or `api_key`, as
    /// the reference allows), `signing_secret_env`, `fatal`, `events`.
    pub fn from_args(args: &JsonMap) -> Result<Self, SetupError> {
        const KNOWN: &[&str] = &[
            "endpoint",
            "timeout",
            "api_key_env",
            "api_key",
            "signing_secret_env",
            "fatal",
            "events",
        ];
        let args = Args::new("webhook", args, KNOWN)?;
        let endpoint = args.required_string("endpoint", "the URL to post events to")?;
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
fn redacted(url: &Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

impl Webhook {
    /// The sink for `config`.
    pub fn new(config: WebhookConfig) -> Result<Self, SetupError> {
        let invalid = |expected: &str, found: String| SetupError::Invalid {
            class: "webhook",
            field: "endpoint".to_owned(),
            expected: expected.to_owned(),
            found,
        };
        let endpoint = Url::parse(&config.endpoint).map_err(|e| {
            invalid(
                "an http or https URL",
                format!("`{}` ({e})", clip(&config.endpoint, 80)),
            )
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(invalid(
                "an http or https URL",
                format!("`{}`", redacted(&endpoint)),
            ));
        }
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
}
