DROP TABLE audit_events;
DROP TABLE login_failures;
DROP TABLE sessions;
DROP TABLE user_roles;
DROP TABLE users;
