//! Rooms, direct conversations and their members.

use crate::DbConnection;
use crate::error::StoreError;
use crate::json_rows::JsonRows;
use crate::schema::{room_members, room_membership_periods, rooms};
use conclave_core::{MemberRole, RoomId, RoomKind, Timestamp, UserId};
use diesel::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRecord {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub created_by: UserId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_message_seq: i64,
    pub last_event_seq: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = rooms)]
struct RoomRow {
    id: String,
    kind: String,
    name: Option<String>,
    topic: Option<String>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    last_message_seq: i64,
    last_event_seq: i64,
}

impl TryFrom<RoomRow> for RoomRecord {
    type Error = StoreError;
    fn try_from(row: RoomRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("room {}: bad {what}", row.id));
        Ok(RoomRecord {
            id: row.id.parse().map_err(|_| corrupt("id"))?,
            kind: row.kind.parse().map_err(|_| corrupt("kind"))?,
            name: row.name,
            topic: row.topic,
            created_by: row.created_by.parse().map_err(|_| corrupt("created_by"))?,
            created_at: Timestamp::from_micros(row.created_at),
            updated_at: Timestamp::from_micros(row.updated_at),
            last_message_seq: row.last_message_seq,
            last_event_seq: row.last_event_seq,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub room_id: RoomId,
    pub user_id: UserId,
    pub role: MemberRole,
    pub joined_at: Timestamp,
    /// The room's event sequence number just before this member joined.
    pub joined_after_event_seq: i64,
    pub last_read_seq: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = room_members)]
struct MemberRow {
    room_id: String,
    user_id: String,
    role: String,
    joined_at: i64,
    joined_after_event_seq: i64,
    last_read_seq: i64,
}

impl TryFrom<MemberRow> for MemberRecord {
    type Error = StoreError;
    fn try_from(row: MemberRow) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("member {} of {}", row.user_id, row.room_id));
        Ok(MemberRecord {
            room_id: row.room_id.parse().map_err(|_| corrupt())?,
            user_id: row.user_id.parse().map_err(|_| corrupt())?,
            role: row.role.parse().map_err(|_| corrupt())?,
            joined_at: Timestamp::from_micros(row.joined_at),
            joined_after_event_seq: row.joined_after_event_seq,
            last_read_seq: row.last_read_seq,
        })
    }
}

pub struct NewRoom<'a> {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: Option<&'a str>,
    pub topic: Option<&'a str>,
    pub direct_key: Option<&'a str>,
    pub created_by: UserId,
    pub now: Timestamp,
}

pub fn insert(conn: &mut DbConnection, room: &NewRoom<'_>) -> Result<(), StoreError> {
    diesel::insert_into(rooms::table)
        .values((
            rooms::id.eq(room.id.to_string()),
            rooms::kind.eq(room.kind.as_str()),
            rooms::name.eq(room.name),
            rooms::topic.eq(room.topic),
            rooms::direct_key.eq(room.direct_key),
            rooms::created_by.eq(room.created_by.to_string()),
            rooms::created_at.eq(room.now.as_micros()),
            rooms::updated_at.eq(room.now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: RoomId) -> Result<Option<RoomRecord>, StoreError> {
    rooms::table
        .find(id.to_string())
        .select(RoomRow::as_select())
        .get_result(conn)
        .optional()?
        .map(RoomRecord::try_from)
        .transpose()
}

pub fn find_direct(
    conn: &mut DbConnection,
    direct_key: &str,
) -> Result<Option<RoomRecord>, StoreError> {
    rooms::table
        .filter(rooms::direct_key.eq(direct_key))
        .select(RoomRow::as_select())
        .get_result(conn)
        .optional()?
        .map(RoomRecord::try_from)
        .transpose()
}

pub fn set_name_and_topic(
    conn: &mut DbConnection,
    id: RoomId,
    name: Option<&str>,
    topic: Option<Option<&str>>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let target = || rooms::table.find(id.to_string());
    if let Some(name) = name {
        diesel::update(target())
            .set(rooms::name.eq(name))
            .execute(conn)?;
    }
    if let Some(topic) = topic {
        diesel::update(target())
            .set(rooms::topic.eq(topic))
            .execute(conn)?;
    }
    diesel::update(target())
        .set(rooms::updated_at.eq(now.as_micros()))
        .execute(conn)?;
    Ok(())
}

/// The numbers a new message takes in its room: its message sequence number and the
/// sequence number of the event announcing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSeqs {
    pub message_seq: i64,
    pub event_seq: i64,
}

/// Locks rooms for a batch of new messages and reads the numbers they last handed out,
/// in one statement. On PostgreSQL the rows are locked in id order, so two batches can
/// never wait on each other; on SQLite the write transaction already holds the database.
/// Rooms that do not exist are left out. The caller takes the numbers above these and
/// stores the last it took with [`store_message_seqs`] in the same transaction; numbers
/// are only taken for messages that will be stored, which keeps the sequences gap-free.
pub fn lock_for_messages(
    conn: &mut DbConnection,
    ids: &[RoomId],
) -> Result<std::collections::HashMap<RoomId, MessageSeqs>, StoreError> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        last_message_seq: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        last_event_seq: i64,
    }
    let rows = JsonRows::of(conn);
    let lock = match conn {
        DbConnection::Postgresql(_) => " FOR UPDATE",
        DbConnection::Sqlite(_) => "",
    };
    let ids: Vec<[String; 1]> = ids.iter().map(|id| [id.to_string()]).collect();
    let locked: Vec<Locked> = diesel::sql_query(format!(
        "SELECT id, last_message_seq, last_event_seq FROM rooms \
         WHERE id IN (SELECT {} FROM {}) ORDER BY id{lock}",
        rows.text(0),
        rows.source("$1", ids.len())
    ))
    .bind::<diesel::sql_types::Text, _>(serde_json::to_string(&ids).expect("strings serialize"))
    .load(conn)?;
    locked
        .into_iter()
        .map(|row| {
            let id = row
                .id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("room {}: bad id", row.id)))?;
            let seqs = MessageSeqs {
                message_seq: row.last_message_seq,
                event_seq: row.last_event_seq,
            };
            Ok((id, seqs))
        })
        .collect()
}

/// Stores the numbers a batch of new messages took in each room (the last of each) and
/// marks the rooms active at `now`, in one statement; see [`lock_for_messages`].
pub fn store_message_seqs(
    conn: &mut DbConnection,
    taken: &[(RoomId, MessageSeqs)],
    now: Timestamp,
) -> Result<(), StoreError> {
    if taken.is_empty() {
        return Ok(());
    }
    let rows = JsonRows::of(conn);
    let list: Vec<(String, i64, i64)> = taken
        .iter()
        .map(|(id, seqs)| (id.to_string(), seqs.message_seq, seqs.event_seq))
        .collect();
    diesel::sql_query(format!(
        "UPDATE rooms SET last_message_seq = taken.message_seq, \
         last_event_seq = taken.event_seq, updated_at = $1 \
         FROM (SELECT {} AS id, {} AS message_seq, {} AS event_seq FROM {}) AS taken \
         WHERE rooms.id = taken.id",
        rows.text(0),
        rows.bigint(1),
        rows.bigint(2),
        rows.source("$2", list.len())
    ))
    .bind::<diesel::sql_types::BigInt, _>(now.as_micros())
    .bind::<diesel::sql_types::Text, _>(serde_json::to_string(&list).expect("strings serialize"))
    .execute(conn)?;
    Ok(())
}

/// Takes the room's next event sequence number. The row update locks the room until the
/// transaction ends, so numbers are handed out gap-free and in commit order.
pub fn next_event_seq(conn: &mut DbConnection, id: RoomId) -> Result<i64, StoreError> {
    let target = || rooms::table.find(id.to_string());
    diesel::update(target())
        .set(rooms::last_event_seq.eq(rooms::last_event_seq + 1))
        .execute(conn)?;
    Ok(target().select(rooms::last_event_seq).first(conn)?)
}

pub fn add_member(
    conn: &mut DbConnection,
    room_id: RoomId,
    user_id: UserId,
    role: MemberRole,
    now: Timestamp,
    joined_after_event_seq: i64,
) -> Result<(), StoreError> {
    diesel::insert_into(room_members::table)
        .values((
            room_members::room_id.eq(room_id.to_string()),
            room_members::user_id.eq(user_id.to_string()),
            room_members::role.eq(role.as_str()),
            room_members::joined_at.eq(now.as_micros()),
            room_members::joined_after_event_seq.eq(joined_after_event_seq),
        ))
        .execute(conn)?;
    diesel::insert_into(room_membership_periods::table)
        .values((
            room_membership_periods::room_id.eq(room_id.to_string()),
            room_membership_periods::user_id.eq(user_id.to_string()),
            room_membership_periods::joined_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Removes a member and closes their membership period (kept for holds and exports).
pub fn remove_member(
    conn: &mut DbConnection,
    room_id: RoomId,
    user_id: UserId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let removed =
        diesel::delete(room_members::table.find((room_id.to_string(), user_id.to_string())))
            .execute(conn)?;
    diesel::update(
        room_membership_periods::table
            .filter(room_membership_periods::room_id.eq(room_id.to_string()))
            .filter(room_membership_periods::user_id.eq(user_id.to_string()))
            .filter(room_membership_periods::left_at.is_null()),
    )
    .set(room_membership_periods::left_at.eq(now.as_micros()))
    .execute(conn)?;
    Ok(removed == 1)
}

pub fn set_member_role(
    conn: &mut DbConnection,
    room_id: RoomId,
    user_id: UserId,
    role: MemberRole,
) -> Result<(), StoreError> {
    diesel::update(room_members::table.find((room_id.to_string(), user_id.to_string())))
        .set(room_members::role.eq(role.as_str()))
        .execute(conn)?;
    Ok(())
}

pub fn member(
    conn: &mut DbConnection,
    room_id: RoomId,
    user_id: UserId,
) -> Result<Option<MemberRecord>, StoreError> {
    room_members::table
        .find((room_id.to_string(), user_id.to_string()))
        .select(MemberRow::as_select())
        .get_result(conn)
        .optional()?
        .map(MemberRecord::try_from)
        .transpose()
}

pub fn members(conn: &mut DbConnection, room_id: RoomId) -> Result<Vec<MemberRecord>, StoreError> {
    room_members::table
        .filter(room_members::room_id.eq(room_id.to_string()))
        .order(room_members::joined_at.asc())
        .select(MemberRow::as_select())
        .load(conn)?
        .into_iter()
        .map(MemberRecord::try_from)
        .collect()
}

/// The members of each of these rooms, in joining order, in one query (a batch of sends).
/// A room without members (or that does not exist) is left out.
pub fn members_of_rooms(
    conn: &mut DbConnection,
    room_ids: &[RoomId],
) -> Result<std::collections::HashMap<RoomId, Vec<UserId>>, StoreError> {
    let ids: Vec<String> = room_ids.iter().map(ToString::to_string).collect();
    let rows: Vec<(String, String)> = room_members::table
        .filter(crate::messages::in_id_list(
            conn,
            "room_members.room_id",
            &ids,
        ))
        .order((room_members::room_id, room_members::joined_at.asc()))
        .select((room_members::room_id, room_members::user_id))
        .load(conn)?;
    let mut members: std::collections::HashMap<RoomId, Vec<UserId>> =
        std::collections::HashMap::new();
    for (room_id, user_id) in rows {
        let corrupt = || StoreError::Corrupt(format!("member {user_id} of {room_id}: bad id"));
        members
            .entry(room_id.parse().map_err(|_| corrupt())?)
            .or_default()
            .push(user_id.parse().map_err(|_| corrupt())?);
    }
    Ok(members)
}

pub fn member_count(conn: &mut DbConnection, room_id: RoomId) -> Result<i64, StoreError> {
    Ok(room_members::table
        .filter(room_members::room_id.eq(room_id.to_string()))
        .count()
        .get_result(conn)?)
}

/// How many rooms and direct conversations `user_id` is a member of.
pub fn membership_count(conn: &mut DbConnection, user_id: UserId) -> Result<i64, StoreError> {
    Ok(room_members::table
        .filter(room_members::user_id.eq(user_id.to_string()))
        .count()
        .get_result(conn)?)
}

pub fn count_with_role(
    conn: &mut DbConnection,
    room_id: RoomId,
    role: MemberRole,
) -> Result<i64, StoreError> {
    Ok(room_members::table
        .filter(room_members::room_id.eq(room_id.to_string()))
        .filter(room_members::role.eq(role.as_str()))
        .count()
        .get_result(conn)?)
}

/// Raises a member's read marker (never lowers it); returns the marker now stored.
pub fn mark_read(
    conn: &mut DbConnection,
    room_id: RoomId,
    user_id: UserId,
    seq: i64,
) -> Result<i64, StoreError> {
    raise_read_marker(conn, room_id, user_id, seq)?;
    Ok(room_members::table
        .find((room_id.to_string(), user_id.to_string()))
        .select(room_members::last_read_seq)
        .get_result(conn)?)
}

/// Raises a member's read marker to `seq` if it is lower, without reading it back.
pub fn raise_read_marker(
    conn: &mut DbConnection,
    room_id: RoomId,
    user_id: UserId,
    seq: i64,
) -> Result<(), StoreError> {
    raise_read_markers(conn, &[(room_id, user_id, seq)])
}

/// [`raise_read_marker`] for many members at once, in one statement (a batch of sends
/// marks what each sender sent as read). A member may appear once.
pub fn raise_read_markers(
    conn: &mut DbConnection,
    markers: &[(RoomId, UserId, i64)],
) -> Result<(), StoreError> {
    if markers.is_empty() {
        return Ok(());
    }
    let rows = JsonRows::of(conn);
    let list: Vec<(String, String, i64)> = markers
        .iter()
        .map(|(room, user, seq)| (room.to_string(), user.to_string(), *seq))
        .collect();
    diesel::sql_query(format!(
        "UPDATE room_members SET last_read_seq = marker.seq \
         FROM (SELECT {} AS room_id, {} AS user_id, {} AS seq FROM {}) AS marker \
         WHERE room_members.room_id = marker.room_id AND room_members.user_id = marker.user_id \
         AND room_members.last_read_seq < marker.seq",
        rows.text(0),
        rows.text(1),
        rows.bigint(2),
        rows.source("$1", list.len())
    ))
    .bind::<diesel::sql_types::Text, _>(serde_json::to_string(&list).expect("strings serialize"))
    .execute(conn)?;
    Ok(())
}

/// The rooms a user belongs to, with their membership, most recently active first.
pub fn rooms_of(
    conn: &mut DbConnection,
    user_id: UserId,
) -> Result<Vec<(RoomRecord, MemberRecord)>, StoreError> {
    let rows: Vec<(RoomRow, MemberRow)> = rooms::table
        .inner_join(room_members::table)
        .filter(room_members::user_id.eq(user_id.to_string()))
        .order(rooms::updated_at.desc())
        .select((RoomRow::as_select(), MemberRow::as_select()))
        .load(conn)?;
    rows.into_iter()
        .map(|(room, member)| Ok((RoomRecord::try_from(room)?, MemberRecord::try_from(member)?)))
        .collect()
}

pub fn touch(conn: &mut DbConnection, id: RoomId, now: Timestamp) -> Result<(), StoreError> {
    diesel::update(rooms::table.find(id.to_string()))
        .set(rooms::updated_at.eq(now.as_micros()))
        .execute(conn)?;
    Ok(())
}

/// Locks the room row until the transaction ends without changing it (a no-op update,
/// which both backends support), so checks made after it see every earlier writer's
/// committed rows.
pub fn lock(conn: &mut DbConnection, id: RoomId) -> Result<(), StoreError> {
    diesel::update(rooms::table.find(id.to_string()))
        .set(rooms::last_message_seq.eq(rooms::last_message_seq))
        .execute(conn)?;
    Ok(())
}

/// Every membership period of a room: `(user id, joined_at, left_at)`, oldest first.
pub fn all_membership_periods(
    conn: &mut DbConnection,
    room_id: RoomId,
) -> Result<Vec<(UserId, Timestamp, Option<Timestamp>)>, StoreError> {
    let rows: Vec<(String, i64, Option<i64>)> = room_membership_periods::table
        .filter(room_membership_periods::room_id.eq(room_id.to_string()))
        .order(room_membership_periods::joined_at.asc())
        .select((
            room_membership_periods::user_id,
            room_membership_periods::joined_at,
            room_membership_periods::left_at,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(user, joined, left)| {
            Ok((
                user.parse().map_err(|_| {
                    StoreError::Corrupt(format!("membership period: bad user {user}"))
                })?,
                Timestamp::from_micros(joined),
                left.map(Timestamp::from_micros),
            ))
        })
        .collect()
}

/// Rooms a user was a member of at some time in `[from, until)`.
pub fn rooms_of_during(
    conn: &mut DbConnection,
    user_id: UserId,
    from: Timestamp,
    until: Timestamp,
) -> Result<Vec<RoomId>, StoreError> {
    let ids: Vec<String> = room_membership_periods::table
        .filter(room_membership_periods::user_id.eq(user_id.to_string()))
        .filter(room_membership_periods::joined_at.lt(until.as_micros()))
        .filter(
            room_membership_periods::left_at
                .is_null()
                .or(room_membership_periods::left_at.ge(from.as_micros())),
        )
        .select(room_membership_periods::room_id)
        .distinct()
        .load(conn)?;
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|_| StoreError::Corrupt(format!("membership period: bad room {id}")))
        })
        .collect()
}

/// Every room id, a page at a time in id order.
pub fn all_ids(
    conn: &mut DbConnection,
    after: Option<RoomId>,
    limit: i64,
) -> Result<Vec<RoomId>, StoreError> {
    let mut query = rooms::table
        .order(rooms::id.asc())
        .limit(limit)
        .select(rooms::id)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(rooms::id.gt(after.to_string()));
    }
    let ids: Vec<String> = query.load(conn)?;
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|_| StoreError::Corrupt(format!("room: bad id {id}")))
        })
        .collect()
}
