-- All times are UTC milliseconds since the Unix epoch.
CREATE TABLE orgs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'clinician', 'service')),
    password_hash TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    device_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT 0
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE data_keys (
    key_id TEXT PRIMARY KEY NOT NULL,
    report_id TEXT NOT NULL,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    creator_id BIGINT NOT NULL REFERENCES users(id),
    kek_version INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX data_keys_report ON data_keys(report_id);
CREATE INDEX data_keys_kek ON data_keys(kek_version);

CREATE TABLE key_recipients (
    key_id TEXT NOT NULL REFERENCES data_keys(key_id),
    email TEXT NOT NULL,
    PRIMARY KEY (key_id, email)
);

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    org TEXT NOT NULL,
    action TEXT NOT NULL,
    key_id TEXT,
    report_id TEXT,
    client_ip TEXT,
    device_id TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX audit_key ON audit_events(key_id);
CREATE INDEX audit_report ON audit_events(report_id);
CREATE INDEX audit_org ON audit_events(org, seq);

-- The head of the hash chain: the last sequence number and its hash.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BLOB NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

-- Append-only: the server never updates or deletes audit rows. Someone with
-- direct database access can drop these triggers; the keyed hash chain is
-- what detects that (`medseal keyserver audit verify`).
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
