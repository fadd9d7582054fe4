-- Signed checkpoints of the audit chain: a signature over (seq, hash) so that cutting
-- off the tail of the log is detected too.
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash BLOB NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL,
    signed_at BIGINT NOT NULL
);
