-- Retention policies, legal holds and the sweeper (DESIGN.md: one row, two deadlines).
-- Additive only, so a node running the previous version keeps working during a rollout.

-- When the compliance copy may be destroyed; NULL: keep (no deadline is known yet).
-- Existing messages get the deadline they have with no retention policy (there was
-- none before this migration): when users stopped seeing them, if they did.
ALTER TABLE messages ADD COLUMN retain_until BIGINT;
UPDATE messages SET retain_until = COALESCE(deleted_at, visible_until);
CREATE INDEX messages_retain_until ON messages (retain_until)
    WHERE retain_until IS NOT NULL;
-- Destroying a message nulls the replies to it and checks the attachment it held; both
-- look up by these columns.
CREATE INDEX messages_reply_to ON messages (reply_to_id) WHERE reply_to_id IS NOT NULL;
CREATE INDEX messages_attachment ON messages (attachment_id) WHERE attachment_id IS NOT NULL;
-- Destroying a message also scrubs the metadata of its room events.
CREATE INDEX room_events_message ON room_events (message_id) WHERE message_id IS NOT NULL;

-- The timer worker looks for deadlines not announced yet, every 250 ms. Announced ones
-- stay as long as retention keeps them (years, under a minimum), so its indexes hold
-- only the pending ones; both backends support partial indexes.
DROP INDEX messages_visible_until;
CREATE INDEX messages_visible_until_pending ON messages (visible_until)
    WHERE visible_until IS NOT NULL AND expiry_announced_at IS NULL;
CREATE INDEX messages_retention_cut_pending ON messages (retain_until)
    WHERE retain_until IS NOT NULL AND expiry_announced_at IS NULL AND deleted_at IS NULL;
DROP INDEX message_reads_visible_until;
CREATE INDEX message_reads_visible_until_pending ON message_reads (visible_until)
    WHERE visible_until IS NOT NULL AND announced_at IS NULL;

-- Retention policies by scope: 'org', 'group:<security group id>' or 'room:<room id>'.
CREATE TABLE retention_policies (
    scope TEXT PRIMARY KEY,
    min_days BIGINT,
    max_days BIGINT,
    updated_by TEXT NOT NULL REFERENCES users (id),
    updated_at BIGINT NOT NULL
);

-- Background recomputations of retain_until after a policy change; resumable from
-- `after_message_id` (messages are visited in id order, which is time order).
CREATE TABLE retention_jobs (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done')),
    after_message_id TEXT,
    processed BIGINT NOT NULL DEFAULT 0,
    changed BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX retention_jobs_status ON retention_jobs (status);

-- Legal holds: while an active hold covers a message, nothing destroys it, its versions,
-- reactions, attachment or data key. A hold covers its custodians' messages (sent, and
-- received while a member of the room) and its rooms' messages, within its date range.
CREATE TABLE legal_holds (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    reason TEXT NOT NULL,
    starts_at BIGINT,
    ends_at BIGINT,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    released_at BIGINT,
    released_by TEXT REFERENCES users (id)
);

CREATE TABLE legal_hold_custodians (
    hold_id TEXT NOT NULL REFERENCES legal_holds (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (hold_id, user_id)
);
CREATE INDEX legal_hold_custodians_user ON legal_hold_custodians (user_id);

CREATE TABLE legal_hold_rooms (
    hold_id TEXT NOT NULL REFERENCES legal_holds (id) ON DELETE CASCADE,
    room_id TEXT NOT NULL REFERENCES rooms (id),
    PRIMARY KEY (hold_id, room_id)
);
CREATE INDEX legal_hold_rooms_room ON legal_hold_rooms (room_id);

-- Who was a member of which room when: legal holds on custodians cover what they
-- received, and exports name the recipients at the time.
CREATE TABLE room_membership_periods (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id),
    joined_at BIGINT NOT NULL,
    left_at BIGINT,
    PRIMARY KEY (room_id, user_id, joined_at)
);
CREATE INDEX room_membership_periods_user ON room_membership_periods (user_id);
-- History from the room event log (each join until the next leave), then any current
-- member the log does not show joining.
INSERT INTO room_membership_periods (room_id, user_id, joined_at, left_at)
SELECT j.room_id, json_extract(j.payload, '$.user_id'), j.created_at,
    (SELECT MIN(l.created_at) FROM room_events l
     WHERE l.room_id = j.room_id AND l.kind = 'member.left' AND l.seq > j.seq
       AND json_extract(l.payload, '$.user_id') = json_extract(j.payload, '$.user_id'))
FROM room_events j
WHERE j.kind = 'member.joined'
  AND EXISTS (SELECT 1 FROM users u WHERE u.id = json_extract(j.payload, '$.user_id'));
INSERT INTO room_membership_periods (room_id, user_id, joined_at, left_at)
SELECT m.room_id, m.user_id, m.joined_at, NULL FROM room_members m
WHERE NOT EXISTS (SELECT 1 FROM room_membership_periods p
                  WHERE p.room_id = m.room_id AND p.user_id = m.user_id AND p.left_at IS NULL);

-- Who was in which security group when: a group's retention policy covers what its
-- members sent while they were members, whatever admins change later.
CREATE TABLE security_group_membership_periods (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    joined_at BIGINT NOT NULL,
    left_at BIGINT,
    PRIMARY KEY (group_id, user_id, joined_at)
);
CREATE INDEX security_group_membership_periods_user ON security_group_membership_periods (user_id);
INSERT INTO security_group_membership_periods (group_id, user_id, joined_at, left_at)
SELECT group_id, user_id, added_at, NULL FROM security_group_members;

-- Attachment files whose rows the sweeper destroyed, queued in the same transaction and
-- unlinked after it commits, so a crash between the two never leaves a file behind.
CREATE TABLE attachment_file_deletions (
    storage_path TEXT PRIMARY KEY,
    queued_at BIGINT NOT NULL
);

-- Data keys of epochs the sweeper emptied while they were still in use (today's and
-- yesterday's): crypto-shredded by a later sweep once the epoch is over.
CREATE TABLE key_shred_candidates (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    epoch BIGINT NOT NULL,
    PRIMARY KEY (room_id, epoch)
);

-- One row per sweeper run that found work: progress while it runs, totals after.
CREATE TABLE retention_sweeps (
    id TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    messages_destroyed BIGINT NOT NULL DEFAULT 0,
    attachments_destroyed BIGINT NOT NULL DEFAULT 0,
    keys_shredded BIGINT NOT NULL DEFAULT 0,
    held BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX retention_sweeps_started ON retention_sweeps (started_at);
