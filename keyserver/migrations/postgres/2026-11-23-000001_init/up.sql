-- All times are UTC milliseconds since the Unix epoch.
CREATE TABLE orgs (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'clinician', 'service')),
    password_hash TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    device_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE data_keys (
    key_id TEXT PRIMARY KEY,
    report_id TEXT NOT NULL,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    creator_id BIGINT NOT NULL REFERENCES users(id),
    kek_version INTEGER NOT NULL,
    wrapped BYTEA NOT NULL,
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
    seq BIGINT PRIMARY KEY,
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
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX audit_key ON audit_events(key_id);
CREATE INDEX audit_report ON audit_events(report_id);
CREATE INDEX audit_org ON audit_events(org, seq);

-- The head of the hash chain; writers lock this row, which serialises
-- sequence numbers across every server sharing the database.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Append-only: see the SQLite migration for why the chain still matters.
CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
