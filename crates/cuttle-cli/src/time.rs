//! UTC calendar formatting of Unix times, without a date crate: the API sends Unix
//! milliseconds and teuthology run names carry a `YYYY-MM-DD_HH:MM:SS` stamp.
//!
//! Only [`now_unix_seconds`] and [`now_unix_millis`] read the clock; everything else is a
//! pure function of its arguments so it can be tested with fixed instants.

use std::time::{SystemTime, UNIX_EPOCH};

pub use cuttle_core::time::{UtcDateTime, civil_from_days};

/// Seconds since the Unix epoch, now. A clock before 1970 reads as 0.
pub fn now_unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now, as the API stamps its records. A clock before
/// 1970 reads as 0.
pub fn now_unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long ago `then_ms` was at `now_ms`, in the two largest units: `42s`, `5m12s`,
/// `2h03m`, `1d02h`. A time in the future (the API's clock ahead of ours) reads as `0s`
/// rather than a negative age.
pub fn format_age(then_ms: i64, now_ms: i64) -> String {
    cuttle_core::time::format_span(now_ms.saturating_sub(then_ms))
}

/// A Unix-milliseconds value from the API as `2026-11-23T10:00:00Z`.
pub fn format_unix_millis(ms: i64) -> String {
    UtcDateTime::from_unix_seconds(ms.div_euclid(1000)).rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_down_even_before_the_epoch() {
        assert_eq!(format_unix_millis(1_999), "1970-01-01T00:00:01Z");
        assert_eq!(format_unix_millis(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn ages_use_the_two_largest_units() {
        let now = 1_795_428_000_000;
        for (ago_ms, age) in [
            (0, "0s"),
            (999, "0s"),
            (42_000, "42s"),
            (60_000, "1m00s"),
            (312_000, "5m12s"),
            (3_599_999, "59m59s"),
            (3_600_000, "1h00m"),
            (7_380_000, "2h03m"),
            (86_399_000, "23h59m"),
            (86_400_000, "1d00h"),
            (93_600_000, "1d02h"),
            (40 * 86_400_000, "40d00h"),
        ] {
            assert_eq!(format_age(now - ago_ms, now), age, "{ago_ms} ms ago");
        }
    }

    #[test]
    fn a_time_in_the_future_has_no_negative_age() {
        assert_eq!(format_age(10_000, 0), "0s");
        assert_eq!(format_age(i64::MAX, i64::MIN), "0s");
        assert_eq!(format_age(i64::MIN, i64::MAX), "106751991167d07h");
    }
}
