//! When a queued job is too old to run (teuthology's dispatcher rules, teuthology#1983):
//! past its `expire` time, or older than the lab's maximum job age counted from its
//! `timestamp` (when its suite was scheduled). Such a job is never started; it ends
//! `dead` with a reason that says it expired, instead of running days late.

use crate::UnixMillis;
use crate::time::days_from_civil;

/// teuthology's default `max_job_age`: two weeks.
pub const DEFAULT_MAX_JOB_AGE_S: i64 = 14 * 24 * 3600;

/// Parses teuthology's timestamps: ISO 8601 (`2026-11-29T10:00:00`, optional fraction,
/// `Z` or `+HH:MM`) or its own `2026-11-29_10:00:00`; no zone means UTC.
pub fn parse_timestamp(text: &str) -> Option<UnixMillis> {
    let text = text.trim();
    let (date, rest) = text.split_at(text.find(['T', '_', ' '])?);
    let rest = &rest[1..];
    let mut date_parts = date.split('-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // The zone, if any, follows the time.
    let (time, offset_s) = match rest.find(['Z', '+', '-']) {
        Some(at) => {
            let (time, zone) = rest.split_at(at);
            let offset = match zone {
                "Z" => 0,
                _ => {
                    let sign = if zone.starts_with('-') { -1 } else { 1 };
                    let digits = zone[1..].replace(':', "");
                    if digits.len() != 4 {
                        return None;
                    }
                    let hours: i64 = digits[..2].parse().ok()?;
                    let minutes: i64 = digits[2..].parse().ok()?;
                    sign * (hours * 3600 + minutes * 60)
                }
            };
            (time, offset)
        }
        None => (rest, 0),
    };
    let mut time_parts = time.split(':');
    let hour: i64 = time_parts.next()?.parse().ok()?;
    let minute: i64 = time_parts.next()?.parse().ok()?;
    let seconds: f64 = time_parts.next().unwrap_or("0").parse().ok()?;
    if time_parts.next().is_some() || hour > 23 || minute > 59 || !(0.0..61.0).contains(&seconds) {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let total_ms = (days * 86_400 + hour * 3600 + minute * 60 - offset_s) * 1000
        + (seconds * 1000.0).round() as i64;
    Some(UnixMillis(total_ms))
}

/// Why a job is expired at `now`, or `None`. `expire` and `timestamp` are the job
/// config's values; one that does not parse is ignored (as teuthology does), so a job is
/// never ended on a typo alone.
pub fn expired(
    expire: Option<&str>,
    timestamp: Option<&str>,
    max_job_age_s: i64,
    now: UnixMillis,
) -> Option<String> {
    if let Some(stamp) = timestamp
        && let Some(at) = parse_timestamp(stamp)
        && at.0 + max_job_age_s * 1000 < now.0
    {
        return Some(format!(
            "expired: scheduled at {stamp}, more than the lab's max_job_age of {} days ago, so it was not started (teuthology#1983)",
            max_job_age_s / 86_400
        ));
    }
    if let Some(expire) = expire
        && let Some(at) = parse_timestamp(expire)
        && at.0 < now.0
    {
        return Some(format!(
            "expired: its expire time {expire} passed before it could start, so it was not started"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teuthologys_timestamps_parse() {
        let at = parse_timestamp("2026-11-29_10:00:00").unwrap();
        assert_eq!(parse_timestamp("2026-11-29T10:00:00").unwrap(), at);
        assert_eq!(parse_timestamp("2026-11-29T10:00:00Z").unwrap(), at);
        assert_eq!(parse_timestamp("2026-11-29T12:00:00+02:00").unwrap(), at);
        assert_eq!(
            parse_timestamp("2026-11-29T10:00:00.500").unwrap().0,
            at.0 + 500
        );
        assert_eq!(at.0, 1_795_946_400_000);
        for bad in [
            "",
            "yesterday",
            "2026-13-01_00:00:00",
            "2026-11-29",
            "2026-11-29_25:00:00",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_job_expires_past_its_expire_or_its_age() {
        let now = parse_timestamp("2026-11-29_10:00:00").unwrap();
        assert_eq!(expired(None, None, DEFAULT_MAX_JOB_AGE_S, now), None);
        assert!(
            expired(
                Some("2026-11-29_09:59:59"),
                None,
                DEFAULT_MAX_JOB_AGE_S,
                now
            )
            .unwrap()
            .starts_with("expired: its expire time")
        );
        assert_eq!(
            expired(
                Some("2026-11-29_10:00:01"),
                None,
                DEFAULT_MAX_JOB_AGE_S,
                now
            ),
            None
        );
        assert!(
            expired(
                None,
                Some("2026-11-01_00:00:00"),
                DEFAULT_MAX_JOB_AGE_S,
                now
            )
            .unwrap()
            .contains("max_job_age of 14 days")
        );
        assert_eq!(
            expired(
                None,
                Some("2026-11-20_00:00:00"),
                DEFAULT_MAX_JOB_AGE_S,
                now
            ),
            None
        );
        assert_eq!(
            expired(Some("soon"), Some("then"), DEFAULT_MAX_JOB_AGE_S, now),
            None
        );
    }
}
