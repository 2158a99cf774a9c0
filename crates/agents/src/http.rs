//! HTTP: the client (timeouts, rustls), the POST, and turning failures into [`AgentError`]s
//! that carry the status, the response headers and the provider's message — never the
//! request's headers, which hold the key.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::Value;

use flatmachines_core::AgentError;

use crate::error::{error_types, truncate};
use crate::secret::ApiKey;

/// Largest response body read; a provider answer is far smaller.
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// How much of a provider's error body goes into a message.
const MAX_ERROR_CHARS: usize = 1000;

/// Builds the client one agent uses for all its calls (connections are pooled).
pub(crate) fn client(
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .user_agent(concat!("flatmachines-agents/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| chain(&e))
}

/// Where a call goes, for messages and redaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) provider: &'a str,
    pub(crate) model: &'a str,
    pub(crate) endpoint: &'a str,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) key: Option<&'a ApiKey>,
}

impl Target<'_> {
    /// The endpoint without user info or query, which could hold credentials.
    fn url(&self) -> String {
        match reqwest::Url::parse(self.endpoint) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.set_query(None);
                url.to_string()
            }
            Err(_) => self.endpoint.to_owned(),
        }
    }

    fn who(&self) -> String {
        format!("{} (model `{}`)", self.provider, self.model)
    }

    /// `text` with the key removed.
    pub(crate) fn redact(&self, text: &str) -> String {
        match self.key {
            Some(key) => key.redact(text),
            None => text.to_owned(),
        }
    }

    /// An error of `error_type` about this call.
    pub(crate) fn error(&self, error_type: &str, message: impl AsRef<str>) -> AgentError {
        AgentError::new(self.redact(&format!("{}: {}", self.who(), message.as_ref())))
            .with_type(error_type)
    }
}

/// POSTs `body`; a non-2xx answer becomes an error carrying its status, headers and body.
pub(crate) async fn post(
    client: &reqwest::Client,
    target: Target<'_>,
    headers: HeaderMap,
    body: &Value,
) -> Result<reqwest::Response, AgentError> {
    let response = client
        .post(target.endpoint)
        .headers(headers)
        .json(body)
        .send()
        .await
        .map_err(|e| transport_error(target, &e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response_headers(response.headers());
    let body = read_prefix(response, 64 * 1024).await;
    let text = String::from_utf8_lossy(&body);
    let detail = match text.trim() {
        "" => status.canonical_reason().unwrap_or("no body").to_owned(),
        text => truncate(text, MAX_ERROR_CHARS),
    };
    let mut error = target
        .error(
            status_type(status.as_u16()),
            format!("HTTP {}: {detail}", status.as_u16()),
        )
        .with_status(status.as_u16());
    error.headers = headers;
    Err(error)
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(
    response: reqwest::Response,
    target: Target<'_>,
) -> Result<Bytes, AgentError> {
    read_limited(response, target, MAX_BODY_BYTES).await
}

async fn read_limited(
    mut response: reqwest::Response,
    target: Target<'_>,
    limit: usize,
) -> Result<Bytes, AgentError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(target, &e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(target.error(
                error_types::INVALID_RESPONSE,
                format!("the response body is larger than {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// The first `limit` bytes of an error body, or what arrived before the connection failed:
/// the status already says what happened, the body only adds detail.
async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(limit);
    body
}

/// Parses a JSON body, or says what came instead.
pub(crate) fn parse_json(body: &[u8], target: Target<'_>) -> Result<Value, AgentError> {
    serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(body);
        target.error(
            error_types::INVALID_RESPONSE,
            format!(
                "the response is not valid JSON ({e}): {}",
                truncate(text.trim(), 200)
            ),
        )
    })
}

/// The response's headers, names lower-case (as `http` stores them), cookies left out.
pub(crate) fn response_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| *name != reqwest::header::SET_COOKIE)
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

/// The error type of an HTTP status.
pub(crate) fn status_type(status: u16) -> &'static str {
    match status {
        401 | 403 => error_types::AUTHENTICATION,
        408 => error_types::TIMEOUT,
        429 => error_types::RATE_LIMIT,
        400..=499 => error_types::BAD_REQUEST,
        500..=599 => error_types::SERVER,
        _ => error_types::INVALID_RESPONSE,
    }
}

/// An error object a provider put in a 2xx body or a stream (`{"error": {...}}`): typed by its
/// numeric `code` when it has one (OpenRouter), else by its `type` (Anthropic, OpenAI).
pub(crate) fn embedded_error(target: Target<'_>, error: &Value) -> AgentError {
    let code = error
        .get("code")
        .and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()))
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("");
    let error_type = match code {
        Some(code) => status_type(code),
        None if kind.contains("rate_limit") => error_types::RATE_LIMIT,
        None if kind.contains("authentication") || kind.contains("permission") => {
            error_types::AUTHENTICATION
        }
        None if kind.contains("invalid_request") || kind.contains("not_found") => {
            error_types::BAD_REQUEST
        }
        None => error_types::SERVER,
    };
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_owned);
    let mut agent_error = target.error(
        error_type,
        format!(
            "the provider reported an error: {}",
            truncate(&message, MAX_ERROR_CHARS)
        ),
    );
    agent_error.status_code = code;
    agent_error
}

/// A failure to send or to read: a timeout, or a connection problem.
pub(crate) fn transport_error(target: Target<'_>, error: &reqwest::Error) -> AgentError {
    if error.is_timeout() && error.is_connect() {
        return target.error(
            error_types::TIMEOUT,
            format!(
                "could not connect to {} within {} s (raise `connect_timeout` in the model profile)",
                target.url(),
                target.connect_timeout.as_secs_f64()
            ),
        );
    }
    if error.is_timeout() {
        return target.error(
            error_types::TIMEOUT,
            format!(
                "no complete answer from {} within {} s (raise `timeout` in the model profile)",
                target.url(),
                target.timeout.as_secs_f64()
            ),
        );
    }
    let what = if error.is_body() || error.is_decode() {
        "the response was cut off"
    } else {
        "cannot reach"
    };
    target.error(
        error_types::CONNECTION,
        format!("{what} {}: {}", target.url(), causes(error)),
    )
}

/// An error and its causes on one line (reqwest's own message is only the outermost).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    text.push_str(&source_chain(error.source()));
    text
}

/// What caused a request error, without reqwest's outermost message (it repeats the full URL).
fn causes(error: &reqwest::Error) -> String {
    let text = source_chain(std::error::Error::source(error));
    match text.strip_prefix(": ") {
        Some(text) => text.to_owned(),
        None => "the request failed".to_owned(),
    }
}

fn source_chain(mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut text = String::new();
    while let Some(cause) = source {
        let described = cause.to_string();
        if !text.contains(&described) {
            text.push_str(": ");
            text.push_str(&described);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target<'static> {
        Target {
            provider: "openrouter",
            model: "m",
            endpoint: "http://127.0.0.1:1/chat/completions",
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            key: None,
        }
    }

    #[test]
    fn statuses_map_to_error_types() {
        assert_eq!(status_type(429), "RateLimitError");
        assert_eq!(status_type(401), "AuthenticationError");
        assert_eq!(status_type(403), "AuthenticationError");
        assert_eq!(status_type(404), "BadRequestError");
        assert_eq!(status_type(500), "ServerError");
        assert_eq!(status_type(529), "ServerError");
        assert_eq!(status_type(408), "Timeout");
        assert_eq!(status_type(302), "InvalidResponse");
    }

    #[test]
    fn embedded_errors_are_typed_by_code_or_type() {
        let e = embedded_error(target(), &json!({"code": 429, "message": "slow down"}));
        assert_eq!(
            (e.error_type.as_str(), e.status_code),
            ("RateLimitError", Some(429))
        );
        assert!(
            e.message
                .ends_with("the provider reported an error: slow down"),
            "{}",
            e.message
        );
        let e = embedded_error(
            target(),
            &json!({"type": "overloaded_error", "message": "busy"}),
        );
        assert_eq!(e.error_type, "ServerError");
        let e = embedded_error(target(), &json!({"type": "invalid_request_error"}));
        assert_eq!(e.error_type, "BadRequestError");
    }

    #[test]
    fn messages_show_the_endpoint_without_credentials() {
        let target = Target {
            endpoint: "https://user:pw@example.test/v1/chat/completions?api-key=k",
            ..target()
        };
        assert_eq!(target.url(), "https://example.test/v1/chat/completions");
    }

    #[test]
    fn invalid_json_is_reported_with_a_snippet() {
        let e = parse_json(b"<html>oops</html>", target()).unwrap_err();
        assert_eq!(e.error_type, "InvalidResponse");
        assert!(e.message.contains("<html>oops</html>"), "{}", e.message);
    }
}
