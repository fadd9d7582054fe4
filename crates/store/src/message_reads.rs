//! Burn-on-read state: one row per recipient of a burn-on-read message, whose deadline
//! is set at that recipient's first read.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::message_reads;
use conclave_core::{MessageId, Timestamp, UserId};
use diesel::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = message_reads)]
pub struct ReadRecord {
    pub message_id: String,
    pub user_id: String,
    pub first_read_at: Option<i64>,
    pub visible_until: Option<i64>,
    pub announced_at: Option<i64>,
}

impl ReadRecord {
    /// Whether the recipient may still see the message at `now`.
    pub fn visible_at(&self, now: Timestamp) -> bool {
        self.visible_until
            .is_none_or(|until| until > now.as_micros())
    }
}

pub fn insert_recipients(
    conn: &mut DbConnection,
    message_id: MessageId,
    recipients: &[UserId],
) -> Result<(), StoreError> {
    for user in recipients {
        diesel::insert_into(message_reads::table)
            .values((
                message_reads::message_id.eq(message_id.to_string()),
                message_reads::user_id.eq(user.to_string()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn find(
    conn: &mut DbConnection,
    message_id: MessageId,
    user_id: UserId,
) -> Result<Option<ReadRecord>, StoreError> {
    Ok(message_reads::table
        .find((message_id.to_string(), user_id.to_string()))
        .select(ReadRecord::as_select())
        .get_result(conn)
        .optional()?)
}

pub fn for_message(
    conn: &mut DbConnection,
    message_id: MessageId,
) -> Result<Vec<ReadRecord>, StoreError> {
    Ok(message_reads::table
        .filter(message_reads::message_id.eq(message_id.to_string()))
        .select(ReadRecord::as_select())
        .load(conn)?)
}

/// Starts a recipient's burn timer if it has not started: returns whether it started now.
pub fn start(
    conn: &mut DbConnection,
    message_id: MessageId,
    user_id: UserId,
    now: Timestamp,
    visible_until: Timestamp,
) -> Result<bool, StoreError> {
    let started = diesel::update(
        message_reads::table
            .find((message_id.to_string(), user_id.to_string()))
            .filter(message_reads::first_read_at.is_null()),
    )
    .set((
        message_reads::first_read_at.eq(now.as_micros()),
        message_reads::visible_until.eq(visible_until.as_micros()),
    ))
    .execute(conn)?;
    Ok(started == 1)
}

/// Burn deadlines due by `until` that were not announced yet, earliest first.
pub fn due(
    conn: &mut DbConnection,
    until: Timestamp,
    limit: i64,
) -> Result<Vec<ReadRecord>, StoreError> {
    Ok(message_reads::table
        .filter(message_reads::visible_until.le(until.as_micros()))
        .filter(message_reads::announced_at.is_null())
        .order(message_reads::visible_until.asc())
        .limit(limit)
        .select(ReadRecord::as_select())
        .load(conn)?)
}

/// Marks a burn deadline announced; only the first caller (of any node) gets `true`.
pub fn mark_announced(
    conn: &mut DbConnection,
    message_id: &str,
    user_id: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let changed = diesel::update(
        message_reads::table
            .find((message_id.to_owned(), user_id.to_owned()))
            .filter(message_reads::announced_at.is_null()),
    )
    .set(message_reads::announced_at.eq(now.as_micros()))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Burn-on-read messages a user has not read yet.
pub fn unstarted_for(
    conn: &mut DbConnection,
    user_id: UserId,
) -> Result<Vec<MessageId>, StoreError> {
    let ids: Vec<String> = message_reads::table
        .filter(message_reads::user_id.eq(user_id.to_string()))
        .filter(message_reads::first_read_at.is_null())
        .select(message_reads::message_id)
        .load(conn)?;
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|_| StoreError::Corrupt(format!("message_reads: bad message id {id}")))
        })
        .collect()
}

/// A member leaving a conversation can no longer read what was sent to them: their
/// unread burn-on-read copies burn now (so the sender's copy can end once everyone's has).
/// Returns the messages whose copy burned.
pub fn burn_unread_on_leaving(
    conn: &mut DbConnection,
    room_id: conclave_core::RoomId,
    user_id: UserId,
    now: Timestamp,
) -> Result<Vec<MessageId>, StoreError> {
    use crate::schema::messages;
    let in_room = messages::table
        .filter(messages::room_id.eq(room_id.to_string()))
        .select(messages::id);
    let ids: Vec<String> = message_reads::table
        .filter(message_reads::user_id.eq(user_id.to_string()))
        .filter(message_reads::first_read_at.is_null())
        .filter(message_reads::message_id.eq_any(in_room))
        .select(message_reads::message_id)
        .load(conn)?;
    diesel::update(
        message_reads::table
            .filter(message_reads::user_id.eq(user_id.to_string()))
            .filter(message_reads::message_id.eq_any(&ids)),
    )
    .set((
        message_reads::first_read_at.eq(now.as_micros()),
        message_reads::visible_until.eq(now.as_micros()),
    ))
    .execute(conn)?;
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|_| StoreError::Corrupt(format!("message_reads: bad message id {id}")))
        })
        .collect()
}
