//! API keys: where they come from ([`KeySource`]) and how they are held so that they never
//! reach logs, errors, checkpoints or snapshots.

use std::fmt;
use std::sync::Arc;

/// Looks up API keys by environment variable name.
///
/// The default reads the process environment. Embedders can supply their own lookup (a
/// secret manager, or a fixed map in tests — Rust 2024 makes changing the process environment
/// `unsafe`, which this workspace forbids).
#[derive(Clone)]
pub struct KeySource(Arc<Lookup>);

/// Variable name in, key out.
type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl KeySource {
    /// Reads the process environment.
    pub fn environment() -> KeySource {
        KeySource(Arc::new(|name| std::env::var(name).ok()))
    }

    /// Looks keys up with `lookup`.
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> KeySource {
        KeySource(Arc::new(lookup))
    }

    /// The key in `variable`; an empty value counts as unset.
    pub(crate) fn get(&self, variable: &str) -> Option<ApiKey> {
        (self.0)(variable)
            .filter(|value| !value.trim().is_empty())
            .map(ApiKey)
    }
}

impl Default for KeySource {
    fn default() -> Self {
        KeySource::environment()
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySource(..)")
    }
}

/// An API key. It has no `Display` and its `Debug` prints no part of it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiKey(String);

impl ApiKey {
    /// The key itself, for the one place that needs it: the request header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced, for provider text put into errors
    /// (a server may echo the key it was sent).
    pub(crate) fn redact(&self, text: &str) -> String {
        let key = self.0.trim();
        if key.is_empty() {
            return text.to_owned();
        }
        text.replace(key, "[redacted]")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_print() {
        let keys = KeySource::from_fn(|name| (name == "K").then(|| "sk-secret-123".to_owned()));
        let key = keys.get("K").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey([redacted])");
        assert_eq!(format!("{keys:?}"), "KeySource(..)");
        assert_eq!(key.redact("bad key sk-secret-123!"), "bad key [redacted]!");
        assert_eq!(key.expose(), "sk-secret-123");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let keys = KeySource::from_fn(|_| Some("  ".to_owned()));
        assert!(keys.get("ANY").is_none());
        assert!(
            KeySource::environment()
                .get("FLATAGENTS_TEST_SURELY_UNSET_VARIABLE")
                .is_none()
        );
    }
}
