//! In-memory rate limits: one token bucket per key (a user, an account name, a client
//! address). A bucket holds up to `per_minute` tokens and refills at `per_minute` a
//! minute, so a burst of `per_minute` is allowed at once and the long-run rate is
//! `per_minute`. Buckets live in this process only: with several nodes behind a load
//! balancer each node counts on its own (so the cluster-wide rate is up to the number of
//! nodes times the limit), which is what an abuse limit needs, not an exact quota.
//!
//! Time comes in as [`Timestamp`]s from the caller's clock, so tests move it by hand.

use crate::Timestamp;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Buckets kept before full (idle) ones are dropped; a full bucket is the same as none.
const PRUNE_AT: usize = 10_000;

/// One token, in the integer units buckets count in: a bucket gains `per_minute` units a
/// microsecond, so a token takes `MINUTE_MICROS / per_minute` microseconds to come back.
const TOKEN: u128 = 60_000_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    units: u128,
    at: Timestamp,
}

/// Token buckets by key, shared between clones.
#[derive(Clone, Debug)]
pub struct RateLimiter<K> {
    per_minute: u32,
    buckets: Arc<Mutex<HashMap<K, Bucket>>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing `per_minute` events a minute per key (at least 1).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: Arc::default(),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    fn capacity(&self) -> u128 {
        u128::from(self.per_minute) * TOKEN
    }

    fn refilled(&self, bucket: Bucket, now: Timestamp) -> u128 {
        let elapsed = now.as_micros().saturating_sub(bucket.at.as_micros()).max(0);
        let gained = u128::from(elapsed.unsigned_abs()).saturating_mul(u128::from(self.per_minute));
        bucket.units.saturating_add(gained).min(self.capacity())
    }

    /// Takes one token for `key`; when none is left, returns how long until one is.
    pub fn check(&self, key: &K, now: Timestamp) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_AT && !buckets.contains_key(key) {
            let capacity = self.capacity();
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < capacity);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            units: self.capacity(),
            at: now,
        });
        let units = self.refilled(*bucket, now);
        if units >= TOKEN {
            *bucket = Bucket {
                units: units - TOKEN,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { units, at: now };
            let micros = (TOKEN - units).div_ceil(u128::from(self.per_minute));
            Err(Duration::from_micros(
                u64::try_from(micros).unwrap_or(u64::MAX),
            ))
        }
    }

    /// Keys tracked now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: f64) -> Timestamp {
        Timestamp::from_micros((seconds * 1_000_000.0) as i64)
    }

    #[test]
    fn a_burst_of_the_limit_then_one_per_interval() {
        let limiter = RateLimiter::new(60);
        for _ in 0..60 {
            assert!(limiter.check(&"alice", at(0.0)).is_ok());
        }
        let wait = limiter.check(&"alice", at(0.0)).unwrap_err();
        assert_eq!(
            wait,
            Duration::from_secs(1),
            "60 a minute refills one a second"
        );
        assert!(limiter.check(&"alice", at(0.5)).is_err());
        assert!(limiter.check(&"alice", at(1.0)).is_ok());
        assert!(limiter.check(&"alice", at(1.0)).is_err());
    }

    #[test]
    fn keys_are_independent_and_clones_share_buckets() {
        let limiter = RateLimiter::new(1);
        let clone = limiter.clone();
        assert!(limiter.check(&"alice", at(0.0)).is_ok());
        assert!(clone.check(&"alice", at(0.0)).is_err());
        assert!(clone.check(&"bob", at(0.0)).is_ok());
        let wait = limiter.check(&"alice", at(30.0)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(30));
        assert!(limiter.check(&"alice", at(60.0)).is_ok());
    }

    #[test]
    fn a_clock_moving_backwards_refills_nothing() {
        let limiter = RateLimiter::new(1);
        assert!(limiter.check(&1, at(100.0)).is_ok());
        assert!(limiter.check(&1, at(50.0)).is_err());
    }

    #[test]
    fn idle_buckets_are_dropped_past_the_prune_size() {
        let limiter = RateLimiter::new(10);
        for key in 0..PRUNE_AT {
            limiter.check(&key, at(0.0)).unwrap();
        }
        assert_eq!(limiter.len(), PRUNE_AT);
        // A minute later every bucket is full again: the next new key prunes them.
        limiter.check(&usize::MAX, at(60.0)).unwrap();
        assert_eq!(limiter.len(), 1);
    }
}
