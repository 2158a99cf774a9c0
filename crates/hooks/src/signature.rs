//! Webhook signatures: how a receiver knows a request came from this runtime and was not
//! replayed.
//!
//! With `signing_secret_env` set, every webhook request carries two headers:
//!
//! - [`TIMESTAMP_HEADER`]: the Unix time of sending, in seconds;
//! - [`SIGNATURE_HEADER`]: `sha256=` and the lowercase hex HMAC-SHA256, keyed with the secret,
//!   of the timestamp, a `.`, and the exact request body.
//!
//! A receiver recomputes the HMAC over the raw body it received, compares in constant time,
//! and rejects timestamps too far from its own clock (see [`verify`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header holding the signature.
pub const SIGNATURE_HEADER: &str = "x-flatmachines-signature";
/// The header holding the Unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-flatmachines-timestamp";

const PREFIX: &str = "sha256=";

type HmacSha256 = Hmac<Sha256>;

/// The MAC of `timestamp.body`. HMAC takes keys of any length, so this is `None` never in
/// practice; callers treat `None` as a signature that matches nothing rather than panic.
fn mac(key: &[u8], timestamp: u64, body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp` (Unix seconds).
pub fn sign(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    let digest = mac(key, timestamp, body)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default();
    format!("{PREFIX}{digest}")
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The timestamp header is not a number of seconds.
    #[error("the `{TIMESTAMP_HEADER}` header must be Unix seconds, found `{0}`")]
    BadTimestamp(String),
    /// The timestamp is further from now than the tolerance.
    #[error("the request was signed {age}s away from now, more than the {tolerance}s allowed")]
    Stale {
        /// Seconds between the timestamp and now.
        age: u64,
        /// The tolerance.
        tolerance: u64,
    },
    /// The signature header does not have the `sha256=<hex>` form.
    #[error("the `{SIGNATURE_HEADER}` header must be `sha256=` and 64 hex digits")]
    Malformed,
    /// The signature does not match the body.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks a request: `timestamp` and `signature` are the header values, `now` the receiver's
/// Unix time, `tolerance` the largest accepted distance between the two, in seconds.
pub fn verify(
    key: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: u64,
    tolerance: u64,
) -> Result<(), SignatureError> {
    let sent: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp(crate::error::clip(timestamp, 40)))?;
    let age = now.abs_diff(sent);
    if age > tolerance {
        return Err(SignatureError::Stale { age, tolerance });
    }
    let digest = signature
        .trim()
        .strip_prefix(PREFIX)
        .and_then(|hex_digits| hex::decode(hex_digits).ok())
        .filter(|digest| digest.len() == 32)
        .ok_or(SignatureError::Malformed)?;
    mac(key, sent, body)
        .ok_or(SignatureError::Mismatch)?
        .verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let body = br#"{"event":"machine_start","context":{}}"#;
        let signature = sign(b"k3y", 1_700_000_000, body);
        assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);
        assert_eq!(
            verify(b"k3y", "1700000000", body, &signature, 1_700_000_010, 300),
            Ok(())
        );
        assert_eq!(
            verify(b"other", "1700000000", body, &signature, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k3y", "1700000001", body, &signature, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k3y", "1700000000", b"{}", &signature, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k3y", "1700000000", body, &signature, 1_700_001_000, 300),
            Err(SignatureError::Stale {
                age: 1000,
                tolerance: 300
            })
        );
        assert_eq!(
            verify(b"k3y", "soon", body, &signature, 0, 300),
            Err(SignatureError::BadTimestamp("soon".into()))
        );
        assert_eq!(
            verify(b"k3y", "1700000000", body, "md5=00", 1_700_000_000, 300),
            Err(SignatureError::Malformed)
        );
    }

    proptest::proptest! {
        /// Whatever the key, time and body, a signature verifies, and changing one byte of
        /// the body or the time breaks it.
        #[test]
        fn signatures_verify_and_changes_break_them(
            key in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            sent in 0u64..4_000_000_000,
            body in proptest::collection::vec(proptest::num::u8::ANY, 1..400),
            flip in proptest::num::usize::ANY,
        ) {
            let signature = sign(&key, sent, &body);
            let timestamp = sent.to_string();
            proptest::prop_assert_eq!(verify(&key, &timestamp, &body, &signature, sent, 0), Ok(()));
            let mut changed = body.clone();
            changed[flip % body.len()] ^= 0x01;
            proptest::prop_assert_eq!(
                verify(&key, &timestamp, &changed, &signature, sent, 0),
                Err(SignatureError::Mismatch)
            );
            let later = (sent + 1).to_string();
            proptest::prop_assert_eq!(
                verify(&key, &later, &body, &signature, sent, 1),
                Err(SignatureError::Mismatch)
            );
        }

        /// Arbitrary header values are refused with an error, never a panic.
        #[test]
        fn arbitrary_headers_are_refused(timestamp in ".{0,30}", signature in ".{0,90}") {
            let verdict = verify(b"k", &timestamp, b"{}", &signature, 0, u64::MAX);
            proptest::prop_assert!(verdict.is_err());
        }
    }

    /// The documented recipe, computed by hand: HMAC-SHA256("secret", "1.{}").
    #[test]
    fn the_signed_text_is_timestamp_dot_body() {
        let mut mac = HmacSha256::new_from_slice(b"secret").unwrap();
        mac.update(b"1.{}");
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sign(b"secret", 1, b"{}"), expected);
    }
}
