//! Which workers a [`WorkerFilter`] selects: one definition every registration backend shares,
//! so `list` answers the same everywhere.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::distributed::{WorkerFilter, WorkerRecord};

impl WorkerFilter {
    /// Whether `record` meets every condition of the filter at time `now`.
    ///
    /// A worker is stale when its last heartbeat is more than `stale_threshold_seconds` before
    /// `now`; a heartbeat that is not a time counts as stale, since nothing shows the worker
    /// alive.
    #[must_use]
    pub fn matches(&self, record: &WorkerRecord, now: DateTime<Utc>) -> bool {
        let status = self
            .status
            .as_ref()
            .is_none_or(|wanted| wanted.contains(&record.status));
        let capability = self.capability.as_ref().is_none_or(|wanted| {
            record
                .capabilities
                .as_ref()
                .is_some_and(|capabilities| capabilities.contains(wanted))
        });
        let pool = self
            .pool_id
            .as_ref()
            .is_none_or(|wanted| record.pool_id.as_ref() == Some(wanted));
        let stale = self
            .stale_threshold_seconds
            .is_none_or(|threshold| heartbeat_older_than(&record.last_heartbeat, threshold, now));
        status && capability && pool && stale
    }
}

/// Whether the time `heartbeat` is more than `seconds` before `now` (unparsable: yes).
#[must_use]
pub fn heartbeat_older_than(heartbeat: &str, seconds: f64, now: DateTime<Utc>) -> bool {
    let Some(heartbeat) = parse_timestamp(heartbeat) else {
        return true;
    };
    let age = now.signed_duration_since(heartbeat);
    // Microseconds overflow only for ages of ~292,000 years, which are stale by any threshold.
    let age_seconds = age
        .num_microseconds()
        .map_or(f64::INFINITY, |micros| micros as f64 / 1e6);
    age_seconds > seconds
}

/// Parses the timestamps workers and work items carry: RFC 3339, and ISO 8601 without an
/// offset (Python's naive `isoformat()`, written by the reference) taken as UTC.
#[must_use]
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(status: &str, heartbeat: &str) -> WorkerRecord {
        WorkerRecord {
            worker_id: "w".to_owned(),
            status: status.to_owned(),
            last_heartbeat: heartbeat.to_owned(),
            host: None,
            pid: None,
            capabilities: Some(vec!["gpu".to_owned()]),
            pool_id: Some("p".to_owned()),
            started_at: None,
            current_task_id: None,
            metadata: None,
        }
    }

    #[test]
    fn timestamps_with_and_without_offsets() {
        let utc_noon = parse_timestamp("2024-05-01T12:00:00Z");
        for text in [
            "2024-05-01T12:00:00+00:00",
            "2024-05-01T14:00:00+02:00",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.000",
        ] {
            assert_eq!(parse_timestamp(text), utc_noon, "{text}");
        }
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn python_and_rfc3339_timestamps_parse_and_nonsense_does_not() {
        for text in [
            "2024-05-01T12:00:00.123456+00:00",
            "2024-05-01T14:00:00+02:00",
            "2024-05-01T12:00:00.5",
        ] {
            let parsed = parse_timestamp(text).map(|t| t.format("%F %H").to_string());
            assert_eq!(parsed.as_deref(), Some("2024-05-01 12"), "{text}");
        }
        for text in ["", "yesterday", "2024-13-01T00:00:00+00:00"] {
            assert!(parse_timestamp(text).is_none(), "{text}");
        }
    }

    #[test]
    fn staleness_is_strictly_older_than_the_threshold() {
        let now = parse_timestamp("2024-05-01T12:01:00+00:00").unwrap_or_default();
        let beat = "2024-05-01T12:00:00+00:00";
        assert!(heartbeat_older_than(beat, 59.9, now));
        assert!(!heartbeat_older_than(beat, 60.0, now));
        assert!(!heartbeat_older_than(beat, f64::NAN, now));
        assert!(heartbeat_older_than("garbage", 1e9, now));
    }

    #[test]
    fn every_condition_must_hold() {
        let now = parse_timestamp("2024-05-01T12:01:00Z").unwrap_or_default();
        let record = worker("active", "2024-05-01T12:00:00Z");
        let filter = |f: WorkerFilter| f.matches(&record, now);
        assert!(filter(WorkerFilter::default()));
        assert!(filter(WorkerFilter {
            status: Some(vec!["lost".to_owned(), "active".to_owned()]),
            capability: Some("gpu".to_owned()),
            pool_id: Some("p".to_owned()),
            stale_threshold_seconds: Some(59.0),
        }));
        assert!(!filter(WorkerFilter {
            status: Some(Vec::new()),
            ..WorkerFilter::default()
        }));
        assert!(!filter(WorkerFilter {
            capability: Some("cpu".to_owned()),
            ..WorkerFilter::default()
        }));
        assert!(!filter(WorkerFilter {
            stale_threshold_seconds: Some(60.0),
            ..WorkerFilter::default()
        }));
        let garbled = worker("active", "not a time");
        assert!(
            WorkerFilter {
                stale_threshold_seconds: Some(1e9),
                ..WorkerFilter::default()
            }
            .matches(&garbled, now)
        );
    }
}
