//! Turns room events into the JSON envelopes clients receive, from the database as it is
//! now, so live delivery and replay after a reconnect produce the same thing.

use super::hub::Delivery;
use crate::error::MessagingError;
use crate::messages::{RenderMode, render_all};
use conclave_core::{MessageId, RoomId, Timestamp, UserId};
use conclave_crypto::Keyring;
use conclave_store::room_events::{self, RoomEventRecord};
use conclave_store::{DbConnection, messages as message_store, rooms as room_store};
use serde_json::{Value, json};

/// Renders one event of a room's log; `None` if it does not exist.
pub fn render_one(
    conn: &mut DbConnection,
    keyring: &Keyring,
    room_id: RoomId,
    seq: i64,
    now: Timestamp,
) -> Result<Option<Delivery>, MessagingError> {
    let records = room_events::after(conn, room_id, seq - 1, 1)?;
    match records.into_iter().next() {
        Some(record) if record.seq == seq => {
            Ok(Some(render(conn, keyring, room_id, &record, None, now)?))
        }
        _ => Ok(None),
    }
}

/// Renders the events of a room after `after_seq`, up to `limit`, oldest first.
pub fn render_after(
    conn: &mut DbConnection,
    keyring: &Keyring,
    room_id: RoomId,
    after_seq: i64,
    limit: i64,
    viewer: UserId,
    now: Timestamp,
) -> Result<Vec<Delivery>, MessagingError> {
    room_events::after(conn, room_id, after_seq, limit)?
        .iter()
        .map(|record| render(conn, keyring, room_id, record, Some(viewer), now))
        .collect()
}

fn render(
    conn: &mut DbConnection,
    keyring: &Keyring,
    room_id: RoomId,
    record: &RoomEventRecord,
    viewer: Option<UserId>,
    now: Timestamp,
) -> Result<Delivery, MessagingError> {
    let mut data: Value = serde_json::from_str(&record.payload).unwrap_or_else(|_| json!({}));
    let message_id = record
        .message_id
        .as_deref()
        .and_then(|id| id.parse::<MessageId>().ok());
    // A message the viewer can no longer see (expired, burned, deleted, or destroyed by
    // retention) makes the event say only that: nothing of it, of who acted on it, or of
    // whether a compliance copy still exists.
    let mut gone = false;
    if let Some(id) = message_id {
        let view = match message_store::find(conn, id)? {
            Some(message) => render_all(
                conn,
                keyring,
                std::slice::from_ref(&message),
                RenderMode::Event(viewer),
                now,
            )?
            .pop(),
            None => None,
        };
        match view {
            Some(view) => data["message"] = serde_json::to_value(view).unwrap_or(Value::Null),
            None => {
                data = json!({"message": {"id": id, "expired": true}});
                gone = true;
            }
        }
    }
    if record.kind == "room.updated"
        && let Some(room) = room_store::find(conn, room_id)?
    {
        data["name"] = json!(room.name);
        data["topic"] = json!(room.topic);
    }
    if let Some(actor) = record.actor_id.as_ref().filter(|_| !gone) {
        data["actor_id"] = json!(actor);
    }
    let envelope = json!({
        "type": record.kind,
        "room_id": room_id,
        "seq": record.seq,
        "data": data,
    });
    Ok(Delivery {
        room_id,
        seq: record.seq,
        committed_at: Timestamp::from_micros(record.created_at),
        json: envelope.to_string(),
    })
}
