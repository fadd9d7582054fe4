-- The idle timeout the governing policy gave the session at login (NULL: the configured one).
ALTER TABLE sessions ADD COLUMN idle_timeout_seconds BIGINT;
