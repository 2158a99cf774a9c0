//! [`DeliveryError`]: an event that did not reach its hook, or whose reply was unusable.

use std::time::Duration;

/// An event could not be delivered, or the reply could not be used. Each message names the
/// hook (its redacted endpoint or its command), the event and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The receiver could not be reached (connection refused, DNS, TLS, …).
    #[error("{hook} could not be reached for `{event}`: {message}")]
    Unreachable {
        /// The hook.
        hook: String,
        /// The event.
        event: &'static str,
        /// What failed.
        message: String,
    },
    /// The receiver took longer than the hook's timeout.
    #[error("{hook} did not answer `{event}` within {}", seconds(*timeout))]
    Timeout {
        /// The hook.
        hook: String,
        /// The event.
        event: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The webhook answered with a status other than 2xx.
    #[error("{hook} answered `{event}` with HTTP {status}{}", body_suffix(body))]
    Status {
        /// The hook.
        hook: String,
        /// The event.
        event: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The reply is not what the protocol expects.
    #[error("{hook} answered `{event}` with {problem}")]
    BadReply {
        /// The hook.
        hook: String,
        /// The event.
        event: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The command could not be started.
    #[error("{hook} could not be started: {message}")]
    Spawn {
        /// The hook.
        hook: String,
        /// Why.
        message: String,
    },
    /// The command's process ended before it answered.
    #[error(
        "{hook} exited ({status}) before answering `{event}`{}",
        stderr_suffix(stderr)
    )]
    Exited {
        /// The hook.
        hook: String,
        /// The event.
        event: &'static str,
        /// How it ended.
        status: String,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// The event could not be encoded as JSON.
    #[error("cannot encode the `{event}` event as JSON: {message}")]
    Encode {
        /// The event.
        event: &'static str,
        /// Why.
        message: String,
    },
}

impl DeliveryError {
    /// The event the error is about, when it concerns one.
    pub fn event(&self) -> Option<&'static str> {
        match self {
            DeliveryError::Unreachable { event, .. }
            | DeliveryError::Timeout { event, .. }
            | DeliveryError::Status { event, .. }
            | DeliveryError::BadReply { event, .. }
            | DeliveryError::Exited { event, .. }
            | DeliveryError::Encode { event, .. } => Some(event),
            DeliveryError::Spawn { .. } => None,
        }
    }
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

fn body_suffix(body: &str) -> String {
    if body.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", body.trim())
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        "; it wrote nothing to stderr".to_owned()
    } else {
        format!("; the end of its stderr:\n{}", stderr.trim_end())
    }
}

/// At most `limit` characters of `text`, marked when cut.
pub(crate) fn clip(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_hook_the_event_and_the_problem() {
        let timeout = DeliveryError::Timeout {
            hook: "webhook http://127.0.0.1:9/hooks".into(),
            event: "state_enter",
            timeout: Duration::from_millis(1500),
        };
        assert_eq!(
            timeout.to_string(),
            "webhook http://127.0.0.1:9/hooks did not answer `state_enter` within 1.5s"
        );
        let status = DeliveryError::Status {
            hook: "webhook x".into(),
            event: "error",
            status: 500,
            body: "boom\n".into(),
        };
        assert_eq!(
            status.to_string(),
            "webhook x answered `error` with HTTP 500: boom"
        );
        let exited = DeliveryError::Exited {
            hook: "command `false`".into(),
            event: "machine_start",
            status: "exit status: 1".into(),
            stderr: String::new(),
        };
        assert!(exited.to_string().ends_with("it wrote nothing to stderr"));
        assert_eq!(exited.event(), Some("machine_start"));
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hi", 2), "hi");
    }
}
