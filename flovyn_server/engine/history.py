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
from flovyn_server.engine import shapes
from flovyn_server.engine.eager import Offer
from flovyn_server.engine.shapes import ACTIVATION_COLUMNS
from flovyn_server.engine.wake import status_changed, stream_key, workflow_key
from flovyn_server.jsonio import dumps
from flovyn_server.models.worker import Activation
from flovyn_server.models.workflows import HistoryEvent
from flovyn_server.store.base import Row, Tx

Event = tuple[EventType, dict[str, Any]]

# Deferred (`Tx.write`): a read of the history in the same transaction sends them first.
INSERT_EVENT = (
    "INSERT INTO workflow_events (workflow_execution_id, sequence, event_type, data, "
    "created_at, pos) VALUES ($1, $2, $3, $4, $5, $6)"
)
# The same, with `{pos}` the SQL of a position (`Tx.pos_sql`) rather than its value.
INSERT_FIRST_EVENT = INSERT_EVENT.replace("$6)", "{pos})")


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


def reserve_positions(tx: Tx, count: int, param: int) -> tuple[str, int]:
    """The SET item of an UPDATE of an execution that reserves `count` stream positions
    for the events it appends, and the value to bind to `$param`.

    The block is the transaction's own next positions, or, when the execution's last
    event holds a higher one (appended by a transaction that began later but locked the
    row first), the positions right after it: events keep their sequence order in
    position order. The UPDATE returns `stream_pos`, the block's last position.
    """
    pos = tx.pos_sql(param)
    return (
        f"stream_pos = GREATEST({pos} + {count - 1}, stream_pos + {count})",
        tx.next_pos(max(count, 1)),
    )


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
    positions, first = reserve_positions(tx, len(events), 5)
    args: list[Any] = [workflow_id, len(events), now, 1 if wake else 0, first]
    became, take = "'PENDING'", ""
    if offer is not None and wake:
        marks = ", ".join(f"${i + 8}" for i in range(len(offer.kinds)))
        when = f"status = 'WAITING' AND queue = $6 AND kind IN ({marks})"
        became = f"CASE WHEN {when} THEN 'RUNNING' ELSE 'PENDING' END"
        take = (
            f"worker_id = CASE WHEN {when} THEN $7 ELSE worker_id END, "
            f"activation_id = CASE WHEN {when} THEN activation_id + 1 ELSE activation_id END, "
        )
        args += [offer.queue, offer.worker_id, *sorted(offer.kinds)]
    row = await tx.fetchrow(
        "UPDATE workflow_executions SET current_sequence = current_sequence + $2, "
        f"updated_at = $3, {positions}, status = CASE WHEN $4 = 1 AND status = 'WAITING' "
        f"THEN {became} ELSE status END, {take}"
        "resume_requested = CASE WHEN $4 = 1 AND status = 'RUNNING' THEN 1 "
        "ELSE resume_requested END "
        "WHERE id = $1 AND ($4 = 0 OR status NOT IN ('COMPLETED', 'CANCELLED')) "
        f"RETURNING current_sequence, stream_pos, status, tenant_id, {ACTIVATION_COLUMNS}, "
        "worker_id, resume_requested",
        *args,
    )
    if row is None:
        return None
    await insert_events(
        tx,
        row["tenant_id"],
        workflow_id,
        events,
        int(row["current_sequence"]),
        now,
        int(row["stream_pos"]),
    )
    if wake:
        status_changed(tx, row["tenant_id"], workflow_id)  # WAITING may have become PENDING
        if row["status"] == "PENDING":
            tx.notify(workflow_key(row["tenant_id"], row["queue"]))
    return row


async def insert_events(
    tx: Tx,
    tenant_id: str,
    workflow_id: str,
    events: Sequence[Event],
    last: int,
    now: int,
    last_pos: int,
    reserved: int | None = None,
) -> None:
    """Write `events` as the sequences ending at `last`, which an UPDATE of
    `current_sequence` has just reserved (under the execution's row lock), at the first
    positions of the `reserved` (default: one per event) ending at `last_pos`."""
    if events:
        tx.notify(stream_key(tenant_id))
    first = last - len(events) + 1
    first_pos = last_pos - (len(events) if reserved is None else reserved) + 1
    for i, (kind, data) in enumerate(events):
        tx.write(INSERT_EVENT, workflow_id, first + i, str(kind), dumps(data), now, first_pos + i)
