//! Realtime delivery. A change appends a room event in its transaction and returns a
//! [`Published`]; after commit the handler calls [`publish`], which renders the event once
//! and hands it to the [`hub::Hub`] for every recipient's connections. A reconnecting
//! client replays what it missed from the room event log ([`render`]), so nothing is lost
//! and, within one connection, nothing is delivered twice ([`ws`]). On PostgreSQL,
//! [`publish`] also announces each event to the other nodes ([`fanout`]).

pub mod fanout;
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
    /// The event already rendered for live delivery, when the change had every value it
    /// shows in hand (a send), for [`deliver_rendered`]; [`publish`] renders from the
    /// database.
    pub rendered: Option<Arc<hub::Delivery>>,
}

/// Hands events rendered by the change itself ([`Published::rendered`]) to the
/// recipients' connections on this node, at once (the caller announces them to other
/// nodes); events without a rendering are left to [`publish`].
pub fn deliver_rendered(state: &MessagingState, published: &[Published]) {
    if state.hub.is_idle() {
        return;
    }
    for event in published {
        if let Some(delivery) = &event.rendered {
            state.hub.publish(&event.recipients, Arc::clone(delivery));
        }
    }
}

/// Renders committed events and delivers them to connected recipients. Failures are
/// logged, not returned: the change is committed, and clients recover what they missed
/// by resuming from the event log.
pub async fn publish(state: &MessagingState, published: Vec<Published>) {
    let cross_node = state.cross_node();
    let idle = state.hub.is_idle();
    if published.is_empty() || (idle && !cross_node) {
        return;
    }
    let keyring = Arc::clone(&state.keyring);
    let events = published.clone();
    let now = state.auth.clock.now();
    let node = state.hub.node_id();
    let outcome = state
        .auth
        .db
        .run(move |conn| {
            let rendered = if idle {
                Ok(Vec::new())
            } else {
                events
                    .iter()
                    .map(|event| render::render_one(conn, &keyring, event.room_id, event.seq, now))
                    .collect::<Result<Vec<_>, _>>()
            };
            let announced = if cross_node {
                fanout::announce(conn, node, &events)
            } else {
                Ok(())
            };
            Ok::<_, crate::error::MessagingError>((rendered, announced))
        })
        .await;
    let (rendered, announced) = match outcome {
        Ok(pair) => pair,
        Err(err) => {
            tracing::warn!(error = %err, "could not publish events; clients will resume");
            return;
        }
    };
    if let Err(err) = announced {
        tracing::warn!(error = %err, "could not announce events to other nodes; their clients will resume");
    }
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
