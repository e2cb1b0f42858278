-- A kind and a status together (`?kind=order&status=RUNNING`, the dashboard's filter
-- bar with a kind chosen): with only the kind's index, finding a rare status among a
-- common kind's rows read tens of thousands of them. Like the status index, it holds
-- every row but those being cancelled, which have their own.
CREATE INDEX wf_list_kind_status ON workflow_executions (tenant_id, kind, status, created_at) WHERE cancel_requested = 0;
-- Those being cancelled, by kind: few rows, but without it SQLite walked a kind's whole
-- range to find them (`?kind=X&status=CANCELLING`, and the counts of a kind).
CREATE INDEX wf_cancelling_kind ON workflow_executions (tenant_id, kind, created_at) WHERE cancel_requested = 1;
