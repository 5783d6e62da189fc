DROP TABLE drop_chunks;
DROP TABLE drops;
ALTER TABLE orgs DROP COLUMN drop_max_days;
