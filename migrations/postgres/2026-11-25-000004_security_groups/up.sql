-- Security groups: each user is governed by exactly one. Among the groups a user is in,
-- the one with the lowest precedence wins (ties: the earliest created); a user in none
-- is governed by the default group. A group's policy overrides are stored in `policies`
-- under the scope 'group:<id>'.
CREATE TABLE security_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    precedence BIGINT NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE security_group_members (
    group_id TEXT NOT NULL REFERENCES security_groups (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    -- 'manual' (an admin) or 'directory' (the identity provider's group mapping).
    source TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX security_group_members_user ON security_group_members (user_id);

INSERT INTO security_groups (id, name, precedence, is_default, created_at, updated_at)
VALUES ('00000000-0000-7000-8000-000000000000', 'Default', 2147483647, TRUE, 0, 0);
