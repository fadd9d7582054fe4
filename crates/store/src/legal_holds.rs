//! Legal holds: named, with a reason, covering custodians and rooms within an optional
//! date range, until released. Whether a hold covers a message is decided in
//! `conclave_core::legal_hold`; this module only stores them.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::{
    legal_hold_custodians, legal_hold_rooms, legal_holds, room_membership_periods,
};
use conclave_core::{Timestamp, UserId};
use diesel::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = legal_holds)]
pub struct HoldRow {
    pub id: String,
    pub name: String,
    pub reason: String,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub released_at: Option<i64>,
    pub released_by: Option<String>,
}

/// A hold with what it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRecord {
    pub hold: HoldRow,
    pub custodians: Vec<String>,
    pub rooms: Vec<String>,
}

pub struct HoldFields<'a> {
    pub name: &'a str,
    pub reason: &'a str,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub custodians: &'a [String],
    pub rooms: &'a [String],
}

pub fn insert(
    conn: &mut DbConnection,
    id: &str,
    fields: &HoldFields<'_>,
    by: UserId,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::insert_into(legal_holds::table)
        .values((
            legal_holds::id.eq(id),
            legal_holds::name.eq(fields.name),
            legal_holds::reason.eq(fields.reason),
            legal_holds::starts_at.eq(fields.starts_at.map(Timestamp::as_micros)),
            legal_holds::ends_at.eq(fields.ends_at.map(Timestamp::as_micros)),
            legal_holds::created_by.eq(by.to_string()),
            legal_holds::created_at.eq(now.as_micros()),
            legal_holds::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    set_coverage(conn, id, fields)
}

/// Replaces an active hold's fields and coverage; returns false when it was released
/// (meanwhile), changing nothing.
pub fn update(
    conn: &mut DbConnection,
    id: &str,
    fields: &HoldFields<'_>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let updated = diesel::update(
        legal_holds::table
            .find(id)
            .filter(legal_holds::released_at.is_null()),
    )
    .set((
        legal_holds::name.eq(fields.name),
        legal_holds::reason.eq(fields.reason),
        legal_holds::starts_at.eq(fields.starts_at.map(Timestamp::as_micros)),
        legal_holds::ends_at.eq(fields.ends_at.map(Timestamp::as_micros)),
        legal_holds::updated_at.eq(now.as_micros()),
    ))
    .execute(conn)?;
    if updated == 0 {
        return Ok(false);
    }
    set_coverage(conn, id, fields)?;
    Ok(true)
}

fn set_coverage(
    conn: &mut DbConnection,
    id: &str,
    fields: &HoldFields<'_>,
) -> Result<(), StoreError> {
    diesel::delete(legal_hold_custodians::table.filter(legal_hold_custodians::hold_id.eq(id)))
        .execute(conn)?;
    diesel::delete(legal_hold_rooms::table.filter(legal_hold_rooms::hold_id.eq(id)))
        .execute(conn)?;
    for user in fields.custodians {
        diesel::insert_into(legal_hold_custodians::table)
            .values((
                legal_hold_custodians::hold_id.eq(id),
                legal_hold_custodians::user_id.eq(user),
            ))
            .execute(conn)?;
    }
    for room in fields.rooms {
        diesel::insert_into(legal_hold_rooms::table)
            .values((
                legal_hold_rooms::hold_id.eq(id),
                legal_hold_rooms::room_id.eq(room),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Releases a hold; returns whether it was active.
pub fn release(
    conn: &mut DbConnection,
    id: &str,
    by: UserId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let released = diesel::update(
        legal_holds::table
            .find(id)
            .filter(legal_holds::released_at.is_null()),
    )
    .set((
        legal_holds::released_at.eq(now.as_micros()),
        legal_holds::released_by.eq(by.to_string()),
        legal_holds::updated_at.eq(now.as_micros()),
    ))
    .execute(conn)?;
    Ok(released == 1)
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<HoldRecord>, StoreError> {
    let Some(hold) = legal_holds::table
        .find(id)
        .select(HoldRow::as_select())
        .get_result(conn)
        .optional()?
    else {
        return Ok(None);
    };
    Ok(with_coverage(conn, vec![hold])?.pop())
}

/// Every hold (active ones only, if asked), newest first.
pub fn list(conn: &mut DbConnection, active_only: bool) -> Result<Vec<HoldRecord>, StoreError> {
    let mut query = legal_holds::table
        .order((legal_holds::created_at.desc(), legal_holds::id.desc()))
        .select(HoldRow::as_select())
        .into_boxed();
    if active_only {
        query = query.filter(legal_holds::released_at.is_null());
    }
    let holds = query.load(conn)?;
    with_coverage(conn, holds)
}

fn with_coverage(
    conn: &mut DbConnection,
    holds: Vec<HoldRow>,
) -> Result<Vec<HoldRecord>, StoreError> {
    let ids: Vec<&String> = holds.iter().map(|h| &h.id).collect();
    let custodians: Vec<(String, String)> = legal_hold_custodians::table
        .filter(legal_hold_custodians::hold_id.eq_any(&ids))
        .order(legal_hold_custodians::user_id.asc())
        .select((
            legal_hold_custodians::hold_id,
            legal_hold_custodians::user_id,
        ))
        .load(conn)?;
    let rooms: Vec<(String, String)> = legal_hold_rooms::table
        .filter(legal_hold_rooms::hold_id.eq_any(&ids))
        .order(legal_hold_rooms::room_id.asc())
        .select((legal_hold_rooms::hold_id, legal_hold_rooms::room_id))
        .load(conn)?;
    Ok(holds
        .into_iter()
        .map(|hold| HoldRecord {
            custodians: custodians
                .iter()
                .filter(|(h, _)| *h == hold.id)
                .map(|(_, u)| u.clone())
                .collect(),
            rooms: rooms
                .iter()
                .filter(|(h, _)| *h == hold.id)
                .map(|(_, r)| r.clone())
                .collect(),
            hold,
        })
        .collect())
}

/// A membership period as stored: `(room id, user id, joined_at, left_at)`.
pub type PeriodRow = (String, String, i64, Option<i64>);

/// Membership periods of `users` in `rooms`.
pub fn membership_periods(
    conn: &mut DbConnection,
    users: &[String],
    rooms: &[String],
) -> Result<Vec<PeriodRow>, StoreError> {
    if users.is_empty() || rooms.is_empty() {
        return Ok(Vec::new());
    }
    Ok(room_membership_periods::table
        .filter(room_membership_periods::user_id.eq_any(users))
        .filter(room_membership_periods::room_id.eq_any(rooms))
        .select((
            room_membership_periods::room_id,
            room_membership_periods::user_id,
            room_membership_periods::joined_at,
            room_membership_periods::left_at,
        ))
        .load(conn)?)
}
