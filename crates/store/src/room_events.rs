//! The per-room event log. Every change a member can see is appended with the room's
//! next event sequence number in the transaction that makes it, so a realtime client that
//! reconnects replays exactly what it missed, in order. Payloads carry no content.

use crate::DbConnection;
use crate::error::StoreError;
use crate::rooms;
use crate::schema::room_events;
use conclave_core::{MessageId, RoomId, Timestamp, UserId};
use diesel::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = room_events)]
pub struct RoomEventRecord {
    pub room_id: String,
    pub seq: i64,
    pub kind: String,
    pub message_id: Option<String>,
    pub actor_id: Option<String>,
    pub payload: String,
    pub created_at: i64,
}

/// Appends an event; returns it with its sequence number.
pub fn append(
    conn: &mut DbConnection,
    room_id: RoomId,
    kind: &str,
    message_id: Option<MessageId>,
    actor_id: Option<UserId>,
    payload: &str,
    now: Timestamp,
) -> Result<RoomEventRecord, StoreError> {
    let seq = rooms::next_event_seq(conn, room_id)?;
    let record = RoomEventRecord {
        room_id: room_id.to_string(),
        seq,
        kind: kind.to_owned(),
        message_id: message_id.map(|id| id.to_string()),
        actor_id: actor_id.map(|id| id.to_string()),
        payload: payload.to_owned(),
        created_at: now.as_micros(),
    };
    insert(conn, &record)?;
    Ok(record)
}

/// Stores an event whose sequence number the caller already took with the room locked
/// (see `rooms::lock_for_message`).
pub fn insert(conn: &mut DbConnection, record: &RoomEventRecord) -> Result<(), StoreError> {
    insert_many(conn, std::slice::from_ref(record))
}

/// Stores events with one statement (a batch of sends'), their numbers taken as for
/// [`insert`].
pub fn insert_many(conn: &mut DbConnection, records: &[RoomEventRecord]) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = records
        .iter()
        .map(|record| {
            (
                room_events::room_id.eq(&record.room_id),
                room_events::seq.eq(record.seq),
                room_events::kind.eq(&record.kind),
                room_events::message_id.eq(&record.message_id),
                room_events::actor_id.eq(&record.actor_id),
                room_events::payload.eq(&record.payload),
                room_events::created_at.eq(record.created_at),
            )
        })
        .collect();
    let insert = diesel::insert_into(room_events::table).values(rows);
    crate::connection::on_backend!(conn, |backend| insert.execute(backend))?;
    Ok(())
}

/// Events of a room after `after_seq`, oldest first, at most `limit`.
pub fn after(
    conn: &mut DbConnection,
    room_id: RoomId,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<RoomEventRecord>, StoreError> {
    Ok(room_events::table
        .filter(room_events::room_id.eq(room_id.to_string()))
        .filter(room_events::seq.gt(after_seq))
        .order(room_events::seq.asc())
        .limit(limit)
        .select(RoomEventRecord::as_select())
        .load(conn)?)
}

/// A room's events with `from <= created_at < until`, in sequence order, after `after_seq`
/// (compliance exports read a window a page at a time).
pub fn in_window(
    conn: &mut DbConnection,
    room_id: RoomId,
    from: Timestamp,
    until: Timestamp,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<RoomEventRecord>, StoreError> {
    Ok(room_events::table
        .filter(room_events::room_id.eq(room_id.to_string()))
        .filter(room_events::seq.gt(after_seq))
        .filter(room_events::created_at.ge(from.as_micros()))
        .filter(room_events::created_at.lt(until.as_micros()))
        .order(room_events::seq.asc())
        .limit(limit)
        .select(RoomEventRecord::as_select())
        .load(conn)?)
}
