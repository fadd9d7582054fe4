//! Conclave's messaging service: rooms and direct conversations ([`rooms`]), messages
//! with encrypted, versioned bodies ([`messages`]), per-room epoch data keys ([`keys`]),
//! attachments encrypted in chunks on disk ([`attachments`]), and realtime delivery
//! ([`realtime`]: the in-process hub, event rendering, and the WebSocket endpoint), and
//! the compliance record of conversations that exports are made from ([`archive`]).
//!
//! Invariants: a user who is not a member of a room gets "not found" for the room and
//! everything in it; no content is stored or logged in plaintext; every change a member
//! can see appends a room event in its own transaction, and is published only after that
//! transaction commits.

pub mod archive;
pub mod attachments;
pub mod error;
pub mod expiry;
pub mod http;
pub mod keys;
pub mod messages;
pub mod realtime;
pub mod rooms;
pub mod send_queue;
pub mod settings;
pub mod wire;

pub use error::MessagingError;
pub use realtime::hub::Hub;
pub use settings::{MessagingSettings, MessagingState};
