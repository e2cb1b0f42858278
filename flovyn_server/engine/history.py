"""Appending to a workflow's event log and waking the workflow.

Every append bumps `current_sequence` with one UPDATE, which also takes the row lock
on PostgreSQL, and then writes the events as the sequences it reserved: appends to one
execution are serialised and sequences stay gapless whoever appends (worker submit,
task completion, timer, signal, cancel). The UPDATE is `append_events` /
`append_and_resume` here, or the one that also sets a submit's outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    last = await _append(tx, workflow_id, events, now or now_ms(), wake=False)
    assert last is not None
    return last


async def append_and_resume(
    tx: Tx, workflow_id: str, events: list[Event], now: int | None = None
) -> int | None:
    """Append events that may unblock the workflow, and make it runnable.

    WAITING becomes PENDING. A RUNNING execution is held by a worker that has not
    seen the new events; `resume_requested` makes its SUSPENDED submit leave it
    PENDING instead of WAITING, so they are not lost. A COMPLETED or CANCELLED
    execution takes no more events: returns None and appends nothing (a FAILED one
    does, since a manual retry replays it).
    """
    return await _append(tx, workflow_id, events, now or now_ms(), wake=True)


async def resume(tx: Tx, workflow_id: str, now: int | None = None) -> None:
    """Make the workflow runnable without appending (its events are in already)."""
    await _append(tx, workflow_id, [], now or now_ms(), wake=True)


async def _append(
    tx: Tx, workflow_id: str, events: list[Event], now: int, *, wake: bool
) -> int | None:
    # One UPDATE bumps the sequence (taking the row lock on PostgreSQL), wakes the
    # execution and says whether it is still open; the INSERT then writes the events.
    flag = 1 if wake else 0
    row = await tx.fetchrow(
        "UPDATE workflow_executions SET current_sequence = current_sequence + $2, "
        "updated_at = $3, "
        "status = CASE WHEN $4 = 1 AND status = 'WAITING' THEN 'PENDING' ELSE status END, "
        "resume_requested = CASE WHEN $4 = 1 AND status = 'RUNNING' THEN 1 "
        "ELSE resume_requested END "
        "WHERE id = $1 AND ($4 = 0 OR status NOT IN ('COMPLETED', 'CANCELLED')) "
        "RETURNING current_sequence, status, tenant_id, queue",
        workflow_id,
        len(events),
        now,
        flag,
    )
    if row is None:
        return None
    last = int(row["current_sequence"])
    await insert_events(tx, workflow_id, events, last, now)
    if wake and row["status"] == "PENDING":
        tx.notify(workflow_key(row["tenant_id"], row["queue"]))
    return last


async def insert_events(
    tx: Tx, workflow_id: str, events: Sequence[Event], last: int, now: int
) -> None:
    """Write `events` as the sequences ending at `last`, which an UPDATE of
    `current_sequence` has just reserved (under the execution's row lock)."""
    if events:
        first = last - len(events) + 1
        await tx.executemany(
            "INSERT INTO workflow_events "
            "(workflow_execution_id, sequence, event_type, data, created_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            [
                (workflow_id, first + i, str(kind), dumps(data), now)
                for i, (kind, data) in enumerate(events)
            ],
        )
