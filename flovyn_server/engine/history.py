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

from flovyn_server.domain import EventType, WorkflowStatus, now_ms
from flovyn_server.engine import shapes
from flovyn_server.engine.eager import Offer
from flovyn_server.engine.shapes import ACTIVATION_COLUMNS
from flovyn_server.engine.wake import stream_key, workflow_key
from flovyn_server.jsonio import dumps
from flovyn_server.models.worker import Activation
from flovyn_server.models.workflows import HistoryEvent
from flovyn_server.store.base import Row, Tx

Event = tuple[EventType, dict[str, Any]]

# Deferred (`Tx.write`): a read of the history in the same transaction sends them first.
INSERT_EVENT = (
    "INSERT INTO workflow_events (workflow_execution_id, sequence, event_type, data, created_at) "
    "VALUES ($1, $2, $3, $4, $5)"
)


async def append_events(
    tx: Tx, workflow_id: str, events: list[Event], now: int | None = None
) -> int:
    """Append `events` in order; return the new `current_sequence`."""
    row = await _append(tx, workflow_id, events, now or now_ms(), wake=False)
    assert row is not None
    return int(row["current_sequence"])


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
    row = await _append(tx, workflow_id, events, now or now_ms(), wake=True)
    return None if row is None else int(row["current_sequence"])


async def resume(tx: Tx, workflow_id: str, now: int | None = None) -> None:
    """Make the workflow runnable without appending (its events are in already)."""
    await _append(tx, workflow_id, [], now or now_ms(), wake=True)


async def append_and_take(
    tx: Tx, workflow_id: str, events: list[Event], now: int, offer: Offer
) -> Activation | None:
    """`append_and_resume`, and when that makes the workflow runnable and it matches
    `offer` (whose worker was found online, see `eager.py`), claim it for the offering
    worker in the same UPDATE: returns the activation to hand over, or None."""
    row = await _append(tx, workflow_id, events, now, wake=True, offer=offer)
    if (
        row is None
        or row["status"] != "RUNNING"
        or row["worker_id"] != offer.worker_id
        or row["resume_requested"]  # it was running already: only flagged for a resume
    ):
        return None
    offer.slots -= 1
    return shapes.activation(row, (await load_histories(tx, [workflow_id]))[workflow_id])


async def load_histories(tx: Tx, ids: list[str]) -> dict[str, list[HistoryEvent]]:
    """The full event history of each execution, in order (activations carry them)."""
    history: dict[str, list[HistoryEvent]] = {i: [] for i in ids}
    marks = ", ".join(f"${i + 1}" for i in range(len(ids)))
    for e in await tx.fetch(
        "SELECT workflow_execution_id, sequence, event_type, data, created_at "
        f"FROM workflow_events WHERE workflow_execution_id IN ({marks}) "
        "ORDER BY workflow_execution_id, sequence",
        *ids,
    ):
        history[e["workflow_execution_id"]].append(shapes.event(e))
    return history


HISTORIES_CHUNK = 500  # executions in one statement (two parameters each)


async def histories_after(
    tx: Tx, after: dict[str, int], limit: int
) -> tuple[dict[str, tuple[WorkflowStatus, list[HistoryEvent]]], bool]:
    """For many executions at once (a stream fan-out): each one's status and its events
    after the sequence in `after`, in order; and whether `limit` rows per statement cut
    the answer short (the rest is for the next read)."""
    found: dict[str, tuple[WorkflowStatus, list[HistoryEvent]]] = {}
    full = False
    items = list(after.items())
    for start in range(0, len(items), HISTORIES_CHUNK):
        chunk = items[start : start + HISTORIES_CHUNK]
        values = ", ".join(
            f"(CAST(${2 * i + 1} AS TEXT), CAST(${2 * i + 2} AS BIGINT))" for i in range(len(chunk))
        )
        rows = await tx.fetch(
            f"WITH s(id, after) AS (VALUES {values}) "
            "SELECT w.id AS execution_id, w.status, w.cancel_requested, e.sequence, "
            "e.event_type, e.data, e.created_at FROM s "
            "JOIN workflow_executions w ON w.id = s.id "
            "LEFT JOIN workflow_events e ON e.workflow_execution_id = s.id "
            f"AND e.sequence > s.after ORDER BY w.id, e.sequence LIMIT {int(limit) + 1}",
            *(v for pair in chunk for v in pair),
        )
        full = full or len(rows) > limit
        for row in rows[:limit]:
            entry = found.get(row["execution_id"])
            if entry is None:
                entry = found[row["execution_id"]] = (shapes.workflow_status(row), [])
            if row["sequence"] is not None:
                entry[1].append(shapes.event(row))
    return found, full


async def _append(
    tx: Tx,
    workflow_id: str,
    events: list[Event],
    now: int,
    *,
    wake: bool,
    offer: Offer | None = None,
) -> Row | None:
    # One UPDATE bumps the sequence (taking the row lock on PostgreSQL), wakes the
    # execution and says whether it is still open; the INSERT then writes the events.
    # With an offer, a WAITING execution it matches becomes RUNNING on that worker
    # instead of PENDING.
    args: list[Any] = [workflow_id, len(events), now, 1 if wake else 0]
    became, take = "'PENDING'", ""
    if offer is not None and wake:
        marks = ", ".join(f"${i + 7}" for i in range(len(offer.kinds)))
        when = f"status = 'WAITING' AND queue = $5 AND kind IN ({marks})"
        became = f"CASE WHEN {when} THEN 'RUNNING' ELSE 'PENDING' END"
        take = (
            f"worker_id = CASE WHEN {when} THEN $6 ELSE worker_id END, "
            f"activation_id = CASE WHEN {when} THEN activation_id + 1 ELSE activation_id END, "
        )
        args += [offer.queue, offer.worker_id, *sorted(offer.kinds)]
    row = await tx.fetchrow(
        "UPDATE workflow_executions SET current_sequence = current_sequence + $2, "
        "updated_at = $3, status = CASE WHEN $4 = 1 AND status = 'WAITING' "
        f"THEN {became} ELSE status END, {take}"
        "resume_requested = CASE WHEN $4 = 1 AND status = 'RUNNING' THEN 1 "
        "ELSE resume_requested END "
        "WHERE id = $1 AND ($4 = 0 OR status NOT IN ('COMPLETED', 'CANCELLED')) "
        f"RETURNING current_sequence, status, tenant_id, {ACTIVATION_COLUMNS}, "
        "worker_id, resume_requested",
        *args,
    )
    if row is None:
        return None
    await insert_events(
        tx, row["tenant_id"], workflow_id, events, int(row["current_sequence"]), now
    )
    if wake and row["status"] == "PENDING":
        tx.notify(workflow_key(row["tenant_id"], row["queue"]))
    return row


async def insert_events(
    tx: Tx, tenant_id: str, workflow_id: str, events: Sequence[Event], last: int, now: int
) -> None:
    """Write `events` as the sequences ending at `last`, which an UPDATE of
    `current_sequence` has just reserved (under the execution's row lock)."""
    if events:
        tx.notify(stream_key(tenant_id))
    first = last - len(events) + 1
    for i, (kind, data) in enumerate(events):
        tx.write(INSERT_EVENT, workflow_id, first + i, str(kind), dumps(data), now)
