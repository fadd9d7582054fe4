//! The rules for how long a session lives and how failed logins are throttled.

use crate::clock::Timestamp;
use std::time::Duration;

/// How long a session may live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// From login, whatever the activity.
    pub absolute_lifetime: Duration,
    /// Since the last request.
    pub idle_timeout: Duration,
}

impl SessionPolicy {
    /// `last_seen_at` is only written when it is older than this, so a busy client does not
    /// turn every read into a write; the idle timeout is therefore exact to within it.
    pub const TOUCH_INTERVAL: Duration = Duration::from_secs(30);

    /// Whether a session created at `created_at` and last used at `last_seen_at` is still
    /// alive at `now`.
    pub fn is_alive(&self, created_at: Timestamp, last_seen_at: Timestamp, now: Timestamp) -> bool {
        now < created_at.plus(self.absolute_lifetime) && now < last_seen_at.plus(self.idle_timeout)
    }

    pub fn needs_touch(last_seen_at: Timestamp, now: Timestamp) -> bool {
        last_seen_at.until(now) >= Self::TOUCH_INTERVAL
    }
}

/// Failed-login throttling: at most so many failures per account, and per client address,
/// within a sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginThrottle {
    pub max_failures_per_account: u32,
    pub max_failures_per_address: u32,
    pub window: Duration,
}

impl LoginThrottle {
    /// When a caller with `failures` recent failures, the oldest at `oldest_failure`, may try
    /// again: `None` if it may now.
    pub fn retry_at(
        limit: u32,
        failures: u64,
        oldest_failure: Option<Timestamp>,
        window: Duration,
    ) -> Option<Timestamp> {
        if failures < u64::from(limit) {
            return None;
        }
        oldest_failure.map(|oldest| oldest.plus(window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(secs * 1_000_000)
    }

    const POLICY: SessionPolicy = SessionPolicy {
        absolute_lifetime: Duration::from_secs(100),
        idle_timeout: Duration::from_secs(10),
    };

    #[test]
    fn alive_within_both_limits() {
        assert!(POLICY.is_alive(at(0), at(0), at(9)));
        assert!(POLICY.is_alive(at(0), at(50), at(59)));
    }

    #[test]
    fn idle_ends_it() {
        assert!(!POLICY.is_alive(at(0), at(0), at(10)));
        assert!(!POLICY.is_alive(at(0), at(50), at(61)));
    }

    #[test]
    fn absolute_lifetime_ends_it_even_when_active() {
        assert!(!POLICY.is_alive(at(0), at(99), at(100)));
    }

    #[test]
    fn touch_only_after_interval() {
        assert!(!SessionPolicy::needs_touch(at(0), at(29)));
        assert!(SessionPolicy::needs_touch(at(0), at(30)));
    }

    #[test]
    fn throttle_retry_time() {
        let window = Duration::from_secs(900);
        assert_eq!(LoginThrottle::retry_at(5, 4, Some(at(1)), window), None);
        assert_eq!(
            LoginThrottle::retry_at(5, 5, Some(at(1)), window),
            Some(at(901))
        );
        assert_eq!(LoginThrottle::retry_at(5, 0, None, window), None);
    }
}
