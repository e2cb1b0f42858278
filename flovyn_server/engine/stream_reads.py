"""What the streams read: the rows between two stream positions, as stream events.

Each reader takes a set of scopes (execution ids, or task ids for standalone tasks)
and a range `[lo, hi)` of positions, and returns the events in it, each tagged with
the scope it belongs to. The stream hub calls a reader once for all the subscriptions
of a tenant; a stream calls it alone for what it missed (see streams/hub.py). So live
delivery and replay are one code path over the same committed rows.

Events come from the tables that hold the state anyway: the history (`pos`), task
rows and attempts (created, started, finished, cancelled positions), task logs (`seq`)
and `stream_events` (progress and stream data), and, for the tenant feed,
`feed_changes`. See "Stream positions" in store/base.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import cast

from flovyn_server.domain import iso
from flovyn_server.engine import shapes
from flovyn_server.jsonio import loads
from flovyn_server.models.streams import (
    StreamFeedEvent,
    StreamHistoryEvent,
    StreamTaskData,
    StreamTaskEvent,
)
from flovyn_server.store.base import Row, Tx

Payload = StreamHistoryEvent | StreamTaskData | StreamTaskEvent | StreamFeedEvent
CHUNK = 500  # ids in one statement


@dataclass(frozen=True)
class Item:
    """One event of a stream. `key` orders it: its position, and for the feed (where
    one change may mark many executions with one position) the execution id."""

    key: tuple[int, str]
    scope: str
    name: str
    payload: Payload
    created_pos: int = 0  # the feed: the execution's creation, for `workflow_created`

    @property
    def id(self) -> str:
        return event_id(self.key)


def event_id(key: tuple[int, str]) -> str:
    """The SSE `id:` of a key: its position, and on the feed `-<execution id>`."""
    pos, tie = key
    return f"{pos}-{tie}" if tie else str(pos)


@dataclass(frozen=True)
class State:
    """An execution's state at a read, for deciding when its streams end."""

    status: str
    stream_pos: int  # its last event's position: the transaction that ended it


def settled(pos: int, covered: int) -> bool:
    """Whether the transaction that wrote position `pos` is final, when everything
    below `covered` (a horizon) was read: all its positions lie below it too."""
    return pos < covered


def _marks(ids: Sequence[str], first: int = 1) -> str:
    return ", ".join(f"${first + i}" for i in range(len(ids)))


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


async def states(tx: Tx, ids: Iterable[str]) -> dict[str, State]:
    found: dict[str, State] = {}
    for chunk in _chunks(ids):
        for row in await tx.fetch(
            "SELECT id, status, cancel_requested, stream_pos "
            f"FROM workflow_executions WHERE id IN ({_marks(chunk)})",
            *chunk,
        ):
            found[row["id"]] = State(shapes.workflow_status(row), row["stream_pos"])
    return found


async def task_states(tx: Tx, ids: Iterable[str]) -> dict[str, State]:
    """Standalone tasks' states: an ended task's last position is its last attempt's
    end, or its cancellation."""
    found: dict[str, State] = {}
    for chunk in _chunks(ids):
        for row in await tx.fetch(
            "SELECT t.id, t.status, t.cancelled_pos, (SELECT max(a.finished_pos) FROM "
            "task_attempts a WHERE a.task_execution_id = t.id) AS finished_pos "
            f"FROM task_executions t WHERE t.id IN ({_marks(chunk)})",
            *chunk,
        ):
            last = max(p for p in (row["cancelled_pos"], row["finished_pos"], 0) if p is not None)
            found[row["id"]] = State(row["status"], int(last))
    return found


async def trees(tx: Tx, roots: Iterable[str]) -> dict[str, set[str]]:
    """Each root's execution and all its descendants."""
    found: dict[str, set[str]] = {}
    for chunk in _chunks(roots):
        for row in await tx.fetch(
            f"WITH RECURSIVE tree(root, id) AS (SELECT id, id FROM workflow_executions "
            f"WHERE id IN ({_marks(chunk)}) UNION ALL SELECT tree.root, w.id FROM "
            "workflow_executions w JOIN tree ON w.parent_id = tree.id) SELECT root, id FROM tree",
            *chunk,
        ):
            found.setdefault(row["root"], set()).add(row["id"])
    return found


async def history(tx: Tx, ids: Iterable[str], lo: int, hi: int) -> list[Item]:
    """History events of the executions, and what their tasks streamed (progress and
    stream data), in `[lo, hi)`."""
    items: list[Item] = []
    for chunk in _chunks(ids):
        n = len(chunk)
        for row in await tx.fetch(
            "SELECT workflow_execution_id, sequence, event_type, data, created_at, pos "
            f"FROM workflow_events WHERE workflow_execution_id IN ({_marks(chunk)}) "
            f"AND pos >= ${n + 1} AND pos < ${n + 2}",
            *chunk,
            lo,
            hi,
        ):
            event = shapes.event(row)
            payload: StreamHistoryEvent = {
                "workflowExecutionId": row["workflow_execution_id"],
                "type": event["eventType"],
                "timestamp": event["timestamp"],
                "sequence": event["sequence"],
                "data": event["data"],
            }
            items.append(
                Item((row["pos"], ""), row["workflow_execution_id"], event["eventType"], payload)
            )
        items += await _reported(tx, chunk, lo, hi)
    return items


async def _reported(tx: Tx, ids: list[str], lo: int, hi: int) -> list[Item]:
    """What the tasks of these executions reported (`stream_events`): progress and
    stream data."""
    n = len(ids)
    items: list[Item] = []
    for row in await tx.fetch(
        "SELECT pos, workflow_execution_id, task_execution_id, event, data, created_at "
        f"FROM stream_events WHERE workflow_execution_id IN ({_marks(ids)}) "
        f"AND pos >= ${n + 1} AND pos < ${n + 2}",
        *ids,
        lo,
        hi,
    ):
        data = loads(row["data"])
        payload = cast(
            StreamTaskData,
            {
                "workflowExecutionId": row["workflow_execution_id"],
                "taskExecutionId": row["task_execution_id"],
                "type": row["event"],
                "timestamp": iso(row["created_at"]),
                **data,  # attempt, and progress and details, or streamType and data
            },
        )
        items.append(Item((row["pos"], ""), row["workflow_execution_id"], row["event"], payload))
    return items


TASK_CHANGES = (
    "SELECT t.id, t.id AS task_execution_id, t.workflow_execution_id, t.kind, t.created_at, t.created_pos, "
    "t.cancelled_pos, t.completed_at, a.attempt, a.status AS attempt_status, a.worker_id, "
    "a.output, a.error, a.started_at, a.finished_at, a.started_pos, a.finished_pos, a.retry_at "
    "FROM task_executions t LEFT JOIN task_attempts a ON a.task_execution_id = t.id "
    "WHERE {column} IN ({marks}) AND ((t.created_pos >= $1 AND t.created_pos < $2) "
    "OR (t.cancelled_pos >= $1 AND t.cancelled_pos < $2) "
    "OR (a.started_pos >= $1 AND a.started_pos < $2) "
    "OR (a.finished_pos >= $1 - 1 AND a.finished_pos < $2))"
)


async def tasks(tx: Tx, column: str, ids: Iterable[str], lo: int, hi: int) -> list[Item]:
    """Task events in `[lo, hi)` of the tasks of these executions (`column` is
    "workflow_execution_id") or of these standalone tasks ("id"): lifecycle changes
    from task rows and attempts, progress reports, and log lines."""
    items: list[Item] = []
    for chunk in _chunks(ids):
        scope = f"t.{column}"
        marks = _marks(chunk, 3)
        seen_task: set[str] = set()
        for row in await tx.fetch(TASK_CHANGES.format(column=scope, marks=marks), lo, hi, *chunk):
            for pos, name, payload in _task_changes(row, row["id"] not in seen_task):
                if lo <= pos < hi:
                    items.append(Item((pos, ""), _scope(row, column), name, payload))
            seen_task.add(row["id"])
        n = len(chunk)
        by = (
            "s.workflow_execution_id"
            if column == "workflow_execution_id"
            else "s.task_execution_id"
        )
        for row in await tx.fetch(
            "SELECT s.pos, s.task_execution_id, s.data, s.created_at, t.workflow_execution_id, "
            "t.kind FROM stream_events s JOIN task_executions t ON t.id = s.task_execution_id "
            f"WHERE {by} IN ({_marks(chunk)}) AND s.event = 'task_progress' "
            f"AND s.pos >= ${n + 1} AND s.pos < ${n + 2}",
            *chunk,
            lo,
            hi,
        ):
            data = loads(row["data"])
            progress = _running(row, "task_progress", row["created_at"], data["attempt"])
            progress["progress"] = data["progress"]
            progress["details"] = data["details"]
            items.append(Item((row["pos"], ""), _scope(row, column), "task_progress", progress))
        for row in await tx.fetch(
            "SELECT l.task_execution_id, l.attempt, l.level, l.message, l.ts, l.seq, "
            "t.workflow_execution_id, t.kind FROM task_logs l "
            "JOIN task_executions t ON t.id = l.task_execution_id "
            f"WHERE t.{column} IN ({_marks(chunk)}) AND l.seq >= ${n + 1} AND l.seq < ${n + 2}",
            *chunk,
            lo,
            hi,
        ):
            log = _running(row, "task_log", row["ts"], row["attempt"])
            log["level"] = row["level"]
            log["message"] = row["message"]
            items.append(Item((row["seq"], ""), _scope(row, column), "task_log", log))
    return items


def _running(row: Row, name: str, at: int, attempt: int) -> StreamTaskEvent:
    """An event of a running attempt (a progress report, a log line)."""
    return {
        "workflowExecutionId": row["workflow_execution_id"],
        "taskExecutionId": row["task_execution_id"],
        "type": name,  # type: ignore[typeddict-item]
        "timestamp": iso(at),
        "kind": row["kind"],
        "status": "RUNNING",
        "attempt": attempt,
    }


def _scope(row: Row, column: str) -> str:
    """The scope a task row belongs to: its execution, or (standalone) the task."""
    return str(
        row["workflow_execution_id" if column == "workflow_execution_id" else "task_execution_id"]
    )


def _task_changes(row: Row, first_row: bool) -> list[tuple[int, str, StreamTaskEvent]]:
    """The events one (task, attempt) row holds, each with the task as it was then."""

    def event(name: str, at: int | None, status: str, attempt: int) -> StreamTaskEvent:
        return {
            "workflowExecutionId": row["workflow_execution_id"],
            "taskExecutionId": row["id"],
            "type": name,  # type: ignore[typeddict-item]
            "timestamp": iso(at or row["created_at"]),
            "kind": row["kind"],
            "status": status,  # type: ignore[typeddict-item]
            "attempt": attempt,
        }

    out: list[tuple[int, str, StreamTaskEvent]] = []
    if first_row:  # the task's own changes, once (it has a row per attempt)
        out.append((row["created_pos"], "task_created", event("task_created", None, "PENDING", 0)))
        if row["cancelled_pos"] is not None:
            done = event("task_cancelled", row["completed_at"], "CANCELLED", row["attempt"] or 0)
            out.append((row["cancelled_pos"], "task_cancelled", done))
    attempt = row["attempt"]
    if attempt is None:
        return out
    started = event("task_started", row["started_at"], "RUNNING", attempt)
    started["workerId"] = row["worker_id"]
    out.append((row["started_pos"], "task_started", started))
    if row["finished_pos"] is None:
        return out
    status = row["attempt_status"]
    retry = row["retry_at"]
    if status == "COMPLETED":
        name, task_status = "task_completed", "COMPLETED"
    elif status == "CANCELLED":
        name, task_status = "task_cancelled", "CANCELLED"
    else:
        name, task_status = "task_failed", "PENDING" if retry is not None else "FAILED"
    ended = event(name, row["finished_at"], task_status, attempt)
    ended["attemptStatus"] = status
    ended["error"] = row["error"]
    if status == "COMPLETED":
        ended["output"] = None if row["output"] is None else loads(row["output"])
    out.append((row["finished_pos"], name, ended))
    if retry is not None:
        again = event("task_retry", row["finished_at"], "PENDING", attempt)
        again["error"] = row["error"]
        again["retryAt"] = iso(retry)
        out.append((row["finished_pos"] + 1, "task_retry", again))
    return out


LAST_TIE = "\U0010ffff"  # after every execution id: a feed key past its position


async def feed(
    tx: Tx, tenant_id: str, after: tuple[int, str], hi: int, limit: int | None = None
) -> tuple[list[Item], tuple[int, str] | None]:
    """The tenant's executions whose status changed after `after` (a key) and below
    `hi`, in key order, each once (at its last change) with its summary now; and, when
    `limit` changes cut the answer short, the key to read on from."""
    cap = "" if limit is None else f" LIMIT {int(limit) + 1}"
    rows = await tx.fetch(
        "SELECT pos, workflow_execution_ids FROM feed_changes WHERE tenant_id = $1 "
        f"AND pos >= $2 AND pos < $3 ORDER BY pos{cap}",
        tenant_id,
        after[0],
        hi,
    )
    more = limit is not None and len(rows) > limit
    rows = rows[:limit]
    last: dict[str, int] = {}
    for row in rows:
        for execution_id in loads(row["workflow_execution_ids"]):
            if (row["pos"], execution_id) > after:
                last[execution_id] = row["pos"]
    items = []
    for chunk in _chunks(last):
        for row in await tx.fetch(
            f"SELECT {shapes.SUMMARY_COLUMNS}, created_pos FROM workflow_executions "
            f"WHERE id IN ({_marks(chunk)})",
            *chunk,
        ):
            summary = shapes.workflow_summary(row)
            payload: StreamFeedEvent = {
                "workflowExecutionId": row["id"],
                "type": "workflow_status",
                "timestamp": summary["updatedAt"],
                "workflow": summary,
            }
            key = (last[row["id"]], row["id"])
            items.append(Item(key, tenant_id, "workflow_status", payload, row["created_pos"]))
    items.sort(key=lambda i: i.key)
    return items, (rows[-1]["pos"], LAST_TIE) if more else None


async def changed(tx: Tx, tenant_id: str, lo: int, hi: int) -> set[str]:
    """The tenant's executions whose status changed in `[lo, hi)`."""
    found: set[str] = set()
    for row in await tx.fetch(
        "SELECT workflow_execution_ids FROM feed_changes WHERE tenant_id = $1 "
        "AND pos >= $2 AND pos < $3",
        tenant_id,
        lo,
        hi,
    ):
        found.update(loads(row["workflow_execution_ids"]))
    return found


def created(item: Item) -> Item:
    """A feed event as `workflow_created`: the client sees the execution first."""
    payload = cast(StreamFeedEvent, dict(item.payload))
    payload["type"] = "workflow_created"
    return replace(item, name="workflow_created", payload=payload)


def by_scope(items: Iterable[Item]) -> dict[str, list[Item]]:
    grouped: dict[str, list[Item]] = {}
    for item in items:
        grouped.setdefault(item.scope, []).append(item)
    return grouped
