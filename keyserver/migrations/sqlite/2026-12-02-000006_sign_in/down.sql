DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE role = 'guest');
DELETE FROM sso_grants;
DELETE FROM login_codes WHERE guest;
DELETE FROM users WHERE role = 'guest';
CREATE TABLE users_old (
    id INTEGER PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'clinician', 'service')),
    password_hash TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until BIGINT,
    created_at BIGINT NOT NULL,
    state_mac BLOB
);
INSERT INTO users_old SELECT id, org_id, email, role, password_hash, disabled, failed_logins, locked_until, created_at, state_mac FROM users;
DROP TABLE users;
ALTER TABLE users_old RENAME TO users;
DROP TABLE sso_grants;
DROP TABLE sso_flows;
DROP TABLE sso_configs;
ALTER TABLE orgs DROP COLUMN settings_mac;
ALTER TABLE orgs DROP COLUMN guests;
DROP TABLE login_codes;
