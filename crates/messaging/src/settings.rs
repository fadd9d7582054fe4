//! Messaging limits and the shared state handlers receive.

use crate::realtime::hub::Hub;
use crate::rooms::RoomLimits;
use conclave_auth::AuthState;
use conclave_core::{RateLimiter, UserId};
use conclave_crypto::Keyring;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct MessagingSettings {
    /// Most members a room may hold (Wickr's rooms hold 500).
    pub max_room_members: u32,
    /// Largest message text in bytes of UTF-8.
    pub max_message_bytes: usize,
    /// Largest attachment in bytes.
    pub max_attachment_bytes: u64,
    /// Most rooms and direct conversations a user may be a member of.
    pub max_rooms_per_user: u32,
    /// Messages a user may send a minute, in bursts of as many (per node).
    pub max_sends_per_minute: u32,
    /// Where encrypted attachment files live.
    pub attachments_dir: PathBuf,
    pub websocket: WebSocketSettings,
}

#[derive(Clone, Debug)]
pub struct WebSocketSettings {
    /// Events queued for one connection before it counts as a slow consumer and is
    /// disconnected with a resume hint.
    pub queue_len: usize,
    /// Largest frame a client may send.
    pub max_frame_bytes: usize,
    /// Frames per second a client may send (burst twice that).
    pub max_client_frames_per_second: u32,
    /// How often the server pings; a connection silent for three intervals is closed.
    pub ping_interval: Duration,
    /// WebSockets one user may hold open on this node.
    pub max_per_user: usize,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            queue_len: 1024,
            max_frame_bytes: 64 * 1024,
            max_client_frames_per_second: 20,
            ping_interval: Duration::from_secs(20),
            max_per_user: 16,
        }
    }
}

impl MessagingSettings {
    pub fn room_limits(&self) -> RoomLimits {
        RoomLimits {
            max_members: self.max_room_members,
            max_rooms_per_user: self.max_rooms_per_user,
        }
    }
}

/// What messaging handlers need.
#[derive(Clone, Debug)]
pub struct MessagingState {
    pub auth: AuthState,
    pub keyring: Arc<Keyring>,
    pub settings: Arc<MessagingSettings>,
    pub hub: Hub,
    /// Sends per user on this node (`max_sends_per_minute`).
    pub send_limiter: RateLimiter<UserId>,
    /// Where sends wait to be stored together (group commit).
    pub sends: crate::send_queue::SendQueue,
}

impl MessagingState {
    /// Whether other nodes may share the database (PostgreSQL), so realtime events are
    /// announced to them; on SQLite this node is the only one.
    pub fn cross_node(&self) -> bool {
        matches!(
            self.auth.db.backend(),
            conclave_store::Backend::Postgres { .. }
        )
    }
}
