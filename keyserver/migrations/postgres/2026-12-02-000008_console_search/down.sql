DROP INDEX data_keys_org_created;
CREATE INDEX audit_report ON audit_events (report_id);
DROP INDEX audit_report_action;
DROP INDEX audit_org_at;
DROP INDEX audit_org_outcome;
DROP INDEX audit_org_actor;
DROP INDEX audit_org_action;
