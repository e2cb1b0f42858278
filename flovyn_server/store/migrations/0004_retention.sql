-- How long a tenant keeps finished executions (seconds); NULL: the server's default.
ALTER TABLE tenants ADD COLUMN retention_seconds BIGINT;
-- One row per background job that one server process at a time may run: a process
-- runs it holding this row (FOR UPDATE SKIP LOCKED; SQLite has one process anyway).
CREATE TABLE maintenance_locks (
    name TEXT PRIMARY KEY
);
INSERT INTO maintenance_locks (name) VALUES ('retention');
