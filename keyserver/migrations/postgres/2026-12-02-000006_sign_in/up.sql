-- Sign-in without a password: e-mailed single-use codes, guests from other
-- organisations, and OpenID Connect single sign-on.

-- One live code per address. The code itself is never stored: code_mac is
-- an HMAC under a key derived from the keyring, over the address, the code
-- and its lifetime, so neither a copy of the database (10^8 codes are
-- quickly tried against a plain hash) nor a write to it yields a code.
CREATE TABLE login_codes (
    email TEXT PRIMARY KEY NOT NULL,
    code_mac BYTEA NOT NULL,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    guest BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    tries INTEGER NOT NULL
);
CREATE INDEX login_codes_expiry ON login_codes (expires_at);

-- Who may sign in as a guest to open reports addressed to them: 'none',
-- 'any', or a comma-separated list of e-mail domains. A value other than
-- 'none' counts only with settings_mac, its seal under the keyring.
ALTER TABLE orgs ADD COLUMN guests TEXT NOT NULL DEFAULT 'none';
ALTER TABLE orgs ADD COLUMN settings_mac BYTEA;

-- An organisation's OpenID Provider. The client secret is encrypted under
-- a key derived from the keyring; the whole row is sealed (state_mac), so
-- that pointing an organisation at another provider takes the keyring.
CREATE TABLE sso_configs (
    org_id BIGINT PRIMARY KEY NOT NULL REFERENCES orgs(id),
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret BYTEA NOT NULL,
    email_claim TEXT NOT NULL,
    allowed_domain TEXT,
    provision TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    state_mac BYTEA NOT NULL
);

-- Sign-ins under way at a provider, by the SHA-256 of their state
-- parameter; each is used once, by whichever server of a pool the
-- provider sends the browser back to.
CREATE TABLE sso_flows (
    state_hash BYTEA PRIMARY KEY NOT NULL,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    device_id TEXT NOT NULL,
    return_to TEXT NOT NULL,
    client_challenge TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    state_mac BYTEA NOT NULL
);
CREATE INDEX sso_flows_expiry ON sso_flows (expires_at);

-- A provider's yes, waiting (a minute at most) to be exchanged for a
-- session by the app or command line that started the sign-in: only it
-- holds the verifier of client_challenge.
CREATE TABLE sso_grants (
    grant_hash BYTEA PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    device_id TEXT NOT NULL,
    client_challenge TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    state_mac BYTEA NOT NULL
);

-- Guests are users of role 'guest'.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'auditor', 'clinician', 'service', 'guest'));
