-- Accounts, roles, sessions, failed-login throttling and the audit log's hash chain.
-- Portable types only (DESIGN.md): ids as UUID text, times as BIGINT microseconds since
-- the epoch (UTC), bytes as BYTEA/BLOB, JSON as TEXT.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    email TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deprovisioned')),
    auth_source TEXT NOT NULL,
    password_hash TEXT,
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'admin', 'compliance_officer', 'auditor')),
    PRIMARY KEY (user_id, role)
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT,
    client_addr TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE login_failures (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);
CREATE INDEX login_failures_subject_time ON login_failures (subject, failed_at);

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    occurred_at BIGINT NOT NULL,
    actor_id TEXT,
    actor_name TEXT NOT NULL,
    action TEXT NOT NULL,
    target_kind TEXT,
    target_id TEXT,
    client_addr TEXT,
    api_path TEXT,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at);
CREATE INDEX audit_events_actor ON audit_events (actor_id);
CREATE INDEX audit_events_action ON audit_events (action);
