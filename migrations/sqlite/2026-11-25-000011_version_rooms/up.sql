-- Crypto-shredding asks, for a room's data key of one epoch, whether any message version
-- still uses it. Without the room on the version that question walks the room's whole
-- history (a join through messages); with it, one index probe answers.
-- Additive: a node of the previous version inserts versions without a room, and the
-- sweeper fills those in (through the partial index) before it decides on any key.
ALTER TABLE message_versions ADD COLUMN room_id TEXT;
UPDATE message_versions SET room_id =
    (SELECT messages.room_id FROM messages WHERE messages.id = message_versions.message_id);
CREATE INDEX message_versions_room_epoch ON message_versions (room_id, epoch);
CREATE INDEX message_versions_room_unknown ON message_versions (message_id)
    WHERE room_id IS NULL;
-- The sweeper reads due messages a page at a time in (retain_until, id) order, from where
-- the last page stopped: with the id in the index, a page starts at its key rather than
-- walking every entry before it (on PostgreSQL, the dead entries of the rows just
-- destroyed too).
DROP INDEX messages_retain_until;
CREATE INDEX messages_retain_until ON messages (retain_until, id)
    WHERE retain_until IS NOT NULL;
