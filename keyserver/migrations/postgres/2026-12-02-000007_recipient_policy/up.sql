-- Which e-mail domains an organisation's reports may be addressed to:
-- 'any' (the default), or a comma-separated list of domains. A value other
-- than 'any' counts only with recipients_mac, its seal under the keyring;
-- a value that fails its seal lets no key be created.
ALTER TABLE orgs ADD COLUMN recipient_domains TEXT NOT NULL DEFAULT 'any';
ALTER TABLE orgs ADD COLUMN recipients_mac BYTEA;
