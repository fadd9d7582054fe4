//! Legal holds (compliance officers only; separation of duties keeps admins out): a
//! named hold with a reason covering custodians, rooms or both, optionally within a date
//! range. While an active hold covers a message nothing destroys it; releasing the hold
//! lets the sweeper catch up. Placing, changing and releasing are audited with before and
//! after; users see nothing of holds. What a hold covers is `conclave_core::legal_hold`.

use crate::{PolicyServiceError, audit_change};
use conclave_core::legal_hold::{HeldMessage, HoldCoverage, MembershipPeriod, is_held};
use conclave_core::{AuditContext, PolicyError, RoomId, Timestamp, UserId};
use conclave_store::legal_holds::{self as store, HoldFields, HoldRecord};
use conclave_store::messages::MessageRecord;
use conclave_store::{DbConnection, write_transaction};
use serde::{Deserialize, Serialize};

/// A hold as a compliance officer writes it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldInput {
    /// 1 to 200 characters, e.g. the matter's name or number.
    pub name: String,
    /// 1 to 2000 characters: why the records must be kept.
    pub reason: String,
    /// Users whose messages (sent, and received while a member) are held.
    #[serde(default)]
    pub custodians: Vec<UserId>,
    /// Rooms and direct conversations whose messages are held.
    #[serde(default)]
    pub rooms: Vec<RoomId>,
    /// Hold only messages sent at or after this time.
    pub starts_at: Option<Timestamp>,
    /// Hold only messages sent at or before this time.
    pub ends_at: Option<Timestamp>,
}

/// A hold as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HoldView {
    pub id: String,
    pub name: String,
    pub reason: String,
    pub custodians: Vec<String>,
    pub rooms: Vec<String>,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set once released; a released hold covers nothing.
    pub released_at: Option<Timestamp>,
    pub released_by: Option<String>,
}

impl From<HoldRecord> for HoldView {
    fn from(record: HoldRecord) -> Self {
        let hold = record.hold;
        Self {
            id: hold.id,
            name: hold.name,
            reason: hold.reason,
            custodians: record.custodians,
            rooms: record.rooms,
            starts_at: hold.starts_at.map(Timestamp::from_micros),
            ends_at: hold.ends_at.map(Timestamp::from_micros),
            created_by: hold.created_by,
            created_at: Timestamp::from_micros(hold.created_at),
            updated_at: Timestamp::from_micros(hold.updated_at),
            released_at: hold.released_at.map(Timestamp::from_micros),
            released_by: hold.released_by,
        }
    }
}

fn invalid(message: impl Into<String>) -> PolicyServiceError {
    PolicyServiceError::Policy(PolicyError::Invalid(message.into()))
}

/// Checks the input and that every custodian and room exists; returns them as stored.
fn checked(
    conn: &mut DbConnection,
    input: &HoldInput,
) -> Result<(String, String, Vec<String>, Vec<String>), PolicyServiceError> {
    let name = input.name.trim();
    let reason = input.reason.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("name must be 1 to 200 characters"));
    }
    if reason.is_empty() || reason.chars().count() > 2000 {
        return Err(invalid("reason must be 1 to 2000 characters"));
    }
    if input.custodians.is_empty() && input.rooms.is_empty() {
        return Err(invalid("a hold needs at least one custodian or room"));
    }
    if let (Some(start), Some(end)) = (input.starts_at, input.ends_at)
        && end < start
    {
        return Err(invalid("ends_at must not be before starts_at"));
    }
    for user in &input.custodians {
        if conclave_store::users::find_by_id(conn, *user)?.is_none() {
            return Err(invalid(format!("custodians: no user {user}")));
        }
    }
    for room in &input.rooms {
        if conclave_store::rooms::find(conn, *room)?.is_none() {
            return Err(invalid(format!("rooms: no room {room}")));
        }
    }
    let sorted = |ids: Vec<String>| {
        let mut ids = ids;
        ids.sort();
        ids.dedup();
        ids
    };
    let custodians = sorted(input.custodians.iter().map(ToString::to_string).collect());
    let rooms = sorted(input.rooms.iter().map(ToString::to_string).collect());
    Ok((name.to_owned(), reason.to_owned(), custodians, rooms))
}

pub fn place(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    by: UserId,
    input: &HoldInput,
) -> Result<HoldView, PolicyServiceError> {
    write_transaction(conn, |conn| {
        let (name, reason, custodians, rooms) = checked(conn, input)?;
        let id = uuid::Uuid::now_v7().to_string();
        let fields = HoldFields {
            name: &name,
            reason: &reason,
            starts_at: input.starts_at,
            ends_at: input.ends_at,
            custodians: &custodians,
            rooms: &rooms,
        };
        store::insert(conn, &id, &fields, by, now)?;
        let after: HoldView = store::find(conn, &id)?
            .ok_or(PolicyServiceError::NotFound)?
            .into();
        audit_change(
            conn,
            context,
            now,
            "legal_hold.place",
            ("legal_hold", id),
            &None::<HoldView>,
            &Some(after.clone()),
        )?;
        Ok(after)
    })
}

/// Replaces an active hold's name, reason, coverage and range.
pub fn update(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    id: &str,
    input: &HoldInput,
) -> Result<HoldView, PolicyServiceError> {
    write_transaction(conn, |conn| {
        let before: HoldView = store::find(conn, id)?
            .ok_or(PolicyServiceError::NotFound)?
            .into();
        if before.released_at.is_some() {
            return Err(PolicyServiceError::Conflict(
                "the hold is released; place a new one".into(),
            ));
        }
        let (name, reason, custodians, rooms) = checked(conn, input)?;
        let fields = HoldFields {
            name: &name,
            reason: &reason,
            starts_at: input.starts_at,
            ends_at: input.ends_at,
            custodians: &custodians,
            rooms: &rooms,
        };
        if !store::update(conn, id, &fields, now)? {
            return Err(PolicyServiceError::Conflict(
                "the hold is released; place a new one".into(),
            ));
        }
        let after: HoldView = store::find(conn, id)?
            .ok_or(PolicyServiceError::NotFound)?
            .into();
        audit_change(
            conn,
            context,
            now,
            "legal_hold.change",
            ("legal_hold", id.to_owned()),
            &before,
            &after,
        )?;
        Ok(after)
    })
}

/// Releases a hold: what it alone kept becomes the sweeper's to destroy.
pub fn release(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    by: UserId,
    id: &str,
) -> Result<HoldView, PolicyServiceError> {
    write_transaction(conn, |conn| {
        let before: HoldView = store::find(conn, id)?
            .ok_or(PolicyServiceError::NotFound)?
            .into();
        if !store::release(conn, id, by, now)? {
            return Err(PolicyServiceError::Conflict(
                "the hold is already released".into(),
            ));
        }
        let after: HoldView = store::find(conn, id)?
            .ok_or(PolicyServiceError::NotFound)?
            .into();
        audit_change(
            conn,
            context,
            now,
            "legal_hold.release",
            ("legal_hold", id.to_owned()),
            &before,
            &after,
        )?;
        Ok(after)
    })
}

pub fn list(
    conn: &mut DbConnection,
    active_only: bool,
) -> Result<Vec<HoldView>, PolicyServiceError> {
    Ok(store::list(conn, active_only)?
        .into_iter()
        .map(Into::into)
        .collect())
}

pub fn get(conn: &mut DbConnection, id: &str) -> Result<HoldView, PolicyServiceError> {
    Ok(store::find(conn, id)?
        .ok_or(PolicyServiceError::NotFound)?
        .into())
}

/// Every active hold, loaded once for a batch of decisions.
pub struct ActiveHolds {
    holds: Vec<HoldCoverage>,
    custodians: Vec<String>,
}

impl ActiveHolds {
    pub fn load(conn: &mut DbConnection) -> Result<Self, PolicyServiceError> {
        let corrupt = |what: String| PolicyServiceError::Corrupt {
            scope: "legal_holds".into(),
            cause: what,
        };
        let mut holds = Vec::new();
        let mut custodians = Vec::new();
        for record in store::list(conn, true)? {
            let mut coverage = HoldCoverage {
                starts_at: record.hold.starts_at.map(Timestamp::from_micros),
                ends_at: record.hold.ends_at.map(Timestamp::from_micros),
                ..HoldCoverage::default()
            };
            for user in &record.custodians {
                coverage.custodians.insert(
                    user.parse()
                        .map_err(|_| corrupt(format!("custodian {user}")))?,
                );
            }
            for room in &record.rooms {
                coverage
                    .rooms
                    .insert(room.parse().map_err(|_| corrupt(format!("room {room}")))?);
            }
            custodians.extend(record.custodians);
            holds.push(coverage);
        }
        custodians.sort();
        custodians.dedup();
        Ok(Self { holds, custodians })
    }

    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// The custodians' membership periods in the rooms of `messages`.
    pub fn periods_for(
        &self,
        conn: &mut DbConnection,
        messages: &[MessageRecord],
    ) -> Result<Vec<MembershipPeriod>, PolicyServiceError> {
        if self.custodians.is_empty() {
            return Ok(Vec::new());
        }
        let mut rooms: Vec<String> = messages.iter().map(|m| m.room_id.to_string()).collect();
        rooms.sort();
        rooms.dedup();
        store::membership_periods(conn, &self.custodians, &rooms)?
            .into_iter()
            .map(|(room_id, user_id, joined_at, left_at)| {
                Ok(MembershipPeriod {
                    room_id: room_id.parse().map_err(|_| PolicyServiceError::Corrupt {
                        scope: "room_membership_periods".into(),
                        cause: format!("room {room_id}"),
                    })?,
                    user_id: user_id.parse().map_err(|_| PolicyServiceError::Corrupt {
                        scope: "room_membership_periods".into(),
                        cause: format!("user {user_id}"),
                    })?,
                    joined_at: Timestamp::from_micros(joined_at),
                    left_at: left_at.map(Timestamp::from_micros),
                })
            })
            .collect()
    }

    /// Whether any active hold covers `message`.
    pub fn covers(&self, message: &MessageRecord, periods: &[MembershipPeriod]) -> bool {
        let held = HeldMessage {
            room_id: message.room_id,
            sender_id: message.sender_id,
            sent_at: message.created_at,
        };
        is_held(&self.holds, &held, periods)
    }
}
