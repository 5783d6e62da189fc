DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE role = 'guest');
DELETE FROM sso_grants;
DELETE FROM login_codes WHERE guest;
DELETE FROM users WHERE role = 'guest';
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'auditor', 'clinician', 'service'));
DROP TABLE sso_grants;
DROP TABLE sso_flows;
DROP TABLE sso_configs;
ALTER TABLE orgs DROP COLUMN settings_mac;
ALTER TABLE orgs DROP COLUMN guests;
DROP TABLE login_codes;
