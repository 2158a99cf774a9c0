//! Timestamps: ISO 8601 text for records, milliseconds for lock leases.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{SecondsFormat, Utc};

/// The current time as ISO 8601 in UTC with microseconds and a `+00:00` offset — the shape
/// Python's `datetime.now(timezone.utc).isoformat()` writes, so records written by either
/// runtime parse alike.
pub(crate) fn now_iso8601() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// Milliseconds since the Unix epoch. Lease deadlines compare values from processes on one
/// host (the database file is local), so they share this clock.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_microseconds_and_a_numeric_offset() {
        let now = now_iso8601();
        assert!(now.ends_with("+00:00"), "{now}");
        let (_, fraction) = now.split_once('.').unwrap();
        assert_eq!(fraction.len(), "123456+00:00".len(), "{now}");
        assert!(now_millis() > 1_600_000_000_000);
    }
}
