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
    /// Which recent failure decides when a caller may try again: with `failures` in the
    /// window and room for `limit`, the caller is under the limit once all but `limit - 1`
    /// have aged out, i.e. when the `failures - limit`-th oldest (0-based) leaves the
    /// window. `None` when the caller is under the limit now.
    pub fn deciding_failure_index(limit: u32, failures: u64) -> Option<u64> {
        (failures >= u64::from(limit)).then(|| failures - u64::from(limit))
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
    fn throttle_deciding_failure() {
        assert_eq!(LoginThrottle::deciding_failure_index(5, 4), None);
        assert_eq!(LoginThrottle::deciding_failure_index(5, 5), Some(0));
        assert_eq!(LoginThrottle::deciding_failure_index(5, 16), Some(11));
        assert_eq!(LoginThrottle::deciding_failure_index(5, 0), None);
    }
}
