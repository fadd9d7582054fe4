DROP INDEX message_versions_room_unknown;
DROP INDEX message_versions_room_epoch;
ALTER TABLE message_versions DROP COLUMN room_id;
