-- Ephemeral messages and policies (DESIGN.md: one row, two deadlines). Additive only, so
-- a node running the previous version keeps working while this one rolls out.

-- When users stop seeing the message (its expiration timer), and its burn-on-read timer.
ALTER TABLE messages ADD COLUMN visible_until BIGINT;
ALTER TABLE messages ADD COLUMN burn_after_read_seconds BIGINT;
-- Set once the timer worker has announced the expiry (message.expired).
ALTER TABLE messages ADD COLUMN expiry_announced_at BIGINT;
CREATE INDEX messages_visible_until ON messages (visible_until);

-- Burn-on-read state per recipient: one row per recipient at send; the deadline is set
-- at the recipient's first read.
CREATE TABLE message_reads (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id),
    first_read_at BIGINT,
    visible_until BIGINT,
    announced_at BIGINT,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX message_reads_visible_until ON message_reads (visible_until);

-- Policies by scope: 'org', 'group:<id>' or 'room:<id>', as JSON.
CREATE TABLE policies (
    scope TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
