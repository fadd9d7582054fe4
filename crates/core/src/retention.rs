//! Retention: how long the compliance copy of a message is kept, as pure arithmetic.
//!
//! A retention policy has an optional minimum (keep the copy at least N days after send,
//! even when users stopped seeing it earlier) and an optional maximum (destroy it N days
//! after send). Policies exist for the organisation, for security groups (applying to
//! messages their members send) and for rooms; where several apply to one message:
//!
//! - the **longest minimum** wins (a records schedule is never cut short by another);
//! - the **shortest maximum** wins (destroy as early as any applicable policy demands),
//! - but a maximum **never cuts below the minimum**: the effective maximum is at least the
//!   effective minimum.
//!
//! A message's `retain_until` (DESIGN.md: "one row, two deadlines") is then
//! `min(send + max, max(send + min, user_end))`, where `user_end` is when the last user
//! stops seeing it (its expiration, its burn-on-read deadlines, or a delete), or never.
//! With no policy at all, `retain_until` equals `user_end`: an expired or deleted message
//! is destroyed at once, and an ordinary one is kept.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The longest retention period accepted: 100 years, beyond any records schedule.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

const DAY: Duration = Duration::from_secs(86_400);

/// A retention policy's two bounds, in whole days after send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Keep the compliance copy at least this many days after send.
    pub min_days: Option<u32>,
    /// Destroy the message (for users too) this many days after send.
    pub max_days: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RetentionError(pub String);

impl RetentionRule {
    /// A rule as a compliance officer writes it; a maximum below the minimum of the *same*
    /// policy is refused as a mistake (across policies the minimum simply wins).
    pub fn new(min_days: Option<u32>, max_days: Option<u32>) -> Result<Self, RetentionError> {
        for (name, value) in [("min_days", min_days), ("max_days", max_days)] {
            if let Some(days) = value
                && !(1..=MAX_RETENTION_DAYS).contains(&days)
            {
                return Err(RetentionError(format!(
                    "{name} must be between 1 and {MAX_RETENTION_DAYS}, not {days}"
                )));
            }
        }
        if let (Some(min), Some(max)) = (min_days, max_days)
            && max < min
        {
            return Err(RetentionError(format!(
                "max_days ({max}) must not be shorter than min_days ({min})"
            )));
        }
        if min_days.is_none() && max_days.is_none() {
            return Err(RetentionError(
                "a retention policy needs min_days, max_days or both".into(),
            ));
        }
        Ok(Self { min_days, max_days })
    }

    /// Combines every policy that applies to one message (the rule in the module docs).
    pub fn combine<'a>(rules: impl IntoIterator<Item = &'a RetentionRule>) -> RetentionRule {
        let mut min_days: Option<u32> = None;
        let mut max_days: Option<u32> = None;
        for rule in rules {
            min_days = min_days.max(rule.min_days);
            max_days = match (max_days, rule.max_days) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if let (Some(min), Some(max)) = (min_days, max_days) {
            max_days = Some(max.max(min));
        }
        RetentionRule { min_days, max_days }
    }

    /// When the compliance copy of a message sent at `sent_at` may be destroyed, given
    /// when users stop seeing it (`None`: not yet known to end). `None`: keep.
    pub fn retain_until(
        self,
        sent_at: Timestamp,
        user_end: Option<Timestamp>,
    ) -> Option<Timestamp> {
        let after = |days: u32| sent_at.plus(DAY * days);
        let kept_by_min = self.min_days.map_or(sent_at, after);
        let wanted = user_end.map(|end| end.max(kept_by_min));
        match (self.max_days.map(after), wanted) {
            (Some(max), Some(wanted)) => Some(max.min(wanted)),
            (max, wanted) => max.or(wanted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(min: Option<u32>, max: Option<u32>) -> RetentionRule {
        RetentionRule {
            min_days: min,
            max_days: max,
        }
    }

    fn day(n: i64) -> Timestamp {
        Timestamp::from_micros(n * 86_400_000_000)
    }

    #[test]
    fn rules_are_checked_when_written() {
        assert!(RetentionRule::new(Some(30), Some(365)).is_ok());
        assert!(RetentionRule::new(Some(30), None).is_ok());
        assert!(RetentionRule::new(None, Some(1)).is_ok());
        assert!(RetentionRule::new(Some(30), Some(30)).is_ok());
        let err = RetentionRule::new(Some(30), Some(7)).unwrap_err();
        assert!(err.0.contains("max_days (7)"), "{err}");
        assert!(RetentionRule::new(None, None).is_err());
        assert!(RetentionRule::new(Some(0), None).is_err());
        assert!(RetentionRule::new(None, Some(MAX_RETENTION_DAYS + 1)).is_err());
    }

    #[test]
    fn longest_minimum_and_shortest_maximum_win_but_max_never_cuts_below_min() {
        let none: [RetentionRule; 0] = [];
        assert_eq!(RetentionRule::combine(&none), rule(None, None));
        assert_eq!(
            RetentionRule::combine(&[rule(Some(30), None), rule(Some(90), None)]),
            rule(Some(90), None)
        );
        assert_eq!(
            RetentionRule::combine(&[rule(None, Some(365)), rule(None, Some(30))]),
            rule(None, Some(30))
        );
        // The org destroys after 30 days; a group must keep 7 years: the minimum wins.
        assert_eq!(
            RetentionRule::combine(&[rule(None, Some(30)), rule(Some(2555), None)]),
            rule(Some(2555), Some(2555))
        );
        assert_eq!(
            RetentionRule::combine(&[rule(Some(10), Some(100)), rule(Some(20), Some(50))]),
            rule(Some(20), Some(50))
        );
    }

    #[test]
    fn retain_until_over_every_combination_of_bounds_and_user_end() {
        let sent = day(100);
        // (rule, user_end, expected retain_until)
        let cases = [
            // No policy: the copy lives exactly as long as users see it.
            (rule(None, None), None, None),
            (rule(None, None), Some(day(101)), Some(day(101))),
            // A minimum keeps an early-expiring message; a later user end is kept too.
            (rule(Some(30), None), Some(day(101)), Some(day(130))),
            (rule(Some(30), None), Some(day(200)), Some(day(200))),
            (rule(Some(30), None), None, None),
            // A maximum destroys on time, even a message users still see.
            (rule(None, Some(10)), None, Some(day(110))),
            (rule(None, Some(10)), Some(day(101)), Some(day(101))),
            (rule(None, Some(10)), Some(day(200)), Some(day(110))),
            // Both bounds.
            (rule(Some(5), Some(10)), Some(day(101)), Some(day(105))),
            (rule(Some(5), Some(10)), Some(day(107)), Some(day(107))),
            (rule(Some(5), Some(10)), Some(day(300)), Some(day(110))),
            (rule(Some(5), Some(10)), None, Some(day(110))),
        ];
        for (rule, user_end, expected) in cases {
            assert_eq!(
                rule.retain_until(sent, user_end),
                expected,
                "{rule:?} with user end {user_end:?}"
            );
        }
    }

    #[test]
    fn a_deleted_message_without_policy_is_due_at_its_delete() {
        let sent = day(1);
        let deleted = day(2);
        assert_eq!(
            RetentionRule::default().retain_until(sent, Some(deleted)),
            Some(deleted)
        );
    }
}
