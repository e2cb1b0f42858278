"""Workflow executions: trigger, read, and what happens when one ends."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from flovyn_server import metrics
from flovyn_server.domain import (
    EventType,
    InvalidInput,
    WorkflowStatus,
    epoch_ms,
    not_found,
    now_ms,
    parse_ttl_ms,
)
from flovyn_server.engine import shapes
from flovyn_server.engine.group_commit import GroupCommit
from flovyn_server.engine.history import (
    INSERT_FIRST_EVENT,
    Event,
    append_and_resume,
    insert_events,
    reserve_positions,
)
from flovyn_server.engine.idempotency import claim_key
from flovyn_server.engine.paging import Filters, Order, count, page
from flovyn_server.engine.tenants import Tenant
from flovyn_server.engine.wake import status_changed, workflow_key
from flovyn_server.jsonio import dumps, loads
from flovyn_server.models.workflows import (
    ChildList,
    CountWorkflows,
    EventList,
    ListWorkflows,
    StateAnswer,
    TriggerWorkflow,
    Workflow,
    WorkflowCounts,
    WorkflowList,
)
from flovyn_server.store.base import Row, Store, Tx

WORKFLOW_ORDER = Order("workflows", ("created_at", "id"))  # newest first


def _status_filter(status: WorkflowStatus) -> tuple[str, list[Any]]:
    """The WHERE clause of one status and its values. CANCELLING is derived: an open
    status with `cancel_requested`, which is cleared when an execution ends. So every
    other status is `cancel_requested = 0`, as the status index is (see migration 0003)."""
    if status == WorkflowStatus.CANCELLING:
        return "cancel_requested = 1", []
    return "(status = ? AND cancel_requested = 0)", [status.value]


async def create_execution(
    tx: Tx,
    tenant_id: str,
    *,
    execution_id: str,
    kind: str,
    queue: str,
    input: Any,
    now: int,
    priority_seconds: int = 0,
    version: str | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
    parent_id: str | None = None,
    child_name: str | None = None,
) -> bool:
    """Insert a PENDING execution with its WORKFLOW_STARTED event; False if the id exists."""
    pos = tx.next_pos()
    inserted = await tx.execute(
        "INSERT INTO workflow_executions (id, tenant_id, kind, queue, status, input, "
        "current_sequence, workflow_version, parent_id, child_name, metadata, idempotency_key, "
        "available_at, created_at, updated_at, stream_pos, created_pos) "
        "VALUES ($1, $2, $3, $4, 'PENDING', $5, 1, $6, $7, $8, $9, $10, $11, $12, $12, "
        f"{tx.pos_sql(13)}, {tx.pos_sql(13)}) "
        "ON CONFLICT (id) DO NOTHING",
        execution_id,
        tenant_id,
        kind,
        queue,
        dumps(input),
        version,
        parent_id,
        child_name,
        dumps(metadata or {}),
        idempotency_key,
        now - priority_seconds * 1000,
        now,
        pos,
    )
    if not inserted:
        return False
    tx.write(  # at the execution's own position (on PostgreSQL it is known in SQL only)
        INSERT_FIRST_EVENT.format(pos=tx.pos_sql(6)),
        execution_id,
        1,
        EventType.WORKFLOW_STARTED.value,
        dumps({"input": input}),
        now,
        pos,
    )
    tx.notify(workflow_key(tenant_id, queue))
    status_changed(tx, tenant_id, execution_id)
    tx.on_commit(metrics.labelled(metrics.WORKFLOWS, "triggered").inc)
    return True


async def finish(
    tx: Tx,
    row: dict[str, Any],
    status: str,
    *,
    output: Any = None,
    error: str | None = None,
    now: int,
    events: Sequence[Event] = (),
) -> int:
    """Mark an execution terminal with its last `events`, and tell its parent.

    Returns the execution's last sequence. Its pending timers are left alone: one that
    fires into a COMPLETED or CANCELLED execution appends nothing, and a FAILED one
    needs it to fire if it is retried.
    """
    positions, first = reserve_positions(tx, len(events), 7)
    row_after = await tx.fetchrow(
        "UPDATE workflow_executions SET status = $2, output = $3, error = $4, completed_at = $5, "
        "updated_at = $5, resume_requested = 0, cancel_requested = 0, "
        "current_sequence = current_sequence + $6, "
        f"{positions} "
        "WHERE id = $1 RETURNING current_sequence, stream_pos",
        row["id"],
        status,
        None if output is None else dumps(output),
        error,
        now,
        len(events),
        first,
    )
    assert row_after is not None
    last = int(row_after["current_sequence"])
    await insert_events(
        tx, row["tenant_id"], row["id"], events, last, now, int(row_after["stream_pos"])
    )
    status_changed(tx, row["tenant_id"], row["id"])  # with or without events: streams end
    await ended(tx, row, status, output=output, error=error)
    return last


async def ended(
    tx: Tx, row: dict[str, Any], status: str, *, output: Any = None, error: str | None = None
) -> None:
    """What follows an execution's end: count it, and tell its parent (if any)."""
    tx.on_commit(metrics.labelled(metrics.WORKFLOWS, status.lower()).inc)
    if row.get("parent_id"):
        base = {"childExecutionName": row["child_name"], "childWorkflowExecutionId": row["id"]}
        if status == "COMPLETED":
            event = (EventType.CHILD_WORKFLOW_COMPLETED, {**base, "output": output})
        elif status == "FAILED":
            event = (EventType.CHILD_WORKFLOW_FAILED, {**base, "error": error})
        else:
            event = (EventType.CHILD_WORKFLOW_CANCELLED, base)
        await append_and_resume(tx, row["parent_id"], [event])


@dataclass(frozen=True)
class Triggered:
    """What a trigger did: the execution it started, or the one its key named."""

    execution_id: str
    status: WorkflowStatus
    kind: str
    created_at: int
    key_used: bool
    created: bool
    signalled: bool
    signal_sequence: int | None  # the signal's event, when it was signalled


class Workflows:
    def __init__(self, store: Store, group: GroupCommit) -> None:
        self.store = store
        self.group = group

    async def trigger(self, tenant: Tenant, kind: str, req: TriggerWorkflow) -> Triggered:
        """Start an execution; an idempotency hit gives the existing one."""
        key = req.idempotency_key
        ttl_ms = parse_ttl_ms(req.idempotency_key_ttl)
        # Signal-with-start: reuse the key's execution only while it is open, then signal it.
        signal = req.signal
        if signal is not None and key is None:
            raise InvalidInput("a trigger with a signal needs an idempotencyKey")
        reusable = self._ended if signal is not None else self._failed
        now, new_id = now_ms(), str(uuid.uuid4())

        async def write(tx: Tx) -> tuple[Row, str | None, int | None]:
            existing, sequence = None, None
            if key is not None:
                existing = await claim_key(
                    tx,
                    tenant.id,
                    "workflow",
                    key,
                    target_id=new_id,
                    ttl_ms=ttl_ms,
                    now=now,
                    reusable=lambda target: reusable(tx, target),
                )
            if existing is None:
                await create_execution(
                    tx,
                    tenant.id,
                    execution_id=new_id,
                    kind=kind,
                    queue=req.queue,
                    input=req.input,
                    now=now,
                    priority_seconds=req.priority_seconds,
                    version=req.version,
                    metadata=req.metadata,
                    idempotency_key=key,
                )
                row: Row = {"id": new_id, "status": "PENDING", "kind": kind, "created_at": now}
            else:
                tx.on_commit(metrics.IDEMPOTENCY_HITS.inc)
                found = await tx.fetchrow(
                    "SELECT id, status, kind, created_at FROM workflow_executions WHERE id = $1",
                    existing,
                )
                assert found is not None
                row = found
            if signal is not None:
                sequence = await append_and_resume(
                    tx,
                    row["id"],
                    [
                        (
                            EventType.SIGNAL_RECEIVED,
                            {"signalName": signal.signal_name, "signalValue": signal.value},
                        )
                    ],
                )
            return row, existing, sequence

        row, existing, sequence = await self.group.run(key or new_id, write)
        return Triggered(
            execution_id=row["id"],
            status=WorkflowStatus(row["status"]),
            kind=row["kind"],
            created_at=row["created_at"],
            key_used=key is not None,
            created=existing is None,
            signal_sequence=sequence if signal is not None else None,
            signalled=signal is not None,
        )

    @staticmethod
    async def _failed(tx: Tx, target: str) -> bool:
        status = await tx.fetchval("SELECT status FROM workflow_executions WHERE id = $1", target)
        return status in (None, "FAILED")

    @staticmethod
    async def _ended(tx: Tx, target: str) -> bool:
        status = await tx.fetchval("SELECT status FROM workflow_executions WHERE id = $1", target)
        return status in (None, "COMPLETED", "FAILED", "CANCELLED")

    async def row(self, tenant: Tenant, workflow_id: str, tx: Tx | None = None) -> Row:
        """The execution of this tenant (`workflow_id`: a canonical UUID); NotFound if none."""
        sql = f"SELECT {shapes.WORKFLOW_COLUMNS} FROM workflow_executions WHERE id = $1 AND tenant_id = $2"
        if tx is not None:
            row = await tx.fetchrow(sql, workflow_id, tenant.id)
        else:
            async with self.store.read() as rtx:
                row = await rtx.fetchrow(sql, workflow_id, tenant.id)
        if row is None:
            raise not_found(f"workflow execution {workflow_id}")
        return row

    async def get(self, tenant: Tenant, workflow_id: str) -> Workflow:
        return shapes.workflow(await self.row(tenant, workflow_id))

    async def list(self, tenant: Tenant, q: ListWorkflows) -> WorkflowList:
        query = Filters("tenant_id = ?", tenant.id)
        if q.status:  # once each, so that their counts add up
            query.any_of([_status_filter(s) for s in dict.fromkeys(q.status)])
        for value, column in ((q.kind, "kind"), (q.queue, "queue"), (q.parent_id, "parent_id")):
            if value is not None:
                query.add(f"{column} = ?", value)
        if q.created_after is not None:
            query.add("created_at > ?", epoch_ms(q.created_after))
        if q.created_before is not None:
            query.add("created_at < ?", epoch_ms(q.created_before))
        found = await page(
            self.store,
            columns=shapes.SUMMARY_COLUMNS,
            table="workflow_executions",
            filters=query,
            order=WORKFLOW_ORDER,
            limit=q.limit,
            offset=q.offset,
            cursor=q.cursor,
            shape=shapes.workflow_summary,
        )
        return cast(WorkflowList, found.answer("workflows", q.limit, q.offset))

    async def counts(self, tenant: Tenant, q: CountWorkflows) -> WorkflowCounts:
        """Executions per status, each exact up to 1,000 (see paging.count)."""
        counts: dict[str, int] = {}
        estimated: list[WorkflowStatus] = []  # past 1,000: see paging.count
        async with self.store.read() as tx:
            for status in WorkflowStatus:
                query = Filters("tenant_id = ?", tenant.id)
                clause, values = _status_filter(status)
                query.add(clause, *values)
                for value, column in ((q.kind, "kind"), (q.queue, "queue")):
                    if value is not None:
                        query.add(f"{column} = ?", value)
                n, estimate = await count(tx, "workflow_executions", query, WORKFLOW_ORDER)
                counts[status.value] = n
                if estimate:
                    estimated.append(status)
        return {
            "counts": counts,
            "total": sum(counts.values()),
            "estimated": estimated,
        }

    async def events(self, tenant: Tenant, workflow_id: str, since: int, limit: int) -> EventList:
        async with self.store.read() as tx:
            row = await self.row(tenant, workflow_id, tx)
            rows = await tx.fetch(
                "SELECT sequence, event_type, data, created_at FROM workflow_events "
                "WHERE workflow_execution_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
                row["id"],
                since,
                limit,
            )
        return {"events": [shapes.event(r) for r in rows]}

    async def state(self, tenant: Tenant, workflow_id: str) -> StateAnswer:
        async with self.store.read() as tx:
            row = await self.row(tenant, workflow_id, tx)
            rows = await tx.fetch(
                "SELECT key, value FROM workflow_state WHERE workflow_execution_id = $1 ORDER BY key",
                row["id"],
            )
        return {"state": {r["key"]: loads(r["value"]) for r in rows}}

    async def children(self, tenant: Tenant, workflow_id: str) -> ChildList:
        async with self.store.read() as tx:
            row = await self.row(tenant, workflow_id, tx)
            rows = await tx.fetch(
                "SELECT id, child_name, kind, status, cancel_requested, created_at, completed_at "
                "FROM workflow_executions WHERE parent_id = $1 ORDER BY created_at, id",
                row["id"],
            )
        return {"children": [shapes.child(r) for r in rows]}
