DROP TABLE policies;
DROP TABLE message_reads;
DROP INDEX messages_visible_until;
ALTER TABLE messages DROP COLUMN expiry_announced_at;
ALTER TABLE messages DROP COLUMN burn_after_read_seconds;
ALTER TABLE messages DROP COLUMN visible_until;
