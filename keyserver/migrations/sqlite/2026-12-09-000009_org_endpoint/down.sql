ALTER TABLE orgs DROP COLUMN endpoint_mac;
ALTER TABLE orgs DROP COLUMN endpoint_url;
