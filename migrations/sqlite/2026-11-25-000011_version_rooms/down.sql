DROP INDEX messages_retain_until;
CREATE INDEX messages_retain_until ON messages (retain_until)
    WHERE retain_until IS NOT NULL;
DROP INDEX message_versions_room_unknown;
DROP INDEX message_versions_room_epoch;
ALTER TABLE message_versions DROP COLUMN room_id;
