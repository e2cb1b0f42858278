"""Worker registration, liveness, and reclaiming what a silent worker held."""

from __future__ import annotations

import uuid
from typing import cast

from flovyn_server.domain import not_found, now_ms
from flovyn_server.engine import shapes
from flovyn_server.engine.paging import Filters, Order, page
from flovyn_server.engine.tasks import TASK_FOR_UPDATE, end_attempt
from flovyn_server.engine.tenants import Tenant
from flovyn_server.engine.wake import status_changed, workflow_key
from flovyn_server.jsonio import dumps, loads
from flovyn_server.models.discovery import ListWorkers, WorkerDetail, WorkerList
from flovyn_server.models.worker import Register, Registered, WorkerRef, WorkerStatusAnswer
from flovyn_server.store.base import Store, Tx

# A poll refreshes the heartbeat at most this often, to keep polls to one write.
HEARTBEAT_WRITE_MS = 1000


class Workers:
    def __init__(
        self, store: Store, *, liveness_timeout_ms: int, heartbeat_interval_ms: int
    ) -> None:
        self.store = store
        self.liveness_timeout_ms = liveness_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._touched: dict[str, int] = {}  # tenant/worker -> last heartbeat written here

    async def register(self, tenant: Tenant, req: Register) -> Registered:
        workflows, tasks = req.workflows, req.tasks
        kind = "UNIFIED" if workflows and tasks else ("WORKFLOW" if workflows else "TASK")
        worker_id, now = str(uuid.uuid4()), now_ms()
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO workers (id, tenant_id, name, type, status, version, host_name, "
                "process_id, queues, workflow_kinds, task_kinds, last_heartbeat_at, registered_at) "
                "VALUES ($1, $2, $3, $4, 'ONLINE', $5, $6, $7, $8, $9, $10, $11, $11)",
                worker_id,
                tenant.id,
                req.name,
                kind,
                req.version,
                req.host_name,
                req.process_id,
                dumps(req.queues),
                dumps([w.kind for w in workflows]),
                dumps([t.kind for t in tasks]),
                now,
            )
            specs = [("workflow", w) for w in workflows] + [("task", t) for t in tasks]
            await tx.executemany(
                "INSERT INTO definitions (tenant_id, category, kind, spec, first_seen_at, "
                "last_registered_at) VALUES ($1, $2, $3, $4, $5, $5) "
                "ON CONFLICT (tenant_id, category, kind) DO UPDATE SET spec = excluded.spec, "
                "last_registered_at = excluded.last_registered_at",
                [
                    (
                        tenant.id,
                        category,
                        item.kind,
                        dumps(item.model_dump(by_alias=True, exclude_none=True)),
                        now,
                    )
                    for category, item in specs
                ],
            )
        return {
            "workerId": worker_id,
            "heartbeatIntervalMs": self.heartbeat_interval_ms,
            "livenessTimeoutMs": self.liveness_timeout_ms,
        }

    async def heartbeat(self, tenant: Tenant, req: WorkerRef) -> WorkerStatusAnswer:
        await self._beat(tenant, req.worker_id, now_ms())
        return {"status": "ONLINE"}

    async def _beat(self, tenant: Tenant, worker_id: str, now: int) -> None:
        """Record a sign of life (it counts as ONLINE again); NotFound for an unknown worker."""
        async with self.store.transaction() as tx:
            changed = await tx.execute(
                "UPDATE workers SET status = 'ONLINE', last_heartbeat_at = $3 "
                "WHERE id = $1 AND tenant_id = $2",
                worker_id,
                tenant.id,
                now,
            )
        if not changed:
            raise not_found(f"worker {worker_id}")

    async def touch(self, tenant: Tenant, worker_id: str) -> None:
        """A poll counts as a heartbeat; NotFound for a worker that never registered.

        Written at most once a second per worker, so a busy poller costs no extra write.
        """
        now, seen = now_ms(), f"{tenant.id}/{worker_id}"
        if now - self._touched.get(seen, 0) < HEARTBEAT_WRITE_MS:
            return
        await self._beat(tenant, worker_id, now)
        if len(self._touched) > 10_000:  # bounded: forget everyone, they re-touch in a second
            self._touched.clear()
        self._touched[seen] = now

    async def unregister(self, tenant: Tenant, req: WorkerRef) -> WorkerStatusAnswer:
        worker_id = req.worker_id
        async with self.store.transaction() as tx:
            # FOR UPDATE waits for claims in flight (see claims.py), so that
            # the release below sees what they claimed.
            changed = await tx.execute(
                "UPDATE workers SET status = 'OFFLINE' WHERE id IN (SELECT id FROM workers "
                "WHERE id = $1 AND tenant_id = $2 FOR UPDATE)",
                worker_id,
                tenant.id,
            )
            if not changed:
                raise not_found(f"worker {worker_id}")
            await release(tx, [worker_id], now_ms(), error="worker stopped")
        return {"status": "OFFLINE"}

    async def reap(self) -> int:
        """Mark silent workers OFFLINE and release what they held; returns how many."""
        now = now_ms()
        async with self.store.transaction() as tx:
            rows = await tx.fetch(
                "UPDATE workers SET status = 'OFFLINE' WHERE id IN (SELECT id FROM workers "
                "WHERE status = 'ONLINE' AND last_heartbeat_at < $1 LIMIT 100 FOR UPDATE SKIP LOCKED) "
                "RETURNING id",
                now - self.liveness_timeout_ms,
            )
            if rows:
                await release(
                    tx,
                    [r["id"] for r in rows],
                    now,
                    error="worker stopped heartbeating (liveness timeout)",
                )
        return len(rows)

    async def list(self, tenant: Tenant, q: ListWorkers) -> WorkerList:
        query = Filters("tenant_id = ?", tenant.id)
        for field, value in (("type", q.type), ("status", q.status)):
            if value is not None:
                query.add(f"{field} = ?", value)
        found = await page(
            self.store,
            columns="*",
            table="workers",
            filters=query,
            order=Order("workers", ("registered_at", "id")),
            limit=q.limit,
            offset=q.offset,
            cursor=q.cursor,
            shape=shapes.worker,
        )
        return cast(WorkerList, found.answer("workers", q.limit, q.offset))

    async def get(self, tenant: Tenant, worker_id: str) -> WorkerDetail:
        async with self.store.read() as tx:
            row = await tx.fetchrow(
                "SELECT * FROM workers WHERE id = $1 AND tenant_id = $2", worker_id, tenant.id
            )
        if row is None:
            raise not_found(f"worker {worker_id}")
        return {
            "worker": shapes.worker(row),
            "workflowCapabilities": loads(row["workflow_kinds"]),
            "taskCapabilities": loads(row["task_kinds"]),
        }


async def release(tx: Tx, worker_ids: list[str], now: int, *, error: str) -> None:
    """Give back activations and time out running attempts held by these workers."""
    marks = ", ".join(f"${i + 2}" for i in range(len(worker_ids)))
    released = await tx.fetch(
        "UPDATE workflow_executions SET status = 'PENDING', worker_id = NULL, updated_at = $1 "
        f"WHERE status = 'RUNNING' AND worker_id IN ({marks}) RETURNING id, tenant_id, queue",
        now,
        *worker_ids,
    )
    for row in released:
        tx.notify(workflow_key(row["tenant_id"], row["queue"]))
        status_changed(tx, row["tenant_id"], row["id"])
    running = await tx.fetch(
        "SELECT id FROM task_executions WHERE status = 'RUNNING' AND worker_id IN "
        f"({', '.join(f'${i + 1}' for i in range(len(worker_ids)))})",
        *worker_ids,
    )
    for task in running:
        await time_out(tx, task["id"], now, error)


async def time_out(tx: Tx, task_id: str, now: int, error: str) -> None:
    """End a running attempt as TIMEOUT and follow the retry rule."""
    task = await tx.fetchrow(TASK_FOR_UPDATE, task_id)
    if task is not None and task["status"] == "RUNNING":
        await end_attempt(tx, task, "TIMEOUT", error=error, retryable=True, now=now)
