-- The organisation's receiving endpoint: the base URL of the
-- `medseal endpoint serve` its web app's capture page sends sealed reports
-- to (`org set --endpoint-url`), and whose origin the app's
-- Content-Security-Policy lets the browser connect to. NULL: none.
-- A value counts only with endpoint_mac, its seal under the keyring, so a
-- write to the database cannot point the capture page, or the CSP, at
-- another server; `audit verify` compares it with the last `org.updated`
-- event that set it.
ALTER TABLE orgs ADD COLUMN endpoint_url TEXT;
ALTER TABLE orgs ADD COLUMN endpoint_mac BYTEA;
