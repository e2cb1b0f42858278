"""The due-work loop: timers, promise deadlines, task timeouts, schedules' slots, worker
liveness, and the pruning of stream rows and finished executions past their retention.

Due rows are claimed with `FOR UPDATE SKIP LOCKED` and changed in the same
transaction, so with several server processes on one PostgreSQL database each timer
fires once. The loop sleeps until the next due time it knows of, and is woken early
(`DUE_KEY`) when a commit here or in another process creates an earlier one.
"""

from __future__ import annotations

import asyncio
import logging

from flovyn_server import metrics
from flovyn_server.domain import EventType, now_ms
from flovyn_server.engine import retention
from flovyn_server.engine.history import append_and_resume
from flovyn_server.engine.schedules import BATCH as SCHEDULE_BATCH
from flovyn_server.engine.schedules import Schedules
from flovyn_server.engine.wake import DUE_KEY, WakeHub
from flovyn_server.engine.workers import Workers, time_out
from flovyn_server.store.base import Store

log = logging.getLogger(__name__)

BATCH = 200
MAX_SLEEP_S = 1.0
REAP_EVERY_MS = 1000
PRUNE_EVERY_MS = 60_000
PRUNE_BATCH = 5000  # rows of one table per statement: a long DELETE holds up nothing
# Rows that streams replay only while they are retained (see settings.stream_retention_s).
RETAINED = ("stream_events", "feed_changes")


class Scheduler:
    def __init__(
        self,
        store: Store,
        hub: WakeHub,
        workers: Workers,
        schedules: Schedules,
        *,
        stream_retention_ms: int,
        execution_retention_ms: int | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.workers = workers
        self.schedules = schedules
        self.stream_retention_ms = stream_retention_ms
        self.execution_retention_ms = execution_retention_ms
        self._last_gauges = 0
        self._last_reap = 0
        self._last_prune = 0

    async def run(self) -> None:
        while True:
            with self.hub.waiter(DUE_KEY) as waiter:
                try:
                    delay = await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a database hiccup must not stop timers for good
                    log.exception("scheduler tick failed; retrying in 1 s")
                    delay = MAX_SLEEP_S
                if delay > 0:
                    await waiter.wait(delay)
                else:  # more is due at once: let the requests waiting behind us run first
                    await asyncio.sleep(0)

    async def tick(self) -> float:
        """Do what is due now; return how long to sleep before the next due time.

        One read finds the earliest due time of each kind, so an idle server costs one
        cheap query per tick and no write transaction (but the liveness reap, once a second).
        """
        due = await self.next_due()
        now = now_ms()
        full = False
        if due["timer"] is not None and due["timer"] <= now:
            full |= await self.fire_timers() >= BATCH
        if due["promise"] is not None and due["promise"] <= now:
            full |= await self.expire_promises() >= BATCH
        if due["task"] is not None and due["task"] <= now:
            full |= await self.time_out_tasks() >= BATCH
        if due["schedule"] is not None and due["schedule"] <= now:
            full |= await self.schedules.fire_due() >= SCHEDULE_BATCH
        if now - self._last_reap >= REAP_EVERY_MS:
            self._last_reap = now
            await self.workers.reap()
        if now - self._last_gauges > 5000:
            await self.update_gauges()
        if now - self._last_prune >= PRUNE_EVERY_MS:
            self._last_prune = now
            await self.prune_streams(now - self.stream_retention_ms)
            await retention.prune(self.store, self.execution_retention_ms, now)
        if full:
            return 0.0
        upcoming = [t for t in due.values() if t is not None and t > now]
        if any(t is not None and t <= now for t in due.values()):
            # something was due but locked by another process, or just handled: look again soon
            upcoming.append(now + 5)
        wake_at = min([*upcoming, self._last_reap + REAP_EVERY_MS])
        return min(max((wake_at - now_ms()) / 1000, 0.005), MAX_SLEEP_S)

    async def prune_streams(self, before: int) -> int:
        """Delete stream rows made before `before` (epoch ms); return how many."""
        pruned = 0
        for table in RETAINED:
            key = "pos" if table == "stream_events" else "tenant_id, pos"
            while True:
                async with self.store.transaction() as tx:
                    n = await tx.execute(
                        f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} "
                        f"WHERE created_at < $1 LIMIT {PRUNE_BATCH})",
                        before,
                    )
                pruned += n
                if n < PRUNE_BATCH:
                    break
        return pruned

    async def fire_timers(self) -> int:
        now = now_ms()
        async with self.store.transaction() as tx:
            rows = await tx.fetch(
                "UPDATE timers SET status = 'FIRED' WHERE id IN (SELECT id FROM timers "
                "WHERE status = 'PENDING' AND fire_at <= $1 ORDER BY fire_at LIMIT $2 "
                "FOR UPDATE SKIP LOCKED) RETURNING id, workflow_execution_id",
                now,
                BATCH,
            )
            for row in rows:
                wf = row["workflow_execution_id"]
                await append_and_resume(tx, wf, [(EventType.TIMER_FIRED, {"timerId": row["id"]})])
        return len(rows)

    async def expire_promises(self) -> int:
        now = now_ms()
        async with self.store.transaction() as tx:
            rows = await tx.fetch(
                "UPDATE promises SET status = 'TIMEOUT', settled_at = $1 WHERE id IN (SELECT id "
                "FROM promises WHERE status = 'PENDING' AND timeout_at <= $1 ORDER BY timeout_at "
                "LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, name, workflow_execution_id",
                now,
                BATCH,
            )
            for row in rows:
                wf = row["workflow_execution_id"]
                await append_and_resume(
                    tx,
                    wf,
                    [
                        (
                            EventType.PROMISE_TIMEOUT,
                            {"promiseId": row["id"], "promiseName": row["name"]},
                        )
                    ],
                )
        return len(rows)

    async def time_out_tasks(self) -> int:
        now = now_ms()
        async with self.store.transaction() as tx:
            rows = await tx.fetch(
                "SELECT id FROM task_executions WHERE status = 'RUNNING' AND attempt_deadline <= $1 "
                "ORDER BY attempt_deadline LIMIT $2 FOR UPDATE SKIP LOCKED",
                now,
                BATCH,
            )
            for row in rows:
                await time_out(tx, row["id"], now, "task timed out")
        return len(rows)

    async def next_due(self) -> dict[str, int | None]:
        async with self.store.read() as tx:
            row = await tx.fetchrow(
                "SELECT (SELECT min(fire_at) FROM timers WHERE status = 'PENDING') AS timer, "
                "(SELECT min(timeout_at) FROM promises WHERE status = 'PENDING') AS promise, "
                "(SELECT min(attempt_deadline) FROM task_executions WHERE status = 'RUNNING') "
                "AS task, (SELECT min(next_run_at) FROM schedules WHERE enabled = 1) AS schedule"
            )
        assert row is not None
        return {k: None if v is None else int(v) for k, v in row.items()}

    async def update_gauges(self) -> None:
        self._last_gauges = now_ms()
        async with self.store.read() as tx:
            wf = await tx.fetchval(
                "SELECT count(*) FROM workflow_executions WHERE status = 'PENDING'"
            )
            tasks = await tx.fetchval(
                "SELECT count(*) FROM task_executions WHERE status = 'PENDING'"
            )
        metrics.labelled(metrics.QUEUE_DEPTH, "workflow").set(wf)
        metrics.labelled(metrics.QUEUE_DEPTH, "task").set(tasks)
