//! Helpers the messaging integration tests share: a fixed clock origin, users, rooms,
//! message inputs, and the service state with a temporary attachments directory.
#![allow(dead_code)] // each test binary uses its own subset

use conclave_core::{IdempotencyKey, MessageText, RoomName, Timestamp, Topic, UserId};
use conclave_crypto::Keyring;
use conclave_messaging::messages::NewMessageInput;
use conclave_messaging::settings::WebSocketSettings;
use conclave_messaging::{Hub, MessagingSettings, MessagingState, rooms};
use conclave_store::{Db, DbConnection};
use std::sync::Arc;

pub fn t0() -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000)
}

pub fn user(conn: &mut DbConnection, name: &str) -> UserId {
    conclave_testkit::fixtures::user(conn, name, t0())
}

/// Alice, alone in a room of her own.
pub fn alice_alone(db: &Db) -> (UserId, conclave_core::RoomId) {
    let mut conn = db.conn().unwrap();
    let alice = user(&mut conn, "alice");
    (alice, room(&mut conn, alice, &[]))
}

pub fn room(conn: &mut DbConnection, owner: UserId, members: &[UserId]) -> conclave_core::RoomId {
    let (detail, _) = rooms::create_room(
        conn,
        t0(),
        owner,
        RoomName::parse("Ops").unwrap(),
        Topic::parse("").unwrap(),
        members.to_vec(),
        500,
    )
    .unwrap();
    detail.room.id
}

pub fn input(text: &str, key: &str) -> NewMessageInput {
    NewMessageInput {
        text: MessageText::parse(text, 16 * 1024).unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        reply_to_id: None,
        attachment_id: None,
        expires_in: None,
        burn_after_read: None,
    }
}

pub fn state(db: &Db, keyring: Keyring, dir: &std::path::Path) -> MessagingState {
    let (keyring, hub) = (Arc::new(keyring), Hub::default());
    MessagingState {
        auth: conclave_auth::AuthState {
            db: db.clone(),
            clock: Arc::new(conclave_core::ManualClock::starting_at(t0())),
            settings: conclave_auth::AuthSettings {
                sessions: conclave_core::SessionPolicy {
                    absolute_lifetime: std::time::Duration::from_secs(3600),
                    idle_timeout: std::time::Duration::from_secs(600),
                },
                throttle: conclave_core::LoginThrottle {
                    max_failures_per_account: 5,
                    max_failures_per_address: 20,
                    window: std::time::Duration::from_secs(60),
                },
                secure_cookies: true,
                account_policy: None,
                login_rate: conclave_auth::LoginRate::unlimited(),
            },
            revocations: conclave_auth::Revocations::default(),
        },
        keyring: Arc::clone(&keyring),
        settings: Arc::new(MessagingSettings {
            max_room_members: 500,
            max_message_bytes: 16 * 1024,
            max_attachment_bytes: 1024 * 1024,
            attachments_dir: dir.to_path_buf(),
            max_rooms_per_user: 1000,
            max_sends_per_minute: 1_000_000,
            websocket: WebSocketSettings::default(),
        }),
        sends: conclave_messaging::send_queue::SendQueue::start(db.clone(), keyring, &hub),
        hub,
        send_limiter: conclave_core::RateLimiter::new(1_000_000),
    }
}

/// Uploads `bytes` as a text file `name`, by `uploader` to `room_id`, at t0 (blocking:
/// for tests that are not inside a runtime).
pub fn upload_text(
    state: &MessagingState,
    room_id: conclave_core::RoomId,
    uploader: UserId,
    name: &str,
    bytes: &'static [u8],
) -> conclave_messaging::wire::AttachmentView {
    let upload = conclave_messaging::attachments::Upload {
        room_id,
        uploader,
        name: name.into(),
        content_type: "text/plain".into(),
        declared_len: None,
    };
    let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
        actix_web::web::Bytes::from_static(bytes),
    )]);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(conclave_messaging::attachments::upload(
            state,
            t0(),
            upload,
            body,
        ))
        .unwrap()
}
