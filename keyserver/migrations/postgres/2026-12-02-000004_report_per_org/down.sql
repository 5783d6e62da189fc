DROP INDEX data_keys_org_report;
