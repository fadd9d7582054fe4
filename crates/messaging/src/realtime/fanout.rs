//! Cross-node fan-out through PostgreSQL LISTEN/NOTIFY. After a node publishes a committed
//! event locally it also announces "room R has event S for recipients [...]" on the
//! `conclave_events` channel ([`announce`]); every other node's [`spawn_listener`] thread
//! renders the event from the shared database for the recipients connected to it and
//! hands it to its hub. The WebSocket layer already orders by `seq`, drops duplicates and
//! fills gaps from the event log, so a notification only has to say which event it is.
//!
//! When the listening connection is lost, notifications sent meanwhile are gone: once it
//! listens again, every local WebSocket is closed with the resume hint, and clients replay
//! what they missed from the log. On SQLite (one node) nothing is announced or listened to.

use super::Published;
use super::hub::Hub;
use crate::settings::MessagingState;
use conclave_core::{RoomId, UserId};
use conclave_store::notify::{self, Listener, MAX_PAYLOAD_BYTES};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The PostgreSQL channel realtime events are announced on.
pub const CHANNEL: &str = "conclave_events";

/// How often the listener looks for notifications (see `conclave_store::notify`).
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// How often the listener checks that its connection is alive when it is quiet.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One notification: an event of a room's log, for some of its recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub node: uuid::Uuid,
    pub room_id: RoomId,
    pub seq: i64,
    pub recipients: Vec<UserId>,
}

/// The notifications announcing `event` from `node`: its recipients are split over as
/// many as it takes to keep each payload under PostgreSQL's limit.
pub fn payloads(node: uuid::Uuid, event: &Published) -> Vec<String> {
    let encode = |recipients: &[UserId]| {
        serde_json::to_string(&Notice {
            node,
            room_id: event.room_id,
            seq: event.seq,
            recipients: recipients.to_vec(),
        })
        .unwrap_or_default()
    };
    let empty = encode(&[]).len();
    // A recipient costs its quoted UUID and a comma.
    let per_recipient = 36 + 3;
    let per_chunk = ((MAX_PAYLOAD_BYTES - empty) / per_recipient).max(1);
    event.recipients.chunks(per_chunk).map(encode).collect()
}

/// Parses a notification; `None` for one that is not a [`Notice`] (logged).
pub fn parse(payload: &str) -> Option<Notice> {
    serde_json::from_str(payload)
        .inspect_err(
            |err| tracing::warn!(error = %err, "ignoring a malformed cross-node notification"),
        )
        .ok()
}

/// Announces committed events to the other nodes. A no-op on SQLite.
pub fn announce(
    conn: &mut conclave_store::DbConnection,
    node: uuid::Uuid,
    events: &[Published],
) -> Result<(), conclave_store::StoreError> {
    let all: Vec<String> = events
        .iter()
        .flat_map(|event| payloads(node, event))
        .collect();
    notify::notify(conn, CHANNEL, &all)
}

/// Delivers one notice from another node to the recipients connected here; the database
/// is not touched when none is. Returns how many connections' users it was for.
pub fn deliver(
    state: &MessagingState,
    notice: &Notice,
) -> Result<usize, crate::error::MessagingError> {
    if notice.node == state.hub.node_id() {
        return Ok(0);
    }
    let local = state.hub.connected(&notice.recipients);
    if local.is_empty() {
        return Ok(0);
    }
    let mut conn = state.auth.db.conn()?;
    let now = state.auth.clock.now();
    if let Some(delivery) =
        super::render::render_one(&mut conn, &state.keyring, notice.room_id, notice.seq, now)?
    {
        state.hub.publish(&local, Arc::new(delivery));
    }
    Ok(local.len())
}

/// Starts the listener on a thread of its own, for the life of the process: it listens
/// on [`CHANNEL`] over a dedicated connection to `url`, delivers other nodes' events,
/// and reconnects with backoff when the connection is lost.
pub fn spawn_listener(
    state: MessagingState,
    url: String,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("conclave-fanout".to_owned())
        .spawn(move || listen_forever(&state, &url))
}

fn listen_forever(state: &MessagingState, url: &str) {
    let mut backoff = Duration::from_millis(100);
    let mut lost = false;
    loop {
        let mut listener = match Listener::listen(url, CHANNEL) {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "cross-node fan-out cannot listen; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if lost {
            resync_after_outage(&state.hub);
        }
        tracing::info!(node = %state.hub.node_id(), "cross-node fan-out listening");
        let err = serve(state, &mut listener);
        tracing::warn!(error = %err, "cross-node fan-out lost its connection; reconnecting");
        lost = true;
    }
}

/// Notifications may have been missed while not listening: every local client resumes
/// from the event log.
pub fn resync_after_outage(hub: &Hub) {
    let closed = hub.disconnect_all();
    tracing::info!(
        connections = closed,
        "closed local WebSockets so they resume after missed cross-node events"
    );
}

/// Polls until the connection fails; returns the failure.
fn serve(state: &MessagingState, listener: &mut Listener) -> conclave_store::StoreError {
    let mut last_check = Instant::now();
    loop {
        match listener.poll() {
            Ok(payloads) if payloads.is_empty() => {
                if last_check.elapsed() >= CHECK_INTERVAL {
                    if let Err(err) = listener.check() {
                        return err;
                    }
                    last_check = Instant::now();
                }
                std::thread::sleep(POLL_INTERVAL);
            }
            Ok(payloads) => {
                last_check = Instant::now();
                for notice in payloads.iter().filter_map(|payload| parse(payload)) {
                    if let Err(err) = deliver(state, &notice) {
                        // The client fills the gap from the log when the next event comes.
                        tracing::warn!(error = %err, room = %notice.room_id, seq = notice.seq, "could not deliver a cross-node event");
                    }
                }
            }
            Err(err) => return err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(recipients: usize) -> Published {
        Published {
            room_id: RoomId::new(),
            seq: 42,
            recipients: (0..recipients).map(|_| UserId::new()).collect(),
            rendered: None,
        }
    }

    #[test]
    fn a_small_event_is_one_notification_that_round_trips() {
        let node = uuid::Uuid::new_v4();
        let event = event(3);
        let payloads = payloads(node, &event);
        assert_eq!(payloads.len(), 1);
        let notice = parse(&payloads[0]).unwrap();
        assert_eq!(notice.node, node);
        assert_eq!((notice.room_id, notice.seq), (event.room_id, 42));
        assert_eq!(notice.recipients, event.recipients);
    }

    #[test]
    fn a_large_room_is_split_under_the_postgres_limit_without_losing_anyone() {
        let event = event(1_000);
        let payloads = payloads(uuid::Uuid::new_v4(), &event);
        assert!(
            payloads.len() > 1,
            "1000 recipients cannot fit in one payload"
        );
        assert!(
            payloads.iter().all(|p| p.len() < MAX_PAYLOAD_BYTES),
            "every payload under the limit"
        );
        let all: Vec<UserId> = payloads
            .iter()
            .flat_map(|p| parse(p).unwrap().recipients)
            .collect();
        assert_eq!(all, event.recipients);
    }

    #[test]
    fn garbage_is_ignored() {
        assert!(parse("not json").is_none());
        assert!(parse("{\"node\":1}").is_none());
    }
}
