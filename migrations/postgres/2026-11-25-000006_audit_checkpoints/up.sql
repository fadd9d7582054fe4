-- Signed checkpoints of the audit chain: a signature over (seq, hash) so that cutting
-- off the tail of the log is detected too.
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL,
    key_id TEXT NOT NULL,
    signature BYTEA NOT NULL,
    signed_at BIGINT NOT NULL
);
