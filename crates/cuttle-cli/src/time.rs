//! UTC calendar formatting of Unix times, without a date crate: the API sends Unix
//! milliseconds and teuthology run names carry a `YYYY-MM-DD_HH:MM:SS` stamp.
//!
//! Only [`now_unix_seconds`] and [`now_unix_millis`] read the clock; everything else is a
//! pure function of its arguments so it can be tested with fixed instants.

use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

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
    let seconds = now_ms.saturating_sub(then_ms).max(0) / 1000;
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days}d{hours:02}h")
    } else if hours > 0 {
        format!("{hours}h{minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m{:02}s", seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// The proleptic Gregorian date of `days` since 1970-01-01, as (year, month, day).
///
/// Howard Hinnant's `civil_from_days`: shift the year to start on 1 March so the leap day
/// is the last day of the year, then split into 400-year eras of 146097 days.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl UtcDateTime {
    /// The UTC time `seconds` after the Unix epoch (negative: before it).
    pub fn from_unix_seconds(seconds: i64) -> UtcDateTime {
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        let second_of_day = seconds.rem_euclid(86_400) as u32;
        UtcDateTime {
            year,
            month,
            day,
            hour: second_of_day / 3600,
            minute: second_of_day / 60 % 60,
            second: second_of_day % 60,
        }
    }

    /// teuthology's run-name stamp: `2026-11-23_10:00:00`.
    pub fn teuthology_stamp(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}_{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// RFC 3339 in UTC, to the second: `2026-11-23T10:00:00Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// A Unix-milliseconds value from the API as `2026-11-23T10:00:00Z`.
pub fn format_unix_millis(ms: i64) -> String {
    UtcDateTime::from_unix_seconds(ms.div_euclid(1000)).rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_around_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        // 2000 was a leap year (divisible by 400), 2100 will not be.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn stamps_are_zero_padded_utc() {
        // 2026-11-23T10:00:00Z
        let time = UtcDateTime::from_unix_seconds(1_795_428_000);
        assert_eq!(time.teuthology_stamp(), "2026-11-23_10:00:00");
        assert_eq!(time.rfc3339(), "2026-11-23T10:00:00Z");
        assert_eq!(
            UtcDateTime::from_unix_seconds(1_709_251_199).teuthology_stamp(),
            "2024-02-29_23:59:59"
        );
        assert_eq!(
            UtcDateTime::from_unix_seconds(0).teuthology_stamp(),
            "1970-01-01_00:00:00"
        );
    }

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

    #[test]
    fn every_day_of_four_centuries_follows_the_previous_one() {
        let mut previous = civil_from_days(-1);
        for days in 0..146_097 {
            let date = civil_from_days(days);
            let (year, month, day) = previous;
            let next_day = (year, month, day + 1);
            let next_month = (year, month + 1, 1);
            let next_year = (year + 1, 1, 1);
            assert!(
                date == next_day || date == next_month || date == next_year,
                "{previous:?} -> {date:?}"
            );
            previous = date;
        }
        assert_eq!(civil_from_days(146_097), (2370, 1, 1));
    }
}
