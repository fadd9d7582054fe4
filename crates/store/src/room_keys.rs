//! Per-room, per-epoch data keys, stored only wrapped by a master key.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::room_keys;
use conclave_core::{RoomId, Timestamp};
use diesel::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = room_keys)]
pub struct RoomKeyRecord {
    pub room_id: String,
    pub epoch: i64,
    pub master_key_id: String,
    pub wrapped_key: Vec<u8>,
    pub created_at: i64,
}

pub fn find(
    conn: &mut DbConnection,
    room_id: RoomId,
    epoch: i64,
) -> Result<Option<RoomKeyRecord>, StoreError> {
    // By primary key, without `.first()`'s bound `LIMIT ?`: SQLite re-prepares such a
    // statement every time it is bound (it reads the limit while planning): 73,000
    // instructions a call, measured.
    Ok(room_keys::table
        .find((room_id.to_string(), epoch))
        .select(RoomKeyRecord::as_select())
        .get_result(conn)
        .optional()?)
}

/// The keys of `epoch` that exist for these rooms, in one query (a batch of sends).
pub fn find_for_rooms(
    conn: &mut DbConnection,
    room_ids: &[RoomId],
    epoch: i64,
) -> Result<Vec<RoomKeyRecord>, StoreError> {
    let ids: Vec<String> = room_ids.iter().map(ToString::to_string).collect();
    Ok(room_keys::table
        .filter(crate::messages::in_id_list(conn, "room_keys.room_id", &ids))
        .filter(room_keys::epoch.eq(epoch))
        .select(RoomKeyRecord::as_select())
        .load(conn)?)
}

pub fn insert(
    conn: &mut DbConnection,
    room_id: RoomId,
    epoch: i64,
    master_key_id: &str,
    wrapped_key: &[u8],
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::insert_into(room_keys::table)
        .values((
            room_keys::room_id.eq(room_id.to_string()),
            room_keys::epoch.eq(epoch),
            room_keys::master_key_id.eq(master_key_id),
            room_keys::wrapped_key.eq(wrapped_key.to_vec()),
            room_keys::created_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Keys wrapped by any master key other than `master_key_id`, a page at a time in key
/// order (for rotation).
pub fn wrapped_by_other_than(
    conn: &mut DbConnection,
    master_key_id: &str,
    limit: i64,
) -> Result<Vec<RoomKeyRecord>, StoreError> {
    Ok(room_keys::table
        .filter(room_keys::master_key_id.ne(master_key_id))
        .order((room_keys::room_id.asc(), room_keys::epoch.asc()))
        .limit(limit)
        .select(RoomKeyRecord::as_select())
        .load(conn)?)
}

pub fn rewrap(
    conn: &mut DbConnection,
    room_id: &str,
    epoch: i64,
    master_key_id: &str,
    wrapped_key: &[u8],
) -> Result<(), StoreError> {
    diesel::update(room_keys::table.find((room_id.to_owned(), epoch)))
        .set((
            room_keys::master_key_id.eq(master_key_id),
            room_keys::wrapped_key.eq(wrapped_key.to_vec()),
        ))
        .execute(conn)?;
    Ok(())
}

/// How many data keys each master key wraps.
pub fn count_by_master_key(conn: &mut DbConnection) -> Result<Vec<(String, i64)>, StoreError> {
    use diesel::dsl::count_star;
    Ok(room_keys::table
        .group_by(room_keys::master_key_id)
        .select((room_keys::master_key_id, count_star()))
        .load(conn)?)
}

/// Any one key wrapped by `master_key_id` (to check at start that the loaded master key
/// with that id is the right one).
pub fn sample_for_master_key(
    conn: &mut DbConnection,
    master_key_id: &str,
) -> Result<Option<RoomKeyRecord>, StoreError> {
    Ok(room_keys::table
        .filter(room_keys::master_key_id.eq(master_key_id))
        .select(RoomKeyRecord::as_select())
        .first(conn)
        .optional()?)
}
