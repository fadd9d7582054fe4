//! `GET /api/v1/ws[?resume=ROOM_ID:SEQ,ROOM_ID:SEQ…]`: one WebSocket per client.
//!
//! A client reconnecting names, per room, the last event sequence number it saw. The
//! server registers the connection's queue first (live events wait there), sends
//! `{"type":"ready","data":{"rooms":{ROOM_ID: LAST_EVENT_SEQ}}}`, replays every event after
//! each named position from the room's log, and only then delivers live events: so a
//! client gets everything it missed, in order, before anything newer. Rooms it did not
//! name start at the ready snapshot. Within a connection each room's events arrive in
//! sequence order, each once: a live event that overtakes an earlier one waits a moment
//! for it (concurrent requests publish from their own tasks, so a few milliseconds of
//! overtaking is common), then has the gap filled from the log, and anything already
//! delivered is skipped.
//!
//! Client frames: `{"type":"resume","rooms":{ROOM_ID: SEQ}}` replays a room's events after
//! SEQ on an open connection (after the client found a gap of its own);
//! `{"type":"ping"}` is answered with `{"type":"pong"}`.
//!
//! Protection: a cap on WebSockets per user on this node (429 at the handshake), a
//! frame-size limit, a per-connection frame rate limit, server pings (a connection silent
//! for three intervals is closed), and a bounded queue whose overflow closes the
//! connection with a resume hint.

use super::hub::Delivery;
use super::render::render_after;
use crate::error::MessagingError;
use crate::settings::MessagingState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use conclave_api::ApiError;
use conclave_auth::AuthUser;
use conclave_core::{ErrorCode, RoomId, SessionId, UserId};
use conclave_store::rooms as room_store;
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events fetched from the log per round while replaying or filling a gap.
const REPLAY_PAGE: i64 = 500;

/// Frames a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Replay what was missed: the last event sequence number seen, per room.
    Resume { rooms: BTreeMap<RoomId, i64> },
    /// Application-level keep-alive; answered with `{"type":"pong"}`.
    Ping,
}

/// Where to resume: `ROOM_ID:SEQ` pairs separated by commas.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WebSocketQuery {
    /// The last event sequence number seen per room, as `ROOM_ID:SEQ,ROOM_ID:SEQ`.
    pub resume: Option<String>,
}

/// Parses one client text frame (the fuzz target `ws_frame` feeds it arbitrary text).
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, serde_json::Error> {
    serde_json::from_str(text)
}

/// Parses the `resume` query parameter of the handshake.
pub fn parse_resume(raw: &str) -> Result<BTreeMap<RoomId, i64>, ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidInput,
            "resume must be ROOM_ID:SEQ pairs separated by commas",
        )
    };
    raw.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (room, seq) = pair.split_once(':').ok_or_else(invalid)?;
            Ok((
                room.parse().map_err(|_| invalid())?,
                seq.parse::<i64>().map_err(|_| invalid())?.max(0),
            ))
        })
        .collect()
}

/// Open the realtime connection.
#[utoipa::path(
    get, path = "/api/v1/ws", tag = "realtime", security(("bearer" = []), ("session_cookie" = [])),
    params(WebSocketQuery),
    responses(
        (status = 422, description = "Malformed resume positions", body = conclave_api::ErrorBody),
        (status = 101, description = "Switching to the WebSocket protocol; see the module documentation for frames"),
        (status = 401, description = "No valid session", body = conclave_api::ErrorBody),
        (status = 403, description = "Cross-origin browser connection", body = conclave_api::ErrorBody),
        (status = 429, description = "Over `messaging.websocket_max_per_user` open WebSockets", body = conclave_api::ErrorBody),
    )
)]
pub async fn websocket(
    state: web::Data<MessagingState>,
    req: HttpRequest,
    body: web::Payload,
    user: AuthUser,
    query: web::Query<WebSocketQuery>,
) -> Result<HttpResponse, ApiError> {
    let resume = parse_resume(query.resume.as_deref().unwrap_or(""))?;
    // A browser sends its cookie with cross-site WebSocket handshakes; refuse any whose
    // Origin is not this server (bearer-token clients send no cookie and no Origin).
    if !req.headers().contains_key(header::AUTHORIZATION)
        && let Some(origin) = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
    {
        let host = req.connection_info().host().to_owned();
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != host {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "cross-origin WebSocket connections are refused",
            ));
        }
    }
    let limits = &state.settings.websocket;
    let me = user.0.user.id;
    let Some((connection_id, queue)) =
        state
            .hub
            .try_register(me, limits.queue_len, limits.max_per_user)
    else {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many open WebSockets: at most {} per user on this server; close one first",
                limits.max_per_user
            ),
        )
        .with_retry_after(Duration::from_secs(5)));
    };
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(upgraded) => upgraded,
        Err(err) => {
            state.hub.unregister(me, connection_id);
            return Err(ApiError::new(ErrorCode::MalformedRequest, err.to_string()));
        }
    };
    let stream = stream
        .max_frame_size(limits.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(limits.max_frame_bytes);
    let state = state.get_ref().clone();
    actix_web::rt::spawn(async move {
        Connection::new(state, &user.0, session)
            .run(stream, resume, (connection_id, queue))
            .await;
    });
    Ok(response)
}

struct Connection {
    state: MessagingState,
    user_id: UserId,
    /// The session the connection authenticated with; re-checked while it is open, so a
    /// logout, revocation or suspension also ends the connection.
    session_id: SessionId,
    session_checked: Instant,
    session: Session,
    /// Last event sequence number delivered, per room.
    delivered: HashMap<RoomId, i64>,
    /// Live events that overtook an earlier one, waiting for it.
    waiting: Reorder,
    rate: TokenBucket,
}

/// Live events that arrived ahead of an earlier event of their room, held until it comes
/// or their wait is over.
#[derive(Default)]
struct Reorder {
    rooms: HashMap<RoomId, Waiting>,
}

struct Waiting {
    /// When to stop waiting and fill the gap from the event log.
    until: Instant,
    events: BTreeMap<i64, Arc<Delivery>>,
}

impl Reorder {
    /// Holds `delivery` (it overtook an earlier event); returns whether its room now holds
    /// more than [`REORDER_MAX`], a gap not closing by itself.
    fn hold(&mut self, delivery: Arc<Delivery>, now: Instant) -> bool {
        let waiting = self
            .rooms
            .entry(delivery.room_id)
            .or_insert_with(|| Waiting {
                until: now + REORDER_WAIT,
                events: BTreeMap::new(),
            });
        waiting.events.insert(delivery.seq, delivery);
        waiting.events.len() > REORDER_MAX
    }

    /// The held event of `room_id` that comes right after `last` (the room's last
    /// delivered), if held; held events up to `last` are dropped as delivered.
    fn next_after(&mut self, room_id: RoomId, last: i64) -> Option<Arc<Delivery>> {
        let waiting = self.rooms.get_mut(&room_id)?;
        waiting.events.retain(|&seq, _| seq > last);
        let next = match waiting.events.first_key_value() {
            Some((&seq, _)) if seq == last.saturating_add(1) => waiting.events.pop_first(),
            _ => None,
        };
        if waiting.events.is_empty() {
            self.rooms.remove(&room_id);
        }
        next.map(|(_, delivery)| delivery)
    }

    /// The room whose wait ends first, and when.
    fn next_due(&self) -> Option<(Instant, RoomId)> {
        self.rooms
            .iter()
            .map(|(room_id, waiting)| (waiting.until, *room_id))
            .min()
    }

    fn wait_again(&mut self, room_id: RoomId, now: Instant) {
        if let Some(waiting) = self.rooms.get_mut(&room_id) {
            waiting.until = now + REORDER_WAIT;
        }
    }

    fn forget(&mut self, room_id: RoomId) {
        self.rooms.remove(&room_id);
    }
}

/// How long a live event that overtook an earlier one waits for it before the gap is
/// filled from the event log. Requests publish from their own tasks, on any worker, so a
/// later event often arrives a few milliseconds before an earlier one; waiting costs
/// nothing then, where a replay costs database reads for every recipient.
const REORDER_WAIT: Duration = Duration::from_millis(100);
/// More events than this waiting in one room means the gap is not closing: replay.
const REORDER_MAX: usize = 256;

enum Ending {
    ClientClosed,
    Close(CloseReason),
}

/// How often, at most, deliveries re-check the session (the ping tick always does).
const SESSION_RECHECK: Duration = Duration::from_secs(5);

/// A random duration below `max`, to spread periodic work of many connections.
fn up_to(max: Duration) -> Duration {
    let millis = max.as_millis().max(1);
    Duration::from_millis((uuid::Uuid::new_v4().as_u128() % millis) as u64)
}

/// Close frames carry at most 123 bytes of reason (RFC 6455 section 5.5).
fn close(code: CloseCode, reason: &str) -> Ending {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Ending::Close(CloseReason {
        code,
        description: Some(reason[..end].to_owned()),
    })
}

impl Connection {
    fn new(state: MessagingState, principal: &conclave_auth::Principal, session: Session) -> Self {
        let per_second = f64::from(state.settings.websocket.max_client_frames_per_second.max(1));
        Self {
            state,
            user_id: principal.user.id,
            session_id: principal.session_id,
            // Spread over the re-check interval: connections opened together (a fan-out
            // room, a reconnect storm) would otherwise all re-check at the same moment.
            session_checked: Instant::now()
                .checked_sub(up_to(SESSION_RECHECK))
                .unwrap_or_else(Instant::now),
            session,
            delivered: HashMap::new(),
            waiting: Reorder::default(),
            rate: TokenBucket::new(per_second, per_second * 2.0),
        }
    }

    async fn run(
        mut self,
        mut stream: actix_ws::AggregatedMessageStream,
        resume: BTreeMap<RoomId, i64>,
        registered: (u64, tokio::sync::mpsc::Receiver<Arc<Delivery>>),
    ) {
        let settings = self.state.settings.websocket.clone();
        // Registered before anything is read (by the handshake), so live events committed
        // from then on wait in the queue while the connection catches up.
        let (connection_id, mut queue) = registered;
        let _counted = conclave_metrics::OpenWebSocket::opened();
        let ending = self
            .serve(&mut stream, &mut queue, settings.ping_interval, resume)
            .await;
        self.state.hub.unregister(self.user_id, connection_id);
        if let Ending::Close(reason) = ending {
            let _ = self.session.close(Some(reason)).await;
        }
    }

    async fn serve(
        &mut self,
        stream: &mut actix_ws::AggregatedMessageStream,
        queue: &mut tokio::sync::mpsc::Receiver<Arc<Delivery>>,
        ping_interval: Duration,
        resume: BTreeMap<RoomId, i64>,
    ) -> Ending {
        // Subscribed first, so a revocation during the catch-up below is not missed.
        let mut revocations = self.state.auth.revocations.subscribe();
        let snapshot = match self.send_ready().await {
            Ok(snapshot) => snapshot,
            Err(ending) => return ending,
        };
        for (room_id, seq) in snapshot {
            if !resume.contains_key(&room_id) {
                self.delivered.insert(room_id, seq);
            }
        }
        for (room_id, after) in resume {
            if let Err(ending) = self.replay(room_id, after).await {
                return ending;
            }
        }
        // The first tick at a random point of the first interval, for the same reason as
        // the session re-checks: ticks (each a forced re-check) of connections opened
        // together would otherwise stay in step.
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + up_to(ping_interval),
            ping_interval,
        );
        let mut last_heard = Instant::now();
        loop {
            let next_gap = self.waiting.next_due();
            let gap_due = async move {
                match next_gap {
                    Some((until, room_id)) => {
                        tokio::time::sleep_until(until.into()).await;
                        room_id
                    }
                    None => std::future::pending().await,
                }
            };
            let step = tokio::select! {
                revoked = revocations.recv() => match revoked {
                    Ok(revoked) if revoked.covers(self.user_id, self.session_id) => Err(close(CloseCode::Policy, "session ended")),
                    Ok(_) => Ok(()),
                    // Missed some notices: check the session itself.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.ensure_session(true).await,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => Ok(()),
                },
                delivery = queue.recv() => match delivery {
                    Some(delivery) => self.deliver_live(delivery).await,
                    None => self.overflowed().await,
                },
                frame = stream.recv() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(frame)) => self.on_frame(frame).await,
                        Some(Err(err)) => Err(close(CloseCode::Protocol, &format!("protocol error: {err}"))),
                        None => Err(Ending::ClientClosed),
                    }
                },
                room_id = gap_due => self.fill_gap(room_id).await,
                _ = ticker.tick() => {
                    if last_heard.elapsed() > ping_interval * 3 {
                        Err(close(CloseCode::Away, "no pong"))
                    } else {
                        match self.ensure_session(true).await {
                            Ok(()) => self.session.ping(b"").await.map_err(|_| Ending::ClientClosed),
                            Err(ending) => Err(ending),
                        }
                    }
                },
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    /// The hub dropped this connection's queue: the client fell too far behind, or this
    /// node may have missed other nodes' events (`fanout`). It gets its positions in a
    /// `resync` frame (a close reason is too short to hold them), then
    /// the close, and reconnects with `?resume=`.
    async fn overflowed(&mut self) -> Result<(), Ending> {
        let rooms: BTreeMap<String, i64> = self
            .delivered
            .iter()
            .map(|(room, seq)| (room.to_string(), *seq))
            .collect();
        self.send_json(json!({"type": "resync", "data": {"rooms": rooms}}))
            .await?;
        Err(close(
            CloseCode::Again,
            "resync: reconnect with ?resume= from the resync frame",
        ))
    }

    /// Ends the connection once its session is no longer valid (logout, revocation,
    /// expiry, suspension). `force` checks now; otherwise at most every few seconds.
    async fn ensure_session(&mut self, force: bool) -> Result<(), Ending> {
        if !force && self.session_checked.elapsed() < SESSION_RECHECK {
            return Ok(());
        }
        self.session_checked = Instant::now();
        let (session_id, policy, now) = (
            self.session_id,
            self.state.auth.settings.sessions,
            self.state.auth.clock.now(),
        );
        let valid = self
            .state
            .auth
            .db
            .run(move |conn| conclave_auth::sessions::still_valid(conn, session_id, &policy, now))
            .await;
        match valid {
            Ok(true) => Ok(()),
            Ok(false) => Err(close(CloseCode::Policy, "session ended")),
            Err(err) => {
                tracing::warn!(error = %err, "could not re-check a WebSocket session");
                Err(close(CloseCode::Again, "temporarily unavailable"))
            }
        }
    }

    async fn send_json(&mut self, value: serde_json::Value) -> Result<(), Ending> {
        self.session
            .text(value.to_string())
            .await
            .map_err(|_| Ending::ClientClosed)
    }

    /// Sends the ready frame; returns each room's current event position.
    async fn send_ready(&mut self) -> Result<BTreeMap<RoomId, i64>, Ending> {
        let user_id = self.user_id;
        let rooms = self
            .state
            .auth
            .db
            .run(move |conn| crate::rooms::list_mine(conn, user_id))
            .await;
        let rooms: BTreeMap<RoomId, i64> = match rooms {
            Ok(rooms) => rooms
                .into_iter()
                .map(|room| (room.id, room.last_event_seq))
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err, "could not list rooms for a new WebSocket");
                return Err(close(CloseCode::Again, "temporarily unavailable"));
            }
        };
        self.send_json(json!({"type": "ready", "data": {"rooms": rooms}}))
            .await?;
        Ok(rooms)
    }

    async fn on_frame(&mut self, frame: AggregatedMessage) -> Result<(), Ending> {
        match frame {
            AggregatedMessage::Text(text) => {
                if !self.rate.take() {
                    return Err(close(
                        CloseCode::Policy,
                        "too many frames; slow down and reconnect",
                    ));
                }
                match parse_client_frame(&text) {
                    Ok(ClientFrame::Ping) => self.send_json(json!({"type": "pong"})).await,
                    Ok(ClientFrame::Resume { rooms }) => {
                        self.ensure_session(true).await?;
                        for (room_id, after) in rooms {
                            // The client asks explicitly: resend from there, even what this
                            // connection delivered already.
                            self.replay(room_id, after).await?;
                        }
                        Ok(())
                    }
                    Err(err) => {
                        self.send_error(
                            ErrorCode::MalformedRequest,
                            &format!("unreadable frame: {err}"),
                            None,
                        )
                        .await
                    }
                }
            }
            AggregatedMessage::Binary(_) => {
                self.send_error(
                    ErrorCode::MalformedRequest,
                    "binary frames are not accepted",
                    None,
                )
                .await
            }
            AggregatedMessage::Ping(bytes) => self
                .session
                .pong(&bytes)
                .await
                .map_err(|_| Ending::ClientClosed),
            AggregatedMessage::Pong(_) => Ok(()),
            AggregatedMessage::Close(_) => Err(Ending::ClientClosed),
        }
    }

    async fn send_error(
        &mut self,
        code: ErrorCode,
        message: &str,
        room_id: Option<RoomId>,
    ) -> Result<(), Ending> {
        self.send_json(json!({"type": "error", "room_id": room_id, "data": {"code": code, "message": message}}))
            .await
    }

    /// Sends the room's events after `after` (clamped to the room's last event), oldest
    /// first, if the user is a member; the room's position becomes `after` first.
    async fn replay(&mut self, room_id: RoomId, after: i64) -> Result<(), Ending> {
        let mut position = after.max(0);
        let mut first = true;
        loop {
            let (user_id, keyring, now) = (
                self.user_id,
                Arc::clone(&self.state.keyring),
                self.state.auth.clock.now(),
            );
            let page = self
                .state
                .auth
                .db
                .run(move |conn| {
                    crate::rooms::membership(conn, room_id, user_id)?;
                    let last =
                        room_store::find(conn, room_id)?.map_or(0, |room| room.last_event_seq);
                    let from = position.min(last);
                    Ok::<_, MessagingError>((
                        from,
                        render_after(conn, &keyring, room_id, from, REPLAY_PAGE, user_id, now)?,
                    ))
                })
                .await;
            let (from, page) = match page {
                Ok(page) => page,
                Err(MessagingError::NotFound) => {
                    return self
                        .send_error(ErrorCode::NotFound, "no such conversation", Some(room_id))
                        .await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "replay failed");
                    return self
                        .send_error(
                            ErrorCode::Unavailable,
                            "replay failed; resume again",
                            Some(room_id),
                        )
                        .await;
                }
            };
            if first {
                self.delivered.insert(room_id, from);
                first = false;
            }
            let full = page.len() as i64 == REPLAY_PAGE;
            for delivery in page {
                position = delivery.seq;
                self.send_in_order(&delivery).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn deliver_live(&mut self, delivery: Arc<Delivery>) -> Result<(), Ending> {
        self.ensure_session(false).await?;
        let room_id = delivery.room_id;
        match self.delivered.get(&room_id).copied() {
            // An event committed earlier is still on its way: wait for it a moment
            // (`fill_gap` reads it from the log if it does not come).
            Some(last) if delivery.seq > last.saturating_add(1) => {
                if self.waiting.hold(delivery, Instant::now()) {
                    return self.fill_gap(room_id).await;
                }
                return Ok(());
            }
            Some(_) => {}
            // A room this connection has not heard of: the user just joined. Replay from
            // the join, so events that overtook the join are not lost.
            None => {
                let user_id = self.user_id;
                let joined = self
                    .state
                    .auth
                    .db
                    .run(move |conn| {
                        Ok::<_, MessagingError>(room_store::member(conn, room_id, user_id)?)
                    })
                    .await;
                if let Ok(Some(member)) = joined {
                    self.replay(room_id, member.joined_after_event_seq).await?;
                }
            }
        }
        self.send_live(&delivery).await?;
        self.deliver_waiting(room_id).await
    }

    async fn send_live(&mut self, delivery: &Delivery) -> Result<(), Ending> {
        if self.send_in_order(delivery).await? {
            let latency = delivery.committed_at.until(self.state.auth.clock.now());
            conclave_metrics::delivered(latency);
        }
        Ok(())
    }

    /// Delivers the room's held events that are now next in line.
    async fn deliver_waiting(&mut self, room_id: RoomId) -> Result<(), Ending> {
        loop {
            let last = self.delivered.get(&room_id).copied().unwrap_or(0);
            match self.waiting.next_after(room_id, last) {
                Some(delivery) => self.send_live(&delivery).await?,
                None => return Ok(()),
            }
        }
    }

    /// The earlier event did not come in time (or too many wait): the gap is filled from
    /// the room's log, which has everything committed, the held events included.
    async fn fill_gap(&mut self, room_id: RoomId) -> Result<(), Ending> {
        let before = self.delivered.get(&room_id).copied().unwrap_or(0);
        self.replay(room_id, before).await?;
        let after = self.delivered.get(&room_id).copied().unwrap_or(0);
        self.deliver_waiting(room_id).await?;
        if after > before {
            // Anything still held is past a gap the replay raced: wait for it again.
            self.waiting.wait_again(room_id, Instant::now());
        } else {
            // The log shows this connection nothing newer (no longer a member): what is
            // held is not for it.
            self.waiting.forget(room_id);
        }
        Ok(())
    }

    async fn send_in_order(&mut self, delivery: &Delivery) -> Result<bool, Ending> {
        if self
            .delivered
            .get(&delivery.room_id)
            .is_some_and(|&last| delivery.seq <= last)
        {
            return Ok(false);
        }
        self.session
            .text(delivery.json.clone())
            .await
            .map_err(|_| Ending::ClientClosed)?;
        self.delivered.insert(delivery.room_id, delivery.seq);
        Ok(true)
    }
}

/// A token bucket: `rate` frames per second on average, bursts up to `burst`.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            refilled: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.rate)
            .min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refuses() {
        let mut bucket = TokenBucket::new(1.0, 3.0);
        assert!(bucket.take() && bucket.take() && bucket.take());
        assert!(!bucket.take());
    }

    fn event(room_id: RoomId, seq: i64) -> Arc<Delivery> {
        Arc::new(Delivery {
            room_id,
            seq,
            committed_at: conclave_core::Timestamp::from_micros(0),
            json: format!("{{\"seq\":{seq}}}"),
        })
    }

    #[test]
    fn events_that_overtook_an_earlier_one_are_released_in_order_once_it_is_delivered() {
        let (room, other) = (RoomId::new(), RoomId::new());
        let now = Instant::now();
        let mut held = Reorder::default();
        // Delivered up to 4; 7 and 6 arrive before 5.
        assert!(!held.hold(event(room, 7), now));
        assert!(!held.hold(event(room, 6), now + Duration::from_millis(5)));
        assert!(!held.hold(event(other, 3), now + Duration::from_millis(10)));
        assert!(held.next_after(room, 4).is_none(), "5 has not come");
        assert_eq!(
            held.next_due(),
            Some((now + REORDER_WAIT, room)),
            "the first held sets the wait"
        );
        // 5 is delivered: 6 then 7 follow, and the room holds nothing more.
        assert_eq!(held.next_after(room, 5).map(|d| d.seq), Some(6));
        assert_eq!(held.next_after(room, 6).map(|d| d.seq), Some(7));
        assert!(held.next_after(room, 7).is_none());
        assert_eq!(held.next_due().map(|(_, r)| r), Some(other));
        // A replay delivered past what is held: it is dropped, not sent twice.
        assert!(held.next_after(other, 3).is_none());
        assert!(held.next_due().is_none());
    }

    #[test]
    fn a_gap_that_does_not_close_is_reported_and_can_wait_again_or_be_forgotten() {
        let room = RoomId::new();
        let now = Instant::now();
        let mut held = Reorder::default();
        let overfull = (0..=REORDER_MAX as i64)
            .map(|n| held.hold(event(room, 10 + n), now))
            .collect::<Vec<_>>();
        assert!(overfull[..REORDER_MAX].iter().all(|full| !full));
        assert!(overfull[REORDER_MAX], "one more than the limit");
        let later = now + Duration::from_secs(1);
        held.wait_again(room, later);
        assert_eq!(held.next_due(), Some((later + REORDER_WAIT, room)));
        held.forget(room);
        assert!(held.next_due().is_none());
    }

    #[test]
    fn resume_positions_parse() {
        let (a, b) = (RoomId::new(), RoomId::new());
        let parsed = parse_resume(&format!("{a}:4,{b}:0")).unwrap();
        assert_eq!(parsed[&a], 4);
        assert_eq!(parsed[&b], 0);
        assert!(parse_resume("").unwrap().is_empty());
        assert!(parse_resume("nonsense").is_err());
        assert!(parse_resume(&format!("{a}:x")).is_err());
    }

    #[test]
    fn client_frames_parse_strictly() {
        let room = RoomId::new();
        let frame: ClientFrame = serde_json::from_str(&format!(
            "{{\"type\":\"resume\",\"rooms\":{{\"{room}\":4}}}}"
        ))
        .unwrap();
        assert!(matches!(frame, ClientFrame::Resume { rooms } if rooms[&room] == 4));
        assert!(serde_json::from_str::<ClientFrame>("{\"type\":\"ping\"}").is_ok());
        assert!(serde_json::from_str::<ClientFrame>("{\"type\":\"shout\"}").is_err());
        assert!(
            serde_json::from_str::<ClientFrame>("{\"type\":\"resume\",\"rooms\":{\"x\":1}}")
                .is_err()
        );
        assert!(serde_json::from_str::<ClientFrame>("not json").is_err());
    }
}
