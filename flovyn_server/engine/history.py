"""Appending to a workflow's event log and waking the workflow.

Every append goes through `append_events`: it bumps `current_sequence` with one
UPDATE, which also takes the row lock on PostgreSQL, so appends to one execution are
serialised and sequences stay gapless whoever appends (worker submit, task
completion, timer, signal, cancel).
"""

from __future__ import annotations

from typing import Any

from flovyn_server.domain import EventType, now_ms
from flovyn_server.engine.wake import workflow_key
from flovyn_server.jsonio import dumps
from flovyn_server.store.base import Tx

Event = tuple[EventType, dict[str, Any]]


async def append_events(
    tx: Tx, workflow_id: str, events: list[Event], now: int | None = None
) -> int:
    """Append `events` in order; return the new `current_sequence`."""
    if not events:
        return int(
            await tx.fetchval(
                "SELECT current_sequence FROM workflow_executions WHERE id = $1", workflow_id
            )
        )
    now = now or now_ms()
    last = await tx.fetchval(
        "UPDATE workflow_executions SET current_sequence = current_sequence + $2, updated_at = $3 "
        "WHERE id = $1 RETURNING current_sequence",
        workflow_id,
        len(events),
        now,
    )
    first = int(last) - len(events) + 1
    await tx.executemany(
        "INSERT INTO workflow_events (workflow_execution_id, sequence, event_type, data, created_at) "
        "VALUES ($1, $2, $3, $4, $5)",
        [
            (workflow_id, first + i, str(kind), dumps(data), now)
            for i, (kind, data) in enumerate(events)
        ],
    )
    return int(last)


async def resume(tx: Tx, workflow_id: str, now: int | None = None) -> None:
    """Something the workflow may be waiting on happened: make it runnable.

    WAITING becomes PENDING. A RUNNING execution is held by a worker that has not
    seen the new event; `resume_requested` makes its SUSPENDED submit leave it
    PENDING instead of WAITING, so the event is not lost.
    """
    row = await tx.fetchrow(
        "UPDATE workflow_executions SET "
        "status = CASE WHEN status = 'WAITING' THEN 'PENDING' ELSE status END, "
        "resume_requested = CASE WHEN status IN ('RUNNING', 'CANCELLING') THEN 1 "
        "ELSE resume_requested END, "
        "updated_at = $2 WHERE id = $1 RETURNING tenant_id, queue, status",
        workflow_id,
        now or now_ms(),
    )
    if row is not None and row["status"] == "PENDING":
        tx.notify(workflow_key(row["tenant_id"], row["queue"]))


async def append_and_resume(tx: Tx, workflow_id: str, events: list[Event]) -> int:
    now = now_ms()
    seq = await append_events(tx, workflow_id, events, now)
    await resume(tx, workflow_id, now)
    return seq
