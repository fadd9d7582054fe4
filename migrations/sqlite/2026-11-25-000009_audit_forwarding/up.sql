-- How far the audit log has been forwarded to each external destination (a syslog
-- collector), so a restart resends from there instead of losing or repeating it all.
CREATE TABLE audit_forwarding (
    destination TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
