-- Standalone tasks listed by queue or by kind (`GET P/tasks?queue=`, `?kind=`), newest
-- first, as workflow executions are: only tasks without a workflow are in them.
CREATE INDEX task_list_queue ON task_executions (tenant_id, queue, created_at) WHERE workflow_execution_id IS NULL;
CREATE INDEX task_list_kind ON task_executions (tenant_id, kind, created_at) WHERE workflow_execution_id IS NULL;
-- A kind with a status (`?kind=X&status=PENDING`): without it, the kind's index read
-- tens of thousands of rows to find a rare status at a million tasks (23 and 18 ms).
CREATE INDEX task_list_kind_status ON task_executions (tenant_id, kind, status, created_at) WHERE workflow_execution_id IS NULL;
