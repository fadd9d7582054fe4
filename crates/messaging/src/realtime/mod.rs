//! Realtime delivery. A change appends a room event in its transaction and returns a
//! [`Published`]; after commit the handler calls [`publish`], which renders the event once
//! and hands it to the [`hub::Hub`] for every recipient's connections. A reconnecting
//! client replays what it missed from the room event log ([`render`]), so nothing is lost
//! and, within one connection, nothing is delivered twice ([`ws`]).

pub mod hub;
pub mod render;
pub mod ws;

use crate::settings::MessagingState;
use conclave_core::{RoomId, UserId};
use std::sync::Arc;

/// An event committed to a room's log, and who should receive it live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub room_id: RoomId,
    pub seq: i64,
    pub recipients: Vec<UserId>,
}

/// Renders committed events and delivers them to connected recipients. Failures are
/// logged, not returned: the change is committed, and clients recover what they missed
/// by resuming from the event log.
pub async fn publish(state: &MessagingState, published: Vec<Published>) {
    if published.is_empty() || state.hub.is_idle() {
        return;
    }
    let keyring = Arc::clone(&state.keyring);
    let events = published.clone();
    let now = state.auth.clock.now();
    let rendered = state
        .auth
        .db
        .run(move |conn| {
            events
                .iter()
                .map(|event| render::render_one(conn, &keyring, event.room_id, event.seq, now))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    match rendered {
        Ok(deliveries) => {
            for (event, delivery) in published.iter().zip(deliveries) {
                if let Some(delivery) = delivery {
                    state.hub.publish(&event.recipients, Arc::new(delivery));
                }
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not render events for live delivery; clients will resume")
        }
    }
}
