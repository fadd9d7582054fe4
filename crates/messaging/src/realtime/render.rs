//! Turns room events into the JSON envelopes clients receive, from the database as it is
//! now, so live delivery and replay after a reconnect produce the same thing.

use super::hub::Delivery;
use crate::error::MessagingError;
use crate::messages::{RenderMode, render_all};
use crate::wire::MessageView;
use conclave_core::{MessageId, RoomId, Timestamp, UserId};
use conclave_crypto::Keyring;
use conclave_store::room_events::{self, RoomEventRecord};
use conclave_store::rooms::{self as room_store, RoomRecord};
use conclave_store::{DbConnection, messages as message_store};
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
    let message_id = record
        .message_id
        .as_deref()
        .and_then(|id| id.parse::<MessageId>().ok());
    let message = match message_id {
        Some(id) => {
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
                Some(view) => EventMessage::Visible(Box::new(view)),
                None => EventMessage::Gone(id),
            }
        }
        None => EventMessage::None,
    };
    let room = if record.kind == "room.updated" {
        room_store::find(conn, room_id)?
    } else {
        None
    };
    Ok(envelope(room_id, record, message, room.as_ref()))
}

/// What an event shows of the message it is about.
pub(crate) enum EventMessage {
    /// The event is not about a message.
    None,
    /// The message as the event's viewer may see it.
    Visible(Box<MessageView>),
    /// A message the viewer can no longer see (expired, burned, deleted, or destroyed by
    /// retention): the event says only that, nothing of it, of who acted on it, or of
    /// whether a compliance copy still exists.
    Gone(MessageId),
}

/// The envelope a client receives for `record`, given what it shows of its message and,
/// for `room.updated`, the room as it is now. Pure, so a send can render its own event
/// from the values it has in hand exactly as replay renders it from the database.
pub(crate) fn envelope(
    room_id: RoomId,
    record: &RoomEventRecord,
    message: EventMessage,
    room: Option<&RoomRecord>,
) -> Delivery {
    let mut data: Value = serde_json::from_str(&record.payload).unwrap_or_else(|_| json!({}));
    let gone = match message {
        EventMessage::None => false,
        EventMessage::Visible(view) => {
            data["message"] = serde_json::to_value(view).unwrap_or(Value::Null);
            false
        }
        EventMessage::Gone(id) => {
            data = json!({"message": {"id": id, "expired": true}});
            true
        }
    };
    if let Some(room) = room.filter(|_| record.kind == "room.updated") {
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
    Delivery {
        room_id,
        seq: record.seq,
        committed_at: Timestamp::from_micros(record.created_at),
        json: envelope.to_string(),
    }
}
