"""Standalone tasks: a task with no workflow, created over REST and run by any worker
that registered its kind, with the retries, attempts, logs, heartbeats and timeouts of
a workflow's task (the worker protocol does not tell them apart; `tasks.py` skips the
workflow's history when a task has none)."""

from __future__ import annotations

import uuid
from typing import Any, cast

from flovyn_server.domain import Conflict, InvalidInput, not_found, now_ms, parse_ttl_ms
from flovyn_server.engine import shapes
from flovyn_server.engine.group_commit import GroupCommit
from flovyn_server.engine.idempotency import claim_key
from flovyn_server.engine.paging import Filters, Order, page
from flovyn_server.engine.tasks import insert_task
from flovyn_server.engine.tenants import Tenant
from flovyn_server.engine.wake import stream_key
from flovyn_server.models.tasks import CreateTask, ListTasks, TaskPage
from flovyn_server.models.worker import RetryPolicy, ScheduleTask
from flovyn_server.models.workflows import Task
from flovyn_server.store.base import Row, Store, Tx

TASK_ORDER = Order("tasks", ("created_at", "id"))  # newest first


class StandaloneTasks:
    def __init__(self, store: Store, group: GroupCommit) -> None:
        self.store = store
        self.group = group

    async def create(self, tenant: Tenant, req: CreateTask) -> tuple[Task, bool]:
        """The new task (True), or the one its idempotency key names (False)."""
        key, ttl_ms = req.idempotency_key, parse_ttl_ms(req.idempotency_key_ttl)
        now, new_id = now_ms(), str(uuid.uuid4())
        spec = ScheduleTask(
            type="SCHEDULE_TASK",
            task_execution_id=new_id,
            kind=req.kind,
            input=req.input,
            max_retries=req.max_retries,
            queue=req.queue,
            timeout_ms=req.timeout_ms,
            retry_policy=RetryPolicy(),
            metadata=req.metadata,
        )

        async def write(tx: Tx) -> tuple[str, bool]:
            if key is not None:
                existing = await claim_key(
                    tx, tenant.id, "task", key, target_id=new_id, ttl_ms=ttl_ms, now=now,
                    reusable=lambda target: _failed(tx, target),
                )  # fmt: skip
                if existing is not None:
                    return existing, False
            await insert_task(
                tx, tenant.id, spec, workflow_id=None, now=now, default_queue="default"
            )
            if key is not None:
                await tx.execute(
                    "UPDATE task_executions SET idempotency_key = $2 WHERE id = $1", new_id, key
                )
            return new_id, True

        task_id, created = await self.group.run(key or new_id, write)
        return shapes.task(await self.row(tenant, task_id)), created

    async def row(self, tenant: Tenant, task_id: str) -> Row:
        """A standalone task of the tenant; NotFound for a workflow's task or none."""
        async with self.store.read() as tx:
            row = await tx.fetchrow(
                f"SELECT tenant_id, {shapes.TASK_COLUMNS} FROM task_executions WHERE id = $1",
                task_id,
            )
        if row is None or row["tenant_id"] != tenant.id or row["workflow_execution_id"]:
            raise not_found(f"task {task_id}")
        return row

    async def get(self, tenant: Tenant, task_id: str) -> Task:
        return shapes.task(await self.row(tenant, task_id))

    async def list(self, tenant: Tenant, q: ListTasks) -> TaskPage:
        query = Filters("tenant_id = ? AND workflow_execution_id IS NULL", tenant.id)
        if q.status:
            query.any_of([("status = ?", [s]) for s in dict.fromkeys(q.status)])
        for value, column in ((q.kind, "kind"), (q.queue, "queue")):
            if value is not None:
                query.add(f"{column} = ?", value)
        found = await page(
            self.store,
            columns=shapes.TASK_COLUMNS,
            table="task_executions",
            filters=query,
            order=TASK_ORDER,
            limit=q.limit,
            offset=q.offset,
            cursor=q.cursor,
            shape=shapes.task,
        )
        return cast(TaskPage, found.answer("tasks", q.limit, q.offset))

    async def cancel(self, tenant: Tenant, task_id: str) -> None:
        """Cancel a PENDING standalone task (one waiting for its first try or a retry);
        a workflow's task is cancelled with its workflow (InvalidInput), and a running
        or ended one cannot be (Conflict)."""
        now = now_ms()

        async def write(tx: Tx) -> None:
            row = await tx.fetchrow(
                "SELECT tenant_id, workflow_execution_id, status FROM task_executions "
                "WHERE id = $1 FOR UPDATE",
                task_id,
            )
            if row is None or row["tenant_id"] != tenant.id:
                raise not_found(f"task {task_id}")
            if row["workflow_execution_id"]:
                raise InvalidInput(
                    f"task {task_id} belongs to workflow execution {row['workflow_execution_id']}:"
                    " cancel the workflow",
                    {"field": "taskId"},
                )
            if row["status"] != "PENDING":
                raise Conflict(
                    f"task {task_id} is {row['status']}: only a PENDING task can be cancelled",
                    code="NOT_PENDING",
                )
            await cancel_pending(tx, tenant.id, task_id, now)

        await self.group.run(task_id, write)


async def cancel_pending(tx: Tx, tenant_id: str, task_id: str, now: int) -> bool:
    """Cancel a standalone task if it is PENDING (with its stream's task_cancelled)."""
    changed = await tx.execute(
        "UPDATE task_executions SET status = 'CANCELLED', completed_at = $2, "
        f"updated_at = $2, cancelled_pos = {tx.pos_sql(3)} WHERE id = $1 AND status = 'PENDING'",
        task_id,
        now,
        tx.next_pos(),
    )
    if changed:
        tx.notify(stream_key(tenant_id))
    return bool(changed)


async def _failed(tx: Tx, target: str) -> bool:
    """A key whose task failed or was cancelled may start a new one."""
    status: Any = await tx.fetchval("SELECT status FROM task_executions WHERE id = $1", target)
    return status in (None, "FAILED", "CANCELLED")
