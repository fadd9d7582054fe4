//! Legal holds: which messages a hold covers, as a pure rule.
//!
//! A hold covers a message sent within its date range (when it has one) that is
//! - in one of the hold's rooms, or
//! - sent by one of its custodians, or
//! - received by one of its custodians: sent in a room while the custodian was a member.
//!
//! While any active hold covers a message, nothing destroys it (retention, the sweeper,
//! crypto-shredding of its data key).

use crate::clock::Timestamp;
use crate::ids::{RoomId, UserId};
use std::collections::BTreeSet;

/// What one active hold covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HoldCoverage {
    pub custodians: BTreeSet<UserId>,
    pub rooms: BTreeSet<RoomId>,
    /// Covers messages sent at or after this time, if set.
    pub starts_at: Option<Timestamp>,
    /// Covers messages sent at or before this time, if set.
    pub ends_at: Option<Timestamp>,
}

/// The facts about a message a hold decision needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldMessage {
    pub room_id: RoomId,
    pub sender_id: UserId,
    pub sent_at: Timestamp,
}

/// A user's membership of a room from `joined_at` until `left_at` (or now).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembershipPeriod {
    pub room_id: RoomId,
    pub user_id: UserId,
    pub joined_at: Timestamp,
    pub left_at: Option<Timestamp>,
}

impl MembershipPeriod {
    fn includes(&self, at: Timestamp) -> bool {
        self.joined_at <= at && self.left_at.is_none_or(|left| left >= at)
    }
}

impl HoldCoverage {
    /// Whether this hold covers `message`, given the custodians' membership periods.
    pub fn covers(&self, message: &HeldMessage, periods: &[MembershipPeriod]) -> bool {
        if self.starts_at.is_some_and(|start| message.sent_at < start)
            || self.ends_at.is_some_and(|end| message.sent_at > end)
        {
            return false;
        }
        self.rooms.contains(&message.room_id)
            || self.custodians.contains(&message.sender_id)
            || periods.iter().any(|period| {
                period.room_id == message.room_id
                    && self.custodians.contains(&period.user_id)
                    && period.includes(message.sent_at)
            })
    }
}

/// Whether any of `holds` covers `message`.
pub fn is_held(
    holds: &[HoldCoverage],
    message: &HeldMessage,
    periods: &[MembershipPeriod],
) -> bool {
    holds.iter().any(|hold| hold.covers(message, periods))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_micros(seconds * 1_000_000)
    }

    struct World {
        room: RoomId,
        other_room: RoomId,
        custodian: UserId,
        someone: UserId,
    }

    fn world() -> World {
        World {
            room: RoomId::new(),
            other_room: RoomId::new(),
            custodian: UserId::new(),
            someone: UserId::new(),
        }
    }

    #[test]
    fn a_room_hold_covers_the_rooms_messages_only() {
        let w = world();
        let hold = HoldCoverage {
            rooms: [w.room].into(),
            ..Default::default()
        };
        let message = |room_id| HeldMessage {
            room_id,
            sender_id: w.someone,
            sent_at: at(10),
        };
        assert!(hold.covers(&message(w.room), &[]));
        assert!(!hold.covers(&message(w.other_room), &[]));
    }

    #[test]
    fn a_custodian_hold_covers_what_they_sent_and_received_while_a_member() {
        let w = world();
        let hold = HoldCoverage {
            custodians: [w.custodian].into(),
            ..Default::default()
        };
        let sent = HeldMessage {
            room_id: w.other_room,
            sender_id: w.custodian,
            sent_at: at(10),
        };
        assert!(hold.covers(&sent, &[]), "sent by the custodian");
        let periods = [MembershipPeriod {
            room_id: w.room,
            user_id: w.custodian,
            joined_at: at(100),
            left_at: Some(at(200)),
        }];
        let received = |sent_at| HeldMessage {
            room_id: w.room,
            sender_id: w.someone,
            sent_at,
        };
        for (time, covered) in [
            (99, false),
            (100, true),
            (150, true),
            (200, true),
            (201, false),
        ] {
            assert_eq!(
                hold.covers(&received(at(time)), &periods),
                covered,
                "at {time}"
            );
        }
        let elsewhere = HeldMessage {
            room_id: w.other_room,
            sender_id: w.someone,
            sent_at: at(150),
        };
        assert!(
            !hold.covers(&elsewhere, &periods),
            "another room's membership does not count"
        );
        let other_members_period = [MembershipPeriod {
            user_id: w.someone,
            ..periods[0]
        }];
        assert!(!hold.covers(&received(at(150)), &other_members_period));
    }

    #[test]
    fn a_date_range_bounds_every_kind_of_coverage() {
        let w = world();
        let hold = HoldCoverage {
            custodians: [w.custodian].into(),
            rooms: [w.room].into(),
            starts_at: Some(at(100)),
            ends_at: Some(at(200)),
        };
        for (time, covered) in [(99, false), (100, true), (200, true), (201, false)] {
            let in_room = HeldMessage {
                room_id: w.room,
                sender_id: w.someone,
                sent_at: at(time),
            };
            let by_custodian = HeldMessage {
                room_id: w.other_room,
                sender_id: w.custodian,
                sent_at: at(time),
            };
            assert_eq!(hold.covers(&in_room, &[]), covered, "room at {time}");
            assert_eq!(
                hold.covers(&by_custodian, &[]),
                covered,
                "custodian at {time}"
            );
        }
    }

    #[test]
    fn no_holds_cover_nothing_and_any_one_hold_is_enough() {
        let w = world();
        let message = HeldMessage {
            room_id: w.room,
            sender_id: w.someone,
            sent_at: at(1),
        };
        assert!(!is_held(&[], &message, &[]));
        let unrelated = HoldCoverage {
            rooms: [w.other_room].into(),
            ..Default::default()
        };
        let related = HoldCoverage {
            rooms: [w.room].into(),
            ..Default::default()
        };
        assert!(!is_held(std::slice::from_ref(&unrelated), &message, &[]));
        assert!(is_held(&[unrelated, related], &message, &[]));
    }
}
