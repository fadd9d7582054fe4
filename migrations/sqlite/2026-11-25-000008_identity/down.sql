DROP TABLE org_settings;
DROP TABLE oidc_flows;
DROP TABLE user_identities;
ALTER TABLE sessions DROP COLUMN auth_provider;
ALTER TABLE users DROP COLUMN break_glass;
