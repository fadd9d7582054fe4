-- Single sign-on (OpenID Connect, LDAP), directory sync, and local-login control.
-- Portable types only (DESIGN.md).

-- Local accounts that may still log in with a password when local login is disabled
-- for everyone else. On upgrade, the existing local admins are the break-glass ones.
ALTER TABLE users ADD COLUMN break_glass BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE users SET break_glass = TRUE
WHERE auth_source = 'local' AND id IN (SELECT user_id FROM user_roles WHERE role = 'admin');

-- How a session was opened: NULL for a local password, else 'ldap' or 'oidc:<provider>'
-- (logout uses it to send the browser to the provider's end-session endpoint).
ALTER TABLE sessions ADD COLUMN auth_provider TEXT;

-- The account an external identity maps to. `subject` is stable at the provider (the
-- OIDC `sub`, the LDAP entryUUID/objectGUID), so a rename there never makes a second
-- account. `external_name` is the DN or preferred username, `groups` the JSON array of
-- the provider's groups last seen (for the policy service and for audits).
CREATE TABLE user_identities (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    external_name TEXT NOT NULL,
    groups TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

-- OpenID Connect sign-ins in progress, shared by every node. `id` is the SHA-256 (hex)
-- of the `state` parameter; `binding_hash` the SHA-256 of the secret that binds the flow
-- to the browser (a cookie) or to the API client (its flow secret). A flow is used once.
CREATE TABLE oidc_flows (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    binding_hash BYTEA NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('browser', 'token')),
    return_to TEXT,
    completed_user_id TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_flows_expires_at ON oidc_flows (expires_at);

-- Organisation-wide settings changed at run time by admins (audited), by name.
CREATE TABLE org_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
