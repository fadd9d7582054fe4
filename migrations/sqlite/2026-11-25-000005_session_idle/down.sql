ALTER TABLE sessions DROP COLUMN idle_timeout_seconds;
