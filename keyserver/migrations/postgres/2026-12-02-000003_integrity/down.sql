DROP TABLE audit_checkpoints;
ALTER TABLE audit_head DROP COLUMN state_bound;
ALTER TABLE audit_head DROP COLUMN frontier;
ALTER TABLE audit_head DROP COLUMN kek_current;
ALTER TABLE sessions DROP COLUMN state_mac;
ALTER TABLE users DROP COLUMN state_mac;
ALTER TABLE data_keys DROP COLUMN state_mac;
