-- A report id names one report of one organisation: the key server refuses
-- a second key for the same (organisation, report id) inside the writing
-- transaction, which every writer serialises on the audit head. This index
-- makes that check and an organisation's report lookups one probe. It is
-- not UNIQUE so that a store holding duplicates from before the rule still
-- migrates; those keys keep working and the rule holds for new ones.
CREATE INDEX data_keys_org_report ON data_keys (org_id, report_id);
