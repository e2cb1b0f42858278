"""Operator and outside actions on a running execution: cancel, retry, signal, promises."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from flovyn_server.domain import (
    TERMINAL_WORKFLOW,
    Conflict,
    EventType,
    InvalidInput,
    not_found,
    now_ms,
)
from flovyn_server.engine.history import Event, append_and_resume, append_events, resume
from flovyn_server.engine.tenants import Tenant
from flovyn_server.engine.wake import status_changed, workflow_key
from flovyn_server.engine.workflows import finish
from flovyn_server.jsonio import dumps
from flovyn_server.models.fields import Uuid
from flovyn_server.models.workflows import (
    CancelAnswer,
    CancelWorkflow,
    PromiseAnswer,
    RejectPromise,
    ResolvePromise,
    RetryAnswer,
    RetryWorkflow,
    SignalAnswer,
    SignalWorkflow,
)
from flovyn_server.store.base import Row, Store, Tx

_UUID = TypeAdapter(Uuid)

EXECUTION_FOR_UPDATE = (
    "SELECT id, tenant_id, kind, queue, status, parent_id, child_name, started_at, "
    "retry_attempts FROM workflow_executions WHERE id = $1 FOR UPDATE"
)


async def _locked(tx: Tx, tenant: Tenant, workflow_id: str) -> Row:
    row = await tx.fetchrow(EXECUTION_FOR_UPDATE, workflow_id)
    if row is None or row["tenant_id"] != tenant.id:
        raise not_found(f"workflow execution {workflow_id}")
    return row


async def cancel_execution(
    tx: Tx, row: Row, reason: str | None, cascade: bool, requested_by: str, now: int
) -> tuple[Literal["CANCELLED", "CANCELLING"], list[str]]:
    """Cancel one non-terminal execution and (with `cascade`) its open descendants.

    Pending tasks and timers are cancelled here; running tasks are flagged so their next
    heartbeat says so. An execution no worker has touched ends CANCELLED at once; one that
    has run is handed back to a worker, whose code sees CancelledError, may clean up, and
    submits CANCELLED.
    """
    events: list[Event] = [
        (EventType.CANCELLATION_REQUESTED, {"reason": reason, "requestedBy": requested_by})
    ]
    pending = await tx.fetch(
        "SELECT id FROM task_executions WHERE workflow_execution_id = $1 AND status = 'PENDING' "
        "ORDER BY created_at, id FOR UPDATE",
        row["id"],
    )
    if pending:  # one statement a task: each task_cancelled has its own stream position
        await tx.executemany(
            "UPDATE task_executions SET status = 'CANCELLED', completed_at = $2, updated_at = $2, "
            f"cancelled_pos = {tx.pos_sql(3)} WHERE id = $1 AND status = 'PENDING'",
            [(t["id"], now, tx.next_pos()) for t in pending],
        )
    events += [(EventType.TASK_CANCELLED, {"taskExecutionId": t["id"]}) for t in pending]
    await tx.execute(
        "UPDATE task_executions SET cancel_requested = 1, updated_at = $2 "
        "WHERE workflow_execution_id = $1 AND status = 'RUNNING'",
        row["id"],
        now,
    )
    timers = await tx.fetch(
        "UPDATE timers SET status = 'CANCELLED' WHERE workflow_execution_id = $1 "
        "AND status = 'PENDING' RETURNING id",
        row["id"],
    )
    events += [(EventType.TIMER_CANCELLED, {"timerId": t["id"]}) for t in timers]
    # The parent's own events go first, so its history reads in the order things happened.
    await append_events(tx, row["id"], events, now)
    cancelled_children: list[str] = []
    if cascade:
        children = await tx.fetch(
            "SELECT id FROM workflow_executions WHERE parent_id = $1 "
            "AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED') ORDER BY created_at FOR UPDATE",
            row["id"],
        )
        for child in children:
            child_row = await tx.fetchrow(EXECUTION_FOR_UPDATE, child["id"])
            assert child_row is not None
            await cancel_execution(tx, child_row, reason, True, f"parent {row['id']}", now)
            cancelled_children.append(child["id"])
    if row["started_at"] is None and row["status"] == "PENDING":
        await finish(
            tx,
            row,
            "CANCELLED",
            now=now,
            events=[(EventType.WORKFLOW_CANCELLED, {"reason": reason})],
        )
        return "CANCELLED", cancelled_children
    await tx.execute("UPDATE workflow_executions SET cancel_requested = 1 WHERE id = $1", row["id"])
    status_changed(tx, row["tenant_id"], row["id"])
    await resume(tx, row["id"], now)
    return "CANCELLING", cancelled_children


class Control:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def cancel(self, tenant: Tenant, workflow_id: str, req: CancelWorkflow) -> CancelAnswer:
        reason, cascade = req.reason, req.cascade_to_children
        async with self.store.transaction() as tx:
            row = await _locked(tx, tenant, workflow_id)
            if row["status"] in TERMINAL_WORKFLOW:
                return {"status": "ALREADY_TERMINAL", "cancelledChildren": []}
            status, children = await cancel_execution(tx, row, reason, cascade, "api", now_ms())
        return {"status": status, "cancelledChildren": children}

    async def retry(self, tenant: Tenant, workflow_id: str, req: RetryWorkflow) -> RetryAnswer:
        note = req.note
        now = now_ms()
        async with self.store.transaction() as tx:
            row = await _locked(tx, tenant, workflow_id)
            if row["status"] != "FAILED":
                raise Conflict(
                    f"only a FAILED execution can be retried; this one is {row['status']}",
                    code="NOT_FAILED",
                )
            attempt = row["retry_attempts"] + 1
            await append_events(
                tx,
                row["id"],
                [(EventType.RETRY_REQUESTED, {"note": note, "retryAttempt": attempt})],
                now,
            )
            await tx.execute(
                "UPDATE workflow_executions SET status = 'PENDING', error = NULL, output = NULL, "
                "completed_at = NULL, worker_id = NULL, retry_attempts = $2, updated_at = $3 "
                "WHERE id = $1",
                row["id"],
                attempt,
                now,
            )
            status_changed(tx, tenant.id, row["id"])
            tx.notify(workflow_key(tenant.id, row["queue"]))
        return {
            "workflowExecutionId": row["id"],
            "status": "PENDING",
            "retryAttempt": attempt,
            "message": f"retry {attempt} requested; the execution replays from its history",
            "success": True,
        }

    async def signal(self, tenant: Tenant, workflow_id: str, req: SignalWorkflow) -> SignalAnswer:
        async with self.store.transaction() as tx:
            row = await _locked(tx, tenant, workflow_id)
            if row["status"] in TERMINAL_WORKFLOW:
                raise Conflict(
                    f"execution is {row['status']} and takes no more signals",
                    code="WORKFLOW_TERMINAL",
                )
            sequence = await append_and_resume(
                tx,
                row["id"],
                [
                    (
                        EventType.SIGNAL_RECEIVED,
                        {"signalName": req.signal_name, "signalValue": req.value},
                    )
                ],
            )
        return {"signalEventSequence": sequence}

    async def resolve_promise(
        self, tenant: Tenant, identifier: str, req: ResolvePromise
    ) -> PromiseAnswer:
        return await self._settle(tenant, identifier, resolve=True, value=req.value, error=None)

    async def reject_promise(
        self, tenant: Tenant, identifier: str, req: RejectPromise
    ) -> PromiseAnswer:
        error = req.error if isinstance(req.error, str) else dumps(req.error)
        return await self._settle(tenant, identifier, resolve=False, value=None, error=error)

    async def _settle(
        self, tenant: Tenant, identifier: str, *, resolve: bool, value: Any, error: str | None
    ) -> PromiseAnswer:
        now = now_ms()
        async with self.store.transaction() as tx:
            promise = await self._find_promise(tx, tenant, identifier)
            if promise["status"] != "PENDING":
                return {"promiseId": promise["id"], "resolved": False, "alreadyResolved": True}
            await tx.execute(
                "UPDATE promises SET status = $2, value = $3, error = $4, settled_at = $5 "
                "WHERE id = $1",
                promise["id"],
                "RESOLVED" if resolve else "REJECTED",
                dumps(value) if resolve else None,
                error,
                now,
            )
            base = {"promiseId": promise["id"], "promiseName": promise["name"]}
            event: Event = (
                (EventType.PROMISE_RESOLVED, {**base, "value": value})
                if resolve
                else (EventType.PROMISE_REJECTED, {**base, "error": error})
            )
            if await append_and_resume(tx, promise["workflow_execution_id"], [event]) is None:
                # Raising rolls the settle back: the promise stays as it was.
                raise Conflict(
                    "the promise's workflow execution has ended", code="WORKFLOW_TERMINAL"
                )
        return {"promiseId": promise["id"], "resolved": True}

    @staticmethod
    async def _find_promise(tx: Tx, tenant: Tenant, identifier: str) -> Row:
        columns = "SELECT id, tenant_id, workflow_execution_id, name, status FROM promises"
        if identifier.startswith("key:"):
            row = await tx.fetchrow(
                f"{columns} WHERE id = (SELECT target_id FROM idempotency_keys WHERE "
                "tenant_id = $1 AND scope = 'promise' AND key = $2) FOR UPDATE",
                tenant.id,
                identifier[4:],
            )
        elif ":" in identifier:
            workflow_id, _, name = identifier.partition(":")
            row = await tx.fetchrow(
                f"{columns} WHERE workflow_execution_id = $1 AND name = $2 FOR UPDATE",
                _uuid(workflow_id, identifier),
                name,
            )
        else:
            row = await tx.fetchrow(
                f"{columns} WHERE id = $1 FOR UPDATE", _uuid(identifier, identifier)
            )
        if row is None or row["tenant_id"] != tenant.id:
            raise not_found(f"promise {identifier!r}")
        return row


def _uuid(value: str, identifier: str) -> str:
    try:
        return _UUID.validate_python(value)
    except ValidationError:
        raise InvalidInput(
            f"promise {identifier!r}: use its UUID, key:<idempotencyKey> or "
            "<workflowExecutionId>:<promiseName>",
            {"parameter": "identifier"},
        ) from None
