ALTER TABLE orgs DROP COLUMN recipients_mac;
ALTER TABLE orgs DROP COLUMN recipient_domains;
