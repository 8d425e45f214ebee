//! Points in time as integer milliseconds since the Unix epoch, and their UTC calendar
//! form (teuthology's run-name stamp, RFC 3339), with the `time` crate's calendar.
//!
//! Stored as a plain `i64` so both database backends keep it in a `BIGINT` column. Nothing
//! here reads the clock: the daemons read it once and pass the value in.

use serde::{Deserialize, Serialize};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// Whole seconds elapsed from `earlier` to `self`, never negative.
    pub fn seconds_since(self, earlier: UnixMillis) -> i64 {
        (self.0 - earlier.0).max(0) / 1000
    }

    /// `self` moved forward by `seconds`.
    pub fn plus_seconds(self, seconds: i64) -> UnixMillis {
        UnixMillis(self.0.saturating_add(seconds.saturating_mul(1000)))
    }
}

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

/// A span of `ms` milliseconds in its two largest units, as people read them in a
/// table: `42s`, `5m12s`, `2h03m`, `1d02h`. Negative spans read as `0s`.
pub fn format_span(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
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

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// The proleptic Gregorian date of `days` since 1970-01-01, as (year, month, day), by the
/// `time` crate; days beyond its range (years ±9999) give its first or last date.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let julian = i32::try_from(days.saturating_add(UNIX_EPOCH_JULIAN_DAY)).unwrap_or(i32::MAX);
    let date = time::Date::from_julian_day(julian).unwrap_or(if days < 0 {
        time::Date::MIN
    } else {
        time::Date::MAX
    });
    (
        i64::from(date.year()),
        u32::from(u8::from(date.month())),
        u32::from(date.day()),
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date, the inverse of
/// [`civil_from_days`]; `None` for a date that does not exist (February 30, month 13).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
            .ok()?;
    Some(i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
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
    fn dates_that_do_not_exist_have_no_day() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(days_from_civil(2024, 13, 1), None);
        assert_eq!(days_from_civil(2024, 4, 31), None);
        for days in [-1, 0, 59, 11_016, 47_540, 146_097] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), Some(days));
        }
    }

    #[test]
    fn stamps_are_zero_padded_utc() {
        // 2026-11-23T10:00:00Z
        let time = UtcDateTime::from_unix_seconds(1_795_428_000);
        assert_eq!(time.teuthology_stamp(), "2026-11-23_10:00:00");
        assert_eq!(time.rfc3339(), "2026-11-23T10:00:00Z");
        assert_eq!(
            UtcDateTime::from_unix_seconds(1_795_984_358).teuthology_stamp(),
            "2026-11-29_20:32:38"
        );
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

    #[test]
    fn seconds_since_never_goes_negative() {
        assert_eq!(UnixMillis(5_500).seconds_since(UnixMillis(1_000)), 4);
        assert_eq!(UnixMillis(1_000).seconds_since(UnixMillis(5_500)), 0);
        assert_eq!(UnixMillis(1_000).plus_seconds(2), UnixMillis(3_000));
    }
}
