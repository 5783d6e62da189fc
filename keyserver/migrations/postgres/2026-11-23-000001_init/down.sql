DROP TABLE audit_head;
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
DROP TABLE key_recipients;
DROP TABLE data_keys;
DROP TABLE sessions;
DROP TABLE users;
DROP TABLE orgs;
