-- The console's searches of the audit log: each filter, within an
-- organisation, newest first, is a walk down one index (a first page of
-- "failed sign-ins" or "everything alice did" reads a page of rows, not the
-- organisation's whole log).
CREATE INDEX audit_org_action ON audit_events (org, action, seq);
CREATE INDEX audit_org_actor ON audit_events (org, actor, seq);
CREATE INDEX audit_org_outcome ON audit_events (org, outcome, seq);
CREATE INDEX audit_org_at ON audit_events (org, at);
-- "Who opened this report": its events by organisation and action (it
-- serves what the report-only index did, so that one goes). All three
-- equalities are in one index, so the plan is right even before the
-- database has statistics (a store just restored or bulk-loaded).
CREATE INDEX audit_report_action ON audit_events (report_id, org, action, seq);
DROP INDEX audit_report;
-- The console's list of an organisation's reports, newest first.
CREATE INDEX data_keys_org_created ON data_keys (org_id, created_at);
