-- Schedules: a workflow or a standalone task started by cron, interval or once.
-- `schedule_type` and `target` are the JSON the API took; `next_run_at` the next slot
-- (NULL: none), claimed FOR UPDATE SKIP LOCKED by the process that fires it, in the
-- transaction that starts its run.
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    description TEXT,
    schedule_type TEXT NOT NULL,
    target TEXT NOT NULL,
    overlap_policy TEXT NOT NULL,
    missed_run_policy TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    next_run_at BIGINT,
    last_run_at BIGINT,
    last_target_id TEXT,
    run_count INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX schedules_list ON schedules (tenant_id, created_at);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled = 1;

-- Every run: started (with what it started), skipped (overlap, missed slots) or failed.
CREATE TABLE schedule_runs (
    id TEXT PRIMARY KEY,
    schedule_id TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    scheduled_at BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT,
    error TEXT
);
CREATE INDEX schedule_runs_list ON schedule_runs (schedule_id, started_at);
