//! The tube's lease as this dispatcher keeps it: when to renew, and how long a lease it
//! could not renew is still safely its own. Pure: the caller passes the time.

use std::time::Duration;

use tokio::time::Instant;

/// The lease's standing, from this dispatcher's side.
#[derive(Debug, Clone)]
pub struct LeaseKeeper {
    ttl: Duration,
    confirmed: Option<Instant>,
}

impl LeaseKeeper {
    pub fn new(ttl: Duration) -> LeaseKeeper {
        LeaseKeeper {
            ttl,
            confirmed: None,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// cuttle-api granted (or renewed) it at `now`.
    pub fn confirm(&mut self, now: Instant) {
        self.confirmed = Some(now);
    }

    /// cuttle-api refused it: another holder has it.
    pub fn lose(&mut self) {
        self.confirmed = None;
    }

    pub fn is_held(&self) -> bool {
        self.confirmed.is_some()
    }

    /// Whether it is time to renew: a third of its time-to-live has passed, leaving two
    /// more tries before it expires.
    pub fn due(&self, now: Instant) -> bool {
        self.confirmed
            .is_some_and(|at| now.duration_since(at) >= self.ttl / 3)
    }

    /// A renewal failed (cuttle-api unreachable): whether the lease is still safely ours.
    /// Once 90 % of its time-to-live has passed it is given up, since another dispatcher
    /// may take the tube when it expires.
    pub fn survives_failed_renewal(&mut self, now: Instant) -> bool {
        let valid = self
            .confirmed
            .is_some_and(|at| now.duration_since(at) < self.ttl.mul_f64(0.9));
        if !valid {
            self.confirmed = None;
        }
        valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_a_third_and_gives_up_at_nine_tenths() {
        let start = Instant::now();
        let mut lease = LeaseKeeper::new(Duration::from_secs(30));
        assert!(!lease.is_held());
        assert!(!lease.due(start));
        lease.confirm(start);
        assert!(!lease.due(start + Duration::from_millis(9_999)));
        assert!(lease.due(start + Duration::from_secs(10)));
        assert!(lease.survives_failed_renewal(start + Duration::from_millis(26_999)));
        assert!(lease.is_held());
        assert!(!lease.survives_failed_renewal(start + Duration::from_secs(27)));
        assert!(!lease.is_held());
    }
}
