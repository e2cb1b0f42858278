-- Stream positions. A position orders what the streams deliver, across tables and
-- server processes. On PostgreSQL it is the writing transaction's id times 2^30 plus an
-- ordinal within the transaction, so every position below (the oldest running
-- transaction id) * 2^30 is final: no commit can add a lower one later. On SQLite,
-- whose one writer commits in order, it is a counter (kept in stream_clock).
-- See "Stream positions" in flovyn_server/store/base.py.

ALTER TABLE workflow_events ADD COLUMN pos BIGINT NOT NULL DEFAULT 0;
-- The position of the execution's last event, so that a later append, even by a
-- transaction that began earlier, takes higher ones: an execution's events keep
-- their sequence order in position order.
ALTER TABLE workflow_executions ADD COLUMN stream_pos BIGINT NOT NULL DEFAULT 0;
-- The tenant feed: the position of the execution's creation...
ALTER TABLE workflow_executions ADD COLUMN created_pos BIGINT NOT NULL DEFAULT 0;
-- ...and, one row per transaction and tenant, the executions whose status it changed.
-- (A position column on the executions themselves costs an index entry on every
-- change: measured, a fifth of the throughput on PostgreSQL.)
CREATE TABLE feed_changes (
    tenant_id TEXT NOT NULL,
    pos BIGINT NOT NULL,
    workflow_execution_ids TEXT NOT NULL,  -- a JSON array
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, pos)
);
CREATE INDEX feed_changes_age ON feed_changes (created_at);

-- The task stream, derived from the rows tasks already have.
ALTER TABLE task_executions ADD COLUMN created_pos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_executions ADD COLUMN cancelled_pos BIGINT;
ALTER TABLE task_attempts ADD COLUMN started_pos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_attempts ADD COLUMN finished_pos BIGINT;
ALTER TABLE task_attempts ADD COLUMN retry_at BIGINT;  -- set when the failure scheduled a retry
-- task_logs.seq is the line's position from now on (arrival order, as before).
CREATE INDEX task_logs_tail ON task_logs (task_execution_id, seq);

-- What streams carry that no other table keeps: task progress reports and stream
-- data (token, progress, data, error), kept for FLOVYN_STREAM_RETENTION_S.
CREATE TABLE stream_events (
    pos BIGINT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    workflow_execution_id TEXT,
    task_execution_id TEXT NOT NULL,
    event TEXT NOT NULL,             -- 'task_progress' or 'task_stream'
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX stream_events_workflow ON stream_events (workflow_execution_id, pos);
CREATE INDEX stream_events_task ON stream_events (task_execution_id, pos);
CREATE INDEX stream_events_age ON stream_events (created_at);

-- SQLite only: the end of the block of positions the server may hand out.
CREATE TABLE stream_clock (
    id INTEGER PRIMARY KEY,
    pos BIGINT NOT NULL
);
INSERT INTO stream_clock (id, pos) VALUES (1, 1);  -- 0: rows from before positions
