//! Points in time as integer milliseconds since the Unix epoch.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_since_never_goes_negative() {
        assert_eq!(UnixMillis(5_500).seconds_since(UnixMillis(1_000)), 4);
        assert_eq!(UnixMillis(1_000).seconds_since(UnixMillis(5_500)), 0);
        assert_eq!(UnixMillis(1_000).plus_seconds(2), UnixMillis(3_000));
    }
}
