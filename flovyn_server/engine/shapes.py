"""The one place that turns stored rows into their API shapes (camelCase, RFC 3339)."""

from __future__ import annotations

from typing import Any

from flovyn_server.domain import OPEN_WORKFLOW, WorkflowStatus, iso
from flovyn_server.jsonio import loads
from flovyn_server.models.discovery import Definition, WorkerInfo
from flovyn_server.models.tenants import TenantAnswer
from flovyn_server.models.worker import Activation, TaskItem
from flovyn_server.models.workflows import (
    Attempt,
    Child,
    HistoryEvent,
    LogLine,
    Task,
    Workflow,
    WorkflowSummary,
)
from flovyn_server.store.base import Row


def _json(text: str | None) -> Any:
    return None if text is None else loads(text)


def tenant(row: Row) -> TenantAnswer:
    return {
        "id": row["id"],
        "name": row["name"],
        "slug": row["slug"],
        "tier": row["tier"],
        "region": row["region"],
        "retentionSeconds": row["retention_seconds"],
        "createdAt": iso(row["created_at"]),
    }


WORKFLOW_COLUMNS = (
    "id, tenant_id, kind, queue, status, input, output, error, current_sequence, "
    "workflow_version, parent_id, child_name, worker_id, retry_attempts, metadata, cancel_requested, "
    "created_at, started_at, completed_at, updated_at"
)
SUMMARY_COLUMNS = (
    "id, kind, queue, status, error, parent_id, worker_id, retry_attempts, current_sequence, "
    "cancel_requested, "
    "created_at, started_at, completed_at, updated_at"
)


def workflow_status(row: Row) -> WorkflowStatus:
    """The stored status, or CANCELLING while a requested cancellation is not finished."""
    status = WorkflowStatus(row["status"])
    return (
        WorkflowStatus.CANCELLING if row["cancel_requested"] and status in OPEN_WORKFLOW else status
    )


def workflow_summary(row: Row) -> WorkflowSummary:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "queue": row["queue"],
        "status": workflow_status(row),
        "error": row["error"],
        "parentWorkflowExecutionId": row["parent_id"],
        "workerId": row["worker_id"],
        "retryAttempts": row["retry_attempts"],
        "currentSequence": row["current_sequence"],
        "createdAt": iso(row["created_at"]),
        "startedAt": iso(row["started_at"]),
        "completedAt": iso(row["completed_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def workflow(row: Row) -> Workflow:
    return {
        "id": row["id"],
        "tenantId": row["tenant_id"],
        "kind": row["kind"],
        "queue": row["queue"],
        "status": workflow_status(row),
        "input": _json(row["input"]),
        "output": _json(row["output"]),
        "error": row["error"],
        "currentSequence": row["current_sequence"],
        "workflowVersion": row["workflow_version"],
        "parentWorkflowExecutionId": row["parent_id"],
        "childExecutionName": row["child_name"],
        "workerId": row["worker_id"],
        "retryAttempts": row["retry_attempts"],
        "metadata": _json(row["metadata"]) or {},
        "createdAt": iso(row["created_at"]),
        "startedAt": iso(row["started_at"]),
        "completedAt": iso(row["completed_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


# What an activation needs of its execution row (a claim or an eager handover returns them).
ACTIVATION_COLUMNS = "id, kind, queue, input, retry_attempts, parent_id, activation_id"


def activation(row: Row, events: list[HistoryEvent]) -> Activation:
    """A claimed execution as the worker protocol hands it out, with its whole history."""
    return {
        "workflowExecutionId": row["id"],
        "activationId": row["activation_id"],
        "kind": row["kind"],
        "queue": row["queue"],
        "input": _json(row["input"]),
        "retryAttempts": row["retry_attempts"],
        "parentWorkflowExecutionId": row["parent_id"],
        "events": events,
    }


def event(row: Row) -> HistoryEvent:
    return {
        "sequence": row["sequence"],
        "eventType": row["event_type"],
        "timestamp": iso(row["created_at"]),
        "data": loads(row["data"]),
    }


TASK_COLUMNS = (
    "id, kind, status, queue, workflow_execution_id, execution_count, max_retries, progress, "
    "progress_details, input, output, error, worker_id, created_at, started_at, completed_at, "
    "retry_at, metadata, timeout_ms"
)


def task(row: Row) -> Task:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "status": row["status"],
        "queue": row["queue"],
        "workflowExecutionId": row["workflow_execution_id"],
        "executionCount": row["execution_count"],
        "maxRetries": row["max_retries"],
        "progress": row["progress"],
        "progressDetails": row["progress_details"],
        "input": _json(row["input"]),
        "output": _json(row["output"]),
        "error": row["error"],
        "workerId": row["worker_id"],
        "createdAt": iso(row["created_at"]),
        "startedAt": iso(row["started_at"]),
        "completedAt": iso(row["completed_at"]),
        # retryAt only means something while a retry is pending
        "retryAt": iso(row["retry_at"])
        if row["status"] == "PENDING" and row["execution_count"]
        else None,
        "timeoutMs": row["timeout_ms"],
        "metadata": _json(row["metadata"]) or {},
    }


def attempt(row: Row) -> Attempt:
    finished = row["finished_at"]
    return {
        "attempt": row["attempt"],
        "startedAt": iso(row["started_at"]),
        "finishedAt": iso(finished),
        "durationMs": None if finished is None else finished - row["started_at"],
        "status": row["status"],
        "output": _json(row["output"]),
        "error": row["error"],
        "workerId": row["worker_id"],
    }


def log(row: Row) -> LogLine:
    return {
        "id": row["id"],
        "level": row["level"],
        "message": row["message"],
        "timestamp": iso(row["ts"]),
        "attempt": row["attempt"],
    }


def worker(row: Row) -> WorkerInfo:
    return {
        "id": row["id"],
        "name": row["name"],
        "type": row["type"],
        "status": row["status"],
        "version": row["version"],
        "hostName": row["host_name"],
        "processId": row["process_id"],
        "queues": loads(row["queues"]),
        "lastHeartbeatAt": iso(row["last_heartbeat_at"]),
        "registeredAt": iso(row["registered_at"]),
    }


def child(row: Row) -> Child:
    return {
        "childWorkflowExecutionId": row["id"],
        "childExecutionName": row["child_name"],
        "kind": row["kind"],
        "status": workflow_status(row),
        "createdAt": iso(row["created_at"]),
        "completedAt": iso(row["completed_at"]),
    }


def task_item(row: Row) -> TaskItem:
    """A claimed task as the worker protocol hands it out."""
    return {
        "taskExecutionId": row["id"],
        "kind": row["kind"],
        "input": _json(row["input"]),
        "attempt": row["execution_count"],
        "workflowExecutionId": row["workflow_execution_id"],
        "queue": row["queue"],
        "timeoutMs": row["timeout_ms"],
    }


def definition(row: Row, category: str, workers: int) -> Definition:
    """A registered kind with the number of ONLINE workers that run it."""
    spec = loads(row["spec"])
    shaped: Definition = {
        "kind": row["kind"],
        "name": spec.get("name") or row["kind"],
        "description": spec.get("description"),
        "tags": spec.get("tags") or [],
        "availabilityStatus": "AVAILABLE" if workers else "UNAVAILABLE",
        "workerCount": workers,
        "inputSchema": spec.get("inputSchema"),
        "outputSchema": spec.get("outputSchema"),
        "firstSeenAt": iso(row["first_seen_at"]),
        "lastRegisteredAt": iso(row["last_registered_at"]),
    }
    if category == "workflow":
        shaped["timeoutSeconds"] = spec.get("timeoutSeconds")
        shaped["cancellable"] = spec.get("cancellable", True)
        shaped["latestVersion"] = spec.get("version")
    else:
        shaped["retryPolicy"] = spec.get("retryPolicy")
        shaped["timeoutMs"] = spec.get("timeoutMs")
    return shaped
