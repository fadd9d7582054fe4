//! The messaging policy model and how an effective policy is resolved (DESIGN.md:
//! "org default <- security group <- room; a lower level may only tighten, never loosen").
//!
//! An org-wide [`Policy`] sets every value. A security group and a room each carry
//! [`PolicyOverrides`]: any field they set can only make the result stricter — a shorter
//! maximum, a feature turned off, a barrier added. [`resolve`] is the one function that
//! combines them; [`Policy::timer_for`] applies the result to a message's timers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// Shortest timer a policy may set (1 minute) and longest (365 days).
pub const MIN_TIMER: Duration = Duration::from_secs(60);
pub const MAX_TIMER: Duration = Duration::from_secs(365 * 86_400);
/// The largest `file_max_bytes`: what a signed 64-bit size (and the OpenAPI `int64` it is
/// documented as) can hold.
pub const MAX_FILE_BYTES: u64 = i64::MAX as u64;

/// A timer setting in whole seconds, within [`MIN_TIMER`]..=[`MAX_TIMER`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "u64", into = "u64")]
#[schema(minimum = 60, maximum = 31_536_000)]
pub struct TimerSeconds(u64);

impl TimerSeconds {
    pub fn new(seconds: u64) -> Result<Self, PolicyError> {
        if seconds < MIN_TIMER.as_secs() || seconds > MAX_TIMER.as_secs() {
            return Err(PolicyError::Invalid(format!(
                "a timer must be between {} and {} seconds (1 minute to 365 days), not {seconds}",
                MIN_TIMER.as_secs(),
                MAX_TIMER.as_secs()
            )));
        }
        Ok(Self(seconds))
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }

    pub fn seconds(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for TimerSeconds {
    type Error = PolicyError;
    fn try_from(seconds: u64) -> Result<Self, PolicyError> {
        Self::new(seconds)
    }
}

impl From<TimerSeconds> for u64 {
    fn from(timer: TimerSeconds) -> u64 {
        timer.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A policy value is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// A request exceeds what the effective policy allows; the message names the limit.
    #[error("{0}")]
    Violation(String),
}

/// The org-wide policy: every value set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Longest expiration timer (Wickr `maxTtl`); `None`: messages may be kept forever.
    pub expiration_max: Option<TimerSeconds>,
    /// Timer given to a message sent without one; `None`: off (but see `expiration_max`:
    /// when a maximum is set, a message without a timer gets the maximum).
    pub expiration_default: Option<TimerSeconds>,
    /// Whether burn-on-read timers may be used.
    pub burn_on_read_allowed: bool,
    /// Longest burn-on-read timer (Wickr `maxBor`).
    pub burn_on_read_max: Option<TimerSeconds>,
    /// Burn-on-read timer given to messages sent without one; `None`: off.
    pub burn_on_read_default: Option<TimerSeconds>,
    /// Whether files may be shared (Wickr `filesEnabled`).
    pub files_enabled: bool,
    /// Whether shared files may be downloaded (Wickr `enableFileDownload`).
    pub file_download_enabled: bool,
    /// Largest file, in bytes.
    pub file_max_bytes: u64,
    /// Allowed media types (`image/png`, or `image/*`); `None`: any type. Duplicates are
    /// merged.
    #[schema(value_type = Option<Vec<String>>)]
    pub file_types_allowed: Option<BTreeSet<String>>,
    /// Whether members may create rooms.
    pub may_create_rooms: bool,
    /// Most members a room may hold.
    #[schema(format = Int64, minimum = 2, maximum = 4_294_967_295_u64)]
    pub max_room_size: u32,
    /// Whether messages may be forwarded (Wickr `messageForwardingEnabled`).
    pub forwarding_allowed: bool,
    /// Whether read receipts are always sent (Wickr `forceReadReceipts`).
    pub read_receipts_forced: bool,
    /// Whether presence is shown (Wickr `presenceEnabled`).
    pub presence_enabled: bool,
    /// Whether link previews are shown (Wickr `isLinkPreviewEnabled`).
    pub link_previews_allowed: bool,
    /// Longest session, in minutes.
    #[schema(format = Int64, minimum = 1, maximum = 4_294_967_295_u64)]
    pub session_lifetime_minutes: u32,
    /// Session idle timeout, in minutes (Wickr `ssoMaxIdleMinutes`).
    #[schema(format = Int64, minimum = 1, maximum = 4_294_967_295_u64)]
    pub session_idle_minutes: u32,
    /// Failed logins before an account is locked out (Wickr `lockoutThreshold`).
    #[schema(format = Int64, minimum = 1, maximum = 4_294_967_295_u64)]
    pub lockout_threshold: u32,
    /// Security groups whose members may not communicate with this one's (information
    /// barriers), by group id.
    pub barriers: BTreeSet<String>,
}

impl Default for Policy {
    /// Permissive but bounded: no expiry by default, everything allowed, 500-member rooms,
    /// 100 MiB files, 12-hour sessions with a 60-minute idle timeout.
    fn default() -> Self {
        Self {
            expiration_max: None,
            expiration_default: None,
            burn_on_read_allowed: true,
            burn_on_read_max: None,
            burn_on_read_default: None,
            files_enabled: true,
            file_download_enabled: true,
            file_max_bytes: 100 * 1024 * 1024,
            file_types_allowed: None,
            may_create_rooms: true,
            max_room_size: 500,
            forwarding_allowed: true,
            read_receipts_forced: false,
            presence_enabled: true,
            link_previews_allowed: true,
            session_lifetime_minutes: 12 * 60,
            session_idle_minutes: 60,
            lockout_threshold: 5,
            barriers: BTreeSet::new(),
        }
    }
}

/// What a security group or a room sets; every field unset by default. Each set field can
/// only tighten the level above it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyOverrides {
    pub expiration_max: Option<TimerSeconds>,
    pub expiration_default: Option<TimerSeconds>,
    pub burn_on_read_allowed: Option<bool>,
    pub burn_on_read_max: Option<TimerSeconds>,
    pub burn_on_read_default: Option<TimerSeconds>,
    pub files_enabled: Option<bool>,
    pub file_download_enabled: Option<bool>,
    pub file_max_bytes: Option<u64>,
    /// Duplicates are merged.
    #[schema(value_type = Option<Vec<String>>)]
    pub file_types_allowed: Option<BTreeSet<String>>,
    pub may_create_rooms: Option<bool>,
    #[schema(format = Int64, minimum = 2, maximum = 4_294_967_295_u64)]
    pub max_room_size: Option<u32>,
    pub forwarding_allowed: Option<bool>,
    pub read_receipts_forced: Option<bool>,
    pub presence_enabled: Option<bool>,
    pub link_previews_allowed: Option<bool>,
    #[schema(format = Int64, minimum = 1, maximum = 4_294_967_295_u64)]
    pub session_lifetime_minutes: Option<u32>,
    #[schema(format = Int64, minimum = 1, maximum = 4_294_967_295_u64)]
    pub session_idle_minutes: Option<u32>,
    #[schema(format = Int64, minimum = 1, maximum = 4_294_967_295_u64)]
    pub lockout_threshold: Option<u32>,
    pub barriers: BTreeSet<String>,
}

/// The shorter of two maximums, where `None` means "no maximum".
impl PolicyOverrides {
    /// The ranges a security group's or room's overrides must respect: the same minimums
    /// the org policy has (`Policy::validate`), so no level can store a value, such as a
    /// room size or lockout threshold of 0, that the org policy itself would refuse.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self
            .file_max_bytes
            .is_some_and(|bytes| bytes > MAX_FILE_BYTES)
        {
            return Err(PolicyError::Invalid(
                "file_max_bytes must be at most 9223372036854775807".into(),
            ));
        }
        if self.max_room_size.is_some_and(|size| size < 2) {
            return Err(PolicyError::Invalid(
                "max_room_size must be at least 2".into(),
            ));
        }
        for (name, value) in [
            ("session_lifetime_minutes", self.session_lifetime_minutes),
            ("session_idle_minutes", self.session_idle_minutes),
            ("lockout_threshold", self.lockout_threshold),
        ] {
            if value == Some(0) {
                return Err(PolicyError::Invalid(format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

fn shorter(a: Option<TimerSeconds>, b: Option<TimerSeconds>) -> Option<TimerSeconds> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// A default timer after tightening: a lower level may turn a timer on or shorten it,
/// never lengthen or turn it off; and no default exceeds the maximum.
fn tighter_default(
    upper: Option<TimerSeconds>,
    lower: Option<TimerSeconds>,
    max: Option<TimerSeconds>,
) -> Option<TimerSeconds> {
    shorter(shorter(upper, lower), max)
}

fn narrower_types(
    upper: &Option<BTreeSet<String>>,
    lower: &Option<BTreeSet<String>>,
) -> Option<BTreeSet<String>> {
    match (upper, lower) {
        (None, None) => None,
        (Some(only), None) | (None, Some(only)) => Some(only.clone()),
        (Some(upper), Some(lower)) => Some(
            lower
                .iter()
                .filter(|t| upper.iter().any(|u| media_type_matches(u, t)))
                .cloned()
                .collect(),
        ),
    }
}

impl Policy {
    /// This policy tightened by `overrides`.
    pub fn tightened_by(&self, overrides: &PolicyOverrides) -> Policy {
        let pick_min = |upper: u32, lower: Option<u32>| lower.map_or(upper, |l| upper.min(l));
        let expiration_max = shorter(self.expiration_max, overrides.expiration_max);
        let burn_on_read_allowed =
            self.burn_on_read_allowed && overrides.burn_on_read_allowed.unwrap_or(true);
        let burn_on_read_max = shorter(self.burn_on_read_max, overrides.burn_on_read_max);
        Policy {
            expiration_max,
            expiration_default: tighter_default(
                self.expiration_default,
                overrides.expiration_default,
                expiration_max,
            ),
            burn_on_read_allowed,
            burn_on_read_max,
            burn_on_read_default: if burn_on_read_allowed {
                tighter_default(
                    self.burn_on_read_default,
                    overrides.burn_on_read_default,
                    burn_on_read_max,
                )
            } else {
                None
            },
            files_enabled: self.files_enabled && overrides.files_enabled.unwrap_or(true),
            file_download_enabled: self.file_download_enabled
                && overrides.file_download_enabled.unwrap_or(true),
            file_max_bytes: overrides
                .file_max_bytes
                .map_or(self.file_max_bytes, |l| self.file_max_bytes.min(l)),
            file_types_allowed: narrower_types(
                &self.file_types_allowed,
                &overrides.file_types_allowed,
            ),
            may_create_rooms: self.may_create_rooms && overrides.may_create_rooms.unwrap_or(true),
            max_room_size: pick_min(self.max_room_size, overrides.max_room_size),
            forwarding_allowed: self.forwarding_allowed
                && overrides.forwarding_allowed.unwrap_or(true),
            read_receipts_forced: self.read_receipts_forced
                || overrides.read_receipts_forced.unwrap_or(false),
            presence_enabled: self.presence_enabled && overrides.presence_enabled.unwrap_or(true),
            link_previews_allowed: self.link_previews_allowed
                && overrides.link_previews_allowed.unwrap_or(true),
            session_lifetime_minutes: pick_min(
                self.session_lifetime_minutes,
                overrides.session_lifetime_minutes,
            ),
            session_idle_minutes: pick_min(
                self.session_idle_minutes,
                overrides.session_idle_minutes,
            ),
            lockout_threshold: pick_min(self.lockout_threshold, overrides.lockout_threshold),
            barriers: self.barriers.union(&overrides.barriers).cloned().collect(),
        }
    }

    /// Checks that the org-wide policy is coherent.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let invalid = |message: &str| Err(PolicyError::Invalid(message.to_owned()));
        if let (Some(default), Some(max)) = (self.expiration_default, self.expiration_max)
            && default > max
        {
            return invalid("expiration_default exceeds expiration_max");
        }
        if let (Some(default), Some(max)) = (self.burn_on_read_default, self.burn_on_read_max)
            && default > max
        {
            return invalid("burn_on_read_default exceeds burn_on_read_max");
        }
        if self.burn_on_read_default.is_some() && !self.burn_on_read_allowed {
            return invalid("burn_on_read_default is set but burn-on-read is not allowed");
        }
        if self.max_room_size < 2 {
            return invalid("max_room_size must be at least 2");
        }
        if self.file_max_bytes > MAX_FILE_BYTES {
            return invalid("file_max_bytes must be at most 9223372036854775807");
        }
        if self.session_lifetime_minutes == 0
            || self.session_idle_minutes == 0
            || self.lockout_threshold == 0
        {
            return invalid(
                "session_lifetime_minutes, session_idle_minutes and lockout_threshold must be at least 1",
            );
        }
        Ok(())
    }

    /// The expiration timer a message gets, given the one its sender asked for:
    /// the request if within the maximum, else a violation naming the limit; without a
    /// request, the default, or the maximum when there is one.
    pub fn expiration_for(
        &self,
        requested: Option<Duration>,
    ) -> Result<Option<Duration>, PolicyError> {
        match (requested, self.expiration_max) {
            (Some(asked), Some(max)) if asked > max.duration() => {
                Err(PolicyError::Violation(format!(
                    "the expiration timer may be at most {} seconds (the policy's expiration_max)",
                    max.seconds()
                )))
            }
            (Some(asked), _) => Ok(Some(asked)),
            (None, max) => Ok(self.expiration_default.or(max).map(TimerSeconds::duration)),
        }
    }

    /// The burn-on-read timer a message gets (see [`Policy::expiration_for`]).
    pub fn burn_on_read_for(
        &self,
        requested: Option<Duration>,
    ) -> Result<Option<Duration>, PolicyError> {
        match requested {
            Some(_) if !self.burn_on_read_allowed => Err(PolicyError::Violation(
                "burn-on-read timers are not allowed (the policy's burn_on_read_allowed)".into(),
            )),
            Some(asked)
                if self
                    .burn_on_read_max
                    .is_some_and(|max| asked > max.duration()) =>
            {
                Err(PolicyError::Violation(format!(
                    "the burn-on-read timer may be at most {} seconds (the policy's burn_on_read_max)",
                    self.burn_on_read_max.map_or(0, TimerSeconds::seconds)
                )))
            }
            Some(asked) => Ok(Some(asked)),
            None => Ok(self.burn_on_read_default.map(TimerSeconds::duration)),
        }
    }

    /// Whether a file of this type and size may be shared; a violation names the limit.
    pub fn check_file(&self, content_type: &str, size_bytes: u64) -> Result<(), PolicyError> {
        if !self.files_enabled {
            return Err(PolicyError::Violation(
                "file sharing is off (the policy's files_enabled)".into(),
            ));
        }
        if size_bytes > self.file_max_bytes {
            return Err(PolicyError::Violation(format!(
                "files may be at most {} bytes (the policy's file_max_bytes)",
                self.file_max_bytes
            )));
        }
        if let Some(allowed) = &self.file_types_allowed
            && !allowed
                .iter()
                .any(|pattern| media_type_matches(pattern, content_type))
        {
            return Err(PolicyError::Violation(format!(
                "files of type {content_type} are not allowed (the policy's file_types_allowed)"
            )));
        }
        Ok(())
    }
}

/// `image/*` matches `image/png`; otherwise types match exactly (case-insensitively).
pub fn media_type_matches(pattern: &str, content_type: &str) -> bool {
    let (pattern, content_type) = (
        pattern.to_ascii_lowercase(),
        content_type.to_ascii_lowercase(),
    );
    match pattern.strip_suffix("/*") {
        Some(kind) => content_type.split_once('/').is_some_and(|(k, _)| k == kind),
        None => pattern == content_type,
    }
}

/// The effective policy for a user in a room: the org default, tightened by the user's
/// security group, tightened by the room's overrides.
pub fn resolve(org: &Policy, group: &PolicyOverrides, room: &PolicyOverrides) -> Policy {
    org.tightened_by(group).tightened_by(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_keep_the_org_policys_minimums() {
        assert!(PolicyOverrides::default().validate().is_ok());
        let ok = PolicyOverrides {
            max_room_size: Some(2),
            session_lifetime_minutes: Some(1),
            session_idle_minutes: Some(1),
            lockout_threshold: Some(1),
            ..PolicyOverrides::default()
        };
        assert!(ok.validate().is_ok());
        for (bad, field) in [
            (
                PolicyOverrides {
                    max_room_size: Some(1),
                    ..ok.clone()
                },
                "max_room_size",
            ),
            (
                PolicyOverrides {
                    max_room_size: Some(0),
                    ..ok.clone()
                },
                "max_room_size",
            ),
            (
                PolicyOverrides {
                    session_lifetime_minutes: Some(0),
                    ..ok.clone()
                },
                "session_lifetime_minutes",
            ),
            (
                PolicyOverrides {
                    session_idle_minutes: Some(0),
                    ..ok.clone()
                },
                "session_idle_minutes",
            ),
            (
                PolicyOverrides {
                    lockout_threshold: Some(0),
                    ..ok.clone()
                },
                "lockout_threshold",
            ),
            (
                PolicyOverrides {
                    file_max_bytes: Some(u64::MAX),
                    ..ok.clone()
                },
                "file_max_bytes",
            ),
        ] {
            let err = bad.validate().unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    fn t(seconds: u64) -> Option<TimerSeconds> {
        Some(TimerSeconds::new(seconds).unwrap())
    }

    const DAY: u64 = 86_400;

    #[test]
    fn timers_are_bounded() {
        assert!(TimerSeconds::new(59).is_err());
        assert!(TimerSeconds::new(60).is_ok());
        assert!(TimerSeconds::new(365 * DAY).is_ok());
        assert!(TimerSeconds::new(365 * DAY + 1).is_err());
        assert!(
            serde_json::from_str::<TimerSeconds>("30").is_err(),
            "deserialization validates too"
        );
    }

    #[test]
    fn nothing_set_below_changes_nothing() {
        let org = Policy::default();
        assert_eq!(
            resolve(
                &org,
                &PolicyOverrides::default(),
                &PolicyOverrides::default()
            ),
            org
        );
    }

    /// The resolution table for the expiration maximum: (org, group, room) -> effective.
    #[test]
    fn maximum_timers_take_the_shortest_level() {
        let cases = [
            (None, None, None, None),
            (t(DAY), None, None, t(DAY)),
            (None, t(DAY), None, t(DAY)),
            (None, None, t(DAY), t(DAY)),
            (t(7 * DAY), t(DAY), None, t(DAY)),
            (t(DAY), t(7 * DAY), None, t(DAY)),
            (t(7 * DAY), t(3 * DAY), t(DAY), t(DAY)),
            (t(DAY), t(3 * DAY), t(7 * DAY), t(DAY)),
            (None, t(3 * DAY), t(600), t(600)),
        ];
        for (org, group, room, expected) in cases {
            let policy = resolve(
                &Policy {
                    expiration_max: org,
                    ..Policy::default()
                },
                &PolicyOverrides {
                    expiration_max: group,
                    ..Default::default()
                },
                &PolicyOverrides {
                    expiration_max: room,
                    ..Default::default()
                },
            );
            assert_eq!(
                policy.expiration_max, expected,
                "org {org:?} group {group:?} room {room:?}"
            );
            let burn = resolve(
                &Policy {
                    burn_on_read_max: org,
                    ..Policy::default()
                },
                &PolicyOverrides {
                    burn_on_read_max: group,
                    ..Default::default()
                },
                &PolicyOverrides {
                    burn_on_read_max: room,
                    ..Default::default()
                },
            );
            assert_eq!(burn.burn_on_read_max, expected);
        }
    }

    #[test]
    fn defaults_may_start_or_shorten_a_timer_but_never_lengthen_or_stop_it() {
        let org = Policy {
            expiration_default: t(DAY),
            expiration_max: t(7 * DAY),
            ..Policy::default()
        };
        let longer = PolicyOverrides {
            expiration_default: t(3 * DAY),
            ..Default::default()
        };
        assert_eq!(org.tightened_by(&longer).expiration_default, t(DAY));
        let shorter_default = PolicyOverrides {
            expiration_default: t(600),
            ..Default::default()
        };
        assert_eq!(
            org.tightened_by(&shorter_default).expiration_default,
            t(600)
        );
        // Off at the org, on in the group: the group's timer applies.
        let off = Policy::default();
        assert_eq!(
            off.tightened_by(&shorter_default).expiration_default,
            t(600)
        );
        // A lowered maximum pulls the default down with it.
        let lower_max = PolicyOverrides {
            expiration_max: t(3_600),
            ..Default::default()
        };
        assert_eq!(org.tightened_by(&lower_max).expiration_default, t(3_600));
    }

    #[test]
    fn switches_only_turn_off_and_forced_only_turns_on() {
        let org = Policy::default();
        let all_on = PolicyOverrides {
            files_enabled: Some(true),
            file_download_enabled: Some(true),
            may_create_rooms: Some(true),
            forwarding_allowed: Some(true),
            presence_enabled: Some(true),
            link_previews_allowed: Some(true),
            burn_on_read_allowed: Some(true),
            read_receipts_forced: Some(false),
            ..Default::default()
        };
        let all_off = PolicyOverrides {
            files_enabled: Some(false),
            file_download_enabled: Some(false),
            may_create_rooms: Some(false),
            forwarding_allowed: Some(false),
            presence_enabled: Some(false),
            link_previews_allowed: Some(false),
            burn_on_read_allowed: Some(false),
            read_receipts_forced: Some(true),
            ..Default::default()
        };
        let off = org.tightened_by(&all_off);
        assert!(!off.files_enabled && !off.file_download_enabled && !off.may_create_rooms);
        assert!(!off.forwarding_allowed && !off.presence_enabled && !off.link_previews_allowed);
        assert!(!off.burn_on_read_allowed && off.read_receipts_forced);
        // Turning things back on below cannot loosen what is off above.
        assert_eq!(off.tightened_by(&all_on), off);
        assert_eq!(org.tightened_by(&all_on), org);
    }

    #[test]
    fn every_switch_combination_resolves_to_the_strictest() {
        // Exhaustive over the three levels for each switch: on only if no level turns it off.
        for org_on in [false, true] {
            for group in [None, Some(false), Some(true)] {
                for room in [None, Some(false), Some(true)] {
                    let org = Policy {
                        files_enabled: org_on,
                        may_create_rooms: org_on,
                        ..Policy::default()
                    };
                    let g = PolicyOverrides {
                        files_enabled: group,
                        may_create_rooms: group,
                        ..Default::default()
                    };
                    let r = PolicyOverrides {
                        files_enabled: room,
                        may_create_rooms: room,
                        ..Default::default()
                    };
                    let expected = org_on && group != Some(false) && room != Some(false);
                    let policy = resolve(&org, &g, &r);
                    assert_eq!(
                        policy.files_enabled, expected,
                        "{org_on} {group:?} {room:?}"
                    );
                    assert_eq!(policy.may_create_rooms, expected);
                }
            }
        }
    }

    #[test]
    fn numbers_take_the_smallest_and_barriers_accumulate() {
        let org = Policy::default();
        let group = PolicyOverrides {
            max_room_size: Some(50),
            file_max_bytes: Some(1024),
            session_idle_minutes: Some(15),
            lockout_threshold: Some(3),
            barriers: BTreeSet::from(["legal".to_owned()]),
            ..Default::default()
        };
        let room = PolicyOverrides {
            max_room_size: Some(1_000),
            session_lifetime_minutes: Some(60),
            barriers: BTreeSet::from(["trading".to_owned()]),
            ..Default::default()
        };
        let policy = resolve(&org, &group, &room);
        assert_eq!(
            policy.max_room_size, 50,
            "a room cannot grow past its group's size"
        );
        assert_eq!(policy.file_max_bytes, 1024);
        assert_eq!(policy.session_idle_minutes, 15);
        assert_eq!(policy.session_lifetime_minutes, 60);
        assert_eq!(policy.lockout_threshold, 3);
        assert_eq!(
            policy.barriers,
            BTreeSet::from(["legal".to_owned(), "trading".to_owned()])
        );
    }

    #[test]
    fn file_types_narrow_to_the_intersection() {
        let org = Policy {
            file_types_allowed: Some(BTreeSet::from([
                "image/*".to_owned(),
                "application/pdf".to_owned(),
            ])),
            ..Policy::default()
        };
        let group = PolicyOverrides {
            file_types_allowed: Some(BTreeSet::from([
                "image/png".to_owned(),
                "text/plain".to_owned(),
            ])),
            ..Default::default()
        };
        let policy = org.tightened_by(&group);
        assert_eq!(
            policy.file_types_allowed,
            Some(BTreeSet::from(["image/png".to_owned()]))
        );
        assert!(policy.check_file("image/png", 10).is_ok());
        assert!(policy.check_file("text/plain", 10).is_err());
        assert!(policy.check_file("application/pdf", 10).is_err());
    }

    #[test]
    fn timers_for_a_message() {
        let policy = Policy {
            expiration_max: t(DAY),
            expiration_default: t(3_600),
            ..Policy::default()
        };
        assert_eq!(
            policy.expiration_for(None).unwrap(),
            Some(Duration::from_secs(3_600))
        );
        assert_eq!(
            policy
                .expiration_for(Some(Duration::from_secs(600)))
                .unwrap(),
            Some(Duration::from_secs(600))
        );
        match policy.expiration_for(Some(Duration::from_secs(2 * DAY))) {
            Err(PolicyError::Violation(message)) => {
                assert!(message.contains("86400") && message.contains("expiration_max"))
            }
            other => panic!("{other:?}"),
        }
        let max_only = Policy {
            expiration_max: t(DAY),
            ..Policy::default()
        };
        assert_eq!(
            max_only.expiration_for(None).unwrap(),
            Some(Duration::from_secs(DAY)),
            "the maximum applies when no default is set"
        );
        assert_eq!(Policy::default().expiration_for(None).unwrap(), None, "off");

        let no_burn = Policy {
            burn_on_read_allowed: false,
            ..Policy::default()
        };
        assert!(
            no_burn
                .burn_on_read_for(Some(Duration::from_secs(60)))
                .is_err()
        );
        assert_eq!(no_burn.burn_on_read_for(None).unwrap(), None);
        let burn = Policy {
            burn_on_read_max: t(600),
            burn_on_read_default: t(300),
            ..Policy::default()
        };
        assert_eq!(
            burn.burn_on_read_for(None).unwrap(),
            Some(Duration::from_secs(300))
        );
        assert!(
            burn.burn_on_read_for(Some(Duration::from_secs(601)))
                .is_err()
        );
    }

    #[test]
    fn file_checks_name_their_limit() {
        let policy = Policy {
            file_max_bytes: 100,
            ..Policy::default()
        };
        assert!(policy.check_file("image/png", 100).is_ok());
        assert!(
            matches!(policy.check_file("image/png", 101), Err(PolicyError::Violation(m)) if m.contains("file_max_bytes"))
        );
        let off = Policy {
            files_enabled: false,
            ..Policy::default()
        };
        assert!(
            matches!(off.check_file("image/png", 1), Err(PolicyError::Violation(m)) if m.contains("files_enabled"))
        );
    }

    #[test]
    fn validation_catches_incoherent_org_policies() {
        assert!(Policy::default().validate().is_ok());
        assert!(
            Policy {
                expiration_default: t(DAY),
                expiration_max: t(600),
                ..Policy::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Policy {
                burn_on_read_allowed: false,
                burn_on_read_default: t(600),
                ..Policy::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Policy {
                max_room_size: 1,
                ..Policy::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn media_types() {
        assert!(media_type_matches("image/*", "image/png"));
        assert!(media_type_matches("Application/PDF", "application/pdf"));
        assert!(!media_type_matches("image/*", "application/pdf"));
        assert!(!media_type_matches("image/png", "image/jpeg"));
    }
}
