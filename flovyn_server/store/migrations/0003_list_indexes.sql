-- CANCELLING: an execution whose cancellation is requested and not finished. The flag
-- is now cleared when an execution ends, so it marks exactly those, and they are few:
-- this index finds them without reading every open execution, and holds only them.
UPDATE workflow_executions SET cancel_requested = 0
    WHERE cancel_requested = 1 AND status IN ('COMPLETED', 'FAILED', 'CANCELLED');
CREATE INDEX wf_cancelling ON workflow_executions (tenant_id, created_at) WHERE cancel_requested = 1;
-- Every other status is `cancel_requested = 0` (always so for an ended execution): the
-- status index holds only those rows, so a list or count of a status reads it alone.
DROP INDEX wf_list_status;
CREATE INDEX wf_list_status ON workflow_executions (tenant_id, status, created_at) WHERE cancel_requested = 0;
