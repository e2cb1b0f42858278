"""Letting go of finished executions past their tenant's retention.

An execution goes with everything it owns (events, state, timers, promises, tasks with
their attempts and logs, stream rows, idempotency keys) and with its children, and only
with its whole tree: a root is removed once it and every descendant have ended, and
it ended before the cutoff. Work goes in small transactions (a few trees each), so it
never holds for long the locks the hot path needs, and on PostgreSQL one server process
at a time does it (the `maintenance_locks` row, taken FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

import logging
from typing import Any

from flovyn_server import metrics
from flovyn_server.domain import TERMINAL_WORKFLOW
from flovyn_server.engine import stream_reads as reads
from flovyn_server.store.base import Store, Tx

log = logging.getLogger(__name__)

BATCH = 20  # root executions looked at per transaction
# Rows an execution owns, by table and the column naming its execution.
OWNED = (
    ("workflow_events", "workflow_execution_id"),
    ("workflow_state", "workflow_execution_id"),
    ("timers", "workflow_execution_id"),
    ("promises", "workflow_execution_id"),
    ("stream_events", "workflow_execution_id"),
)
TERMINAL = sorted(TERMINAL_WORKFLOW)


async def prune(store: Store, default_ms: int | None, now: int) -> int:
    """Remove the finished trees past retention, in every tenant; how many executions."""
    async with store.read() as tx:
        tenants = await tx.fetch("SELECT id, retention_seconds FROM tenants")
    removed = 0
    for tenant in tenants:
        seconds = tenant["retention_seconds"]
        keep_ms = default_ms if seconds is None else int(seconds) * 1000
        if keep_ms is None:
            continue
        for status in TERMINAL:
            after: tuple[int, str] = (-1, "")
            while True:
                async with store.transaction() as tx:
                    done = await _batch(tx, tenant["id"], status, now - keep_ms, after)
                if done is None:  # another process is at it
                    return removed
                seen, gone, after = done
                removed += gone
                if seen < BATCH:
                    break
    if removed:
        log.info("removed %d finished executions past their retention", removed)
    return removed


async def _batch(
    tx: Tx, tenant_id: str, status: str, cutoff: int, after: tuple[int, str]
) -> tuple[int, int, tuple[int, str]] | None:
    """One transaction: up to BATCH roots of `status` after `after` (created_at, id);
    (roots looked at, executions removed, where to go on), or None without the lock."""
    if (
        await tx.fetchval(
            "SELECT name FROM maintenance_locks WHERE name = 'retention' FOR UPDATE SKIP LOCKED"
        )
        is None
    ):
        return None
    # The status index serves this (cancel_requested is 0 once an execution ended). A
    # child goes with its root; a root that ended too recently stays (it is read all
    # the same, for `after` to move on).
    roots = await tx.fetch(
        "SELECT id, created_at, parent_id, completed_at FROM workflow_executions "
        "WHERE tenant_id = $1 AND status = $2 AND cancel_requested = 0 AND created_at < $3 "
        f"AND (created_at, id) > ($4, $5) ORDER BY created_at, id LIMIT {BATCH}",
        tenant_id,
        status,
        cutoff,
        *after,
    )
    due = [
        r["id"] for r in roots if r["parent_id"] is None and (r["completed_at"] or cutoff) < cutoff
    ]
    trees = await reads.trees(tx, due) if due else {}
    states = await reads.states(tx, set().union(*trees.values())) if trees else {}
    gone = [
        execution_id
        for ids in trees.values()
        # a descendant still running keeps its tree whole
        if all(states[i].status in TERMINAL_WORKFLOW for i in ids if i in states)
        for execution_id in ids
    ]
    removed = await _delete(tx, gone) if gone else 0
    last = (roots[-1]["created_at"], roots[-1]["id"]) if roots else after
    if removed:
        tx.on_commit(lambda: metrics.EXECUTIONS_REMOVED.inc(removed))
    return len(roots), removed, last


async def _delete(tx: Tx, ids: list[str]) -> int:
    marks = ", ".join(f"${i + 1}" for i in range(len(ids)))
    tasks = f"SELECT id FROM task_executions WHERE workflow_execution_id IN ({marks})"
    statements: list[tuple[str, Any]] = [
        (f"DELETE FROM task_logs WHERE task_execution_id IN ({tasks})", ids),
        (f"DELETE FROM task_attempts WHERE task_execution_id IN ({tasks})", ids),
        (f"DELETE FROM stream_events WHERE task_execution_id IN ({tasks})", ids),
        (f"DELETE FROM task_executions WHERE workflow_execution_id IN ({marks})", ids),
        *((f"DELETE FROM {table} WHERE {column} IN ({marks})", ids) for table, column in OWNED),
        (f"DELETE FROM idempotency_keys WHERE target_id IN ({marks})", ids),
    ]
    for sql, args in statements:
        await tx.execute(sql, *args)
    return await tx.execute(f"DELETE FROM workflow_executions WHERE id IN ({marks})", *ids)
