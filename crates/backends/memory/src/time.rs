//! Timestamps in the format the Python runtime writes.

use chrono::{SecondsFormat, Utc};

/// The current time as ISO 8601 in UTC with microseconds and a `+00:00` offset, e.g.
/// `2024-05-01T12:34:56.789012+00:00` — the shape of Python's
/// `datetime.now(timezone.utc).isoformat()`, so records written by either runtime compare and
/// parse alike.
pub fn now_iso8601() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_microseconds_and_a_numeric_utc_offset() {
        let now = now_iso8601();
        assert!(now.ends_with("+00:00"), "{now}");
        let (_, fraction) = now.split_once('.').unwrap();
        assert_eq!(fraction.len(), "123456+00:00".len(), "{now}");
        assert!(chrono::DateTime::parse_from_rfc3339(&now).is_ok());
    }
}
