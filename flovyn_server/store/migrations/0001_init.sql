-- Portable DDL: the same text runs on SQLite and PostgreSQL. Times are epoch
-- milliseconds (BIGINT), JSON is TEXT, flags are INTEGER 0/1, ids are UUID strings.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    tier TEXT NOT NULL,
    region TEXT,
    created_at BIGINT NOT NULL
);

-- Tenant API keys (kind 'api') and worker tokens (kind 'worker'), stored as SHA-256.
CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    display_name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    version TEXT,
    host_name TEXT,
    process_id BIGINT,
    queues TEXT NOT NULL,
    workflow_kinds TEXT NOT NULL,
    task_kinds TEXT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    registered_at BIGINT NOT NULL
);
CREATE INDEX workers_tenant ON workers (tenant_id, registered_at);
CREATE INDEX workers_liveness ON workers (status, last_heartbeat_at);

CREATE TABLE definitions (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    category TEXT NOT NULL,          -- 'workflow' or 'task'
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,              -- the latest registration (name, description, retry policy, schemas)
    first_seen_at BIGINT NOT NULL,
    last_registered_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, category, kind)
);

CREATE TABLE workflow_executions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    current_sequence INTEGER NOT NULL DEFAULT 0,
    workflow_version TEXT,
    parent_id TEXT,
    child_name TEXT,
    worker_id TEXT,
    activation_id INTEGER NOT NULL DEFAULT 0,
    -- set when an unblocking event arrives while a worker holds the execution
    resume_requested INTEGER NOT NULL DEFAULT 0,
    -- cancellation requested, not yet finished: the API shows the status CANCELLING
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    retry_attempts INTEGER NOT NULL DEFAULT 0,
    metadata TEXT,
    idempotency_key TEXT,
    available_at BIGINT NOT NULL,    -- created_at shifted by prioritySeconds; claim order
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX wf_claim ON workflow_executions (tenant_id, queue, available_at) WHERE status = 'PENDING';
CREATE INDEX wf_list ON workflow_executions (tenant_id, created_at);
CREATE INDEX wf_list_status ON workflow_executions (tenant_id, status, created_at);
CREATE INDEX wf_list_kind ON workflow_executions (tenant_id, kind, created_at);
CREATE INDEX wf_list_queue ON workflow_executions (tenant_id, queue, created_at);
CREATE INDEX wf_parent ON workflow_executions (parent_id, created_at);
CREATE INDEX wf_worker ON workflow_executions (worker_id) WHERE status = 'RUNNING';

CREATE TABLE workflow_events (
    workflow_execution_id TEXT NOT NULL REFERENCES workflow_executions(id),
    sequence INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_execution_id, sequence)
);

CREATE TABLE workflow_state (
    workflow_execution_id TEXT NOT NULL REFERENCES workflow_executions(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workflow_execution_id, key)
);

CREATE TABLE task_executions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    workflow_execution_id TEXT REFERENCES workflow_executions(id),
    kind TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    execution_count INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    retry_initial_ms BIGINT NOT NULL,
    retry_coefficient DOUBLE PRECISION NOT NULL,
    retry_max_ms BIGINT NOT NULL,
    timeout_ms BIGINT,
    progress DOUBLE PRECISION,
    progress_details TEXT,
    worker_id TEXT,
    metadata TEXT,
    idempotency_key TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    retry_at BIGINT NOT NULL,        -- not dispatched before this
    attempt_deadline BIGINT,         -- running attempt times out after this (task timeout)
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX task_claim ON task_executions (tenant_id, queue, retry_at) WHERE status = 'PENDING';
CREATE INDEX task_by_workflow ON task_executions (workflow_execution_id, created_at);
CREATE INDEX task_kind ON task_executions (tenant_id, kind, status);
CREATE INDEX task_list ON task_executions (tenant_id, created_at) WHERE workflow_execution_id IS NULL;
CREATE INDEX task_list_status ON task_executions (tenant_id, status, created_at) WHERE workflow_execution_id IS NULL;
CREATE INDEX task_running ON task_executions (attempt_deadline) WHERE status = 'RUNNING';
CREATE INDEX task_worker ON task_executions (worker_id) WHERE status = 'RUNNING';
CREATE INDEX task_retry_due ON task_executions (retry_at) WHERE status = 'PENDING';

CREATE TABLE task_attempts (
    task_execution_id TEXT NOT NULL REFERENCES task_executions(id),
    attempt INTEGER NOT NULL,
    worker_id TEXT,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (task_execution_id, attempt)
);

CREATE TABLE task_logs (
    id TEXT PRIMARY KEY,
    task_execution_id TEXT NOT NULL REFERENCES task_executions(id),
    attempt INTEGER NOT NULL,
    level TEXT NOT NULL,
    level_rank INTEGER NOT NULL,
    message TEXT NOT NULL,
    ts BIGINT NOT NULL,
    seq BIGINT NOT NULL              -- arrival order, for stable paging
);
CREATE INDEX task_logs_by_task ON task_logs (task_execution_id, ts, seq);

CREATE TABLE idempotency_keys (
    tenant_id TEXT NOT NULL,
    scope TEXT NOT NULL,             -- 'workflow', 'task' or 'promise'
    key TEXT NOT NULL,
    target_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, scope, key)
);

CREATE TABLE timers (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    workflow_execution_id TEXT NOT NULL REFERENCES workflow_executions(id),
    fire_at BIGINT NOT NULL,
    status TEXT NOT NULL             -- 'PENDING', 'FIRED', 'CANCELLED'
);
CREATE INDEX timers_due ON timers (fire_at) WHERE status = 'PENDING';
CREATE INDEX timers_by_workflow ON timers (workflow_execution_id);

CREATE TABLE promises (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    workflow_execution_id TEXT NOT NULL REFERENCES workflow_executions(id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,            -- 'PENDING', 'RESOLVED', 'REJECTED', 'TIMEOUT'
    value TEXT,
    error TEXT,
    timeout_at BIGINT,
    created_at BIGINT NOT NULL,
    settled_at BIGINT,
    UNIQUE (workflow_execution_id, name)
);
CREATE INDEX promises_due ON promises (timeout_at) WHERE status = 'PENDING';
