-- Rooms and direct conversations, membership, messages with encrypted versions, per-room
-- per-epoch data keys, reactions, attachments, and the per-room event log that realtime
-- clients resume from. No message content is stored in plaintext.

CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('direct', 'room')),
    name TEXT,
    topic TEXT,
    -- For direct conversations: the two user ids, sorted, so a pair has exactly one.
    direct_key TEXT UNIQUE,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_message_seq BIGINT NOT NULL DEFAULT 0,
    last_event_seq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE room_members (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL CHECK (role IN ('owner', 'moderator', 'member')),
    joined_at BIGINT NOT NULL,
    -- The room's event sequence number just before this member's member.joined event:
    -- a realtime connection that first hears of the room replays from here.
    joined_after_event_seq BIGINT NOT NULL DEFAULT 0,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);

CREATE TABLE room_keys (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    epoch BIGINT NOT NULL,
    master_key_id TEXT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, epoch)
);
CREATE INDEX room_keys_master_key ON room_keys (master_key_id);

CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    uploader_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    storage_path TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX attachments_room ON attachments (room_id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    sender_id TEXT NOT NULL REFERENCES users (id),
    reply_to_id TEXT REFERENCES messages (id),
    attachment_id TEXT REFERENCES attachments (id),
    current_version BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    edited_at BIGINT,
    deleted_at BIGINT,
    deleted_by TEXT,
    UNIQUE (room_id, seq),
    UNIQUE (room_id, sender_id, idempotency_key)
);

CREATE TABLE message_versions (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    ciphertext BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, version)
);

CREATE TABLE reactions (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id),
    emoji TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);

CREATE TABLE room_events (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    message_id TEXT,
    actor_id TEXT,
    -- Non-content metadata only (user ids, roles, emoji, sequence numbers).
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, seq)
);
