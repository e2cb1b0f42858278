"""Schedules: start a workflow or a standalone task by cron, interval or once.

A due slot is claimed with `FOR UPDATE SKIP LOCKED` by one server process, which
starts the run and moves `next_run_at` on in the same transaction: with several
processes on one PostgreSQL database a slot fires once. The scheduler loop sleeps
until the earliest `next_run_at` (`scheduler.py`); a write here wakes it (`DUE_KEY`).

Missed slots (the server was down): a slot is missed when the one after it is due
too, or when it is over a minute late. `skip` records one skipped run for them and
waits for the next slot; `execute_once` runs once now. Overlap: while the previous
run has not ended, `skip` records a skipped run, `allow` starts another, and
`cancel_previous` cancels the previous one first.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, cast

from flovyn_server.domain import TERMINAL_WORKFLOW, Conflict, iso, not_found, now_ms
from flovyn_server.engine import calendar
from flovyn_server.engine.control import EXECUTION_FOR_UPDATE, cancel_execution
from flovyn_server.engine.group_commit import GroupCommit
from flovyn_server.engine.paging import Filters, Order, page
from flovyn_server.engine.standalone import cancel_pending
from flovyn_server.engine.tasks import insert_task
from flovyn_server.engine.tenants import Tenant
from flovyn_server.engine.wake import DUE_KEY
from flovyn_server.engine.workflows import create_execution
from flovyn_server.jsonio import dumps, loads
from flovyn_server.models.schedules import (
    ListRuns,
    ListSchedules,
    Run,
    RunList,
    Schedule,
    ScheduleBody,
    ScheduleList,
    Triggered,
)
from flovyn_server.models.worker import RetryPolicy, ScheduleTask
from flovyn_server.store.base import Row, Store, Tx

BATCH = 50
LATE_MS = 60_000  # a slot this late was missed (the server was down)
MAX_MISSED = 10_000  # slots counted when recording missed ones
SCHEDULE_ORDER = Order("schedules", ("created_at", "id"))
RUN_ORDER = Order("runs", ("started_at", "id"))
ENDED_TASK = ("COMPLETED", "FAILED", "CANCELLED")


def _specs(body: ScheduleBody) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schedule type and target as stored (camelCase JSON); checked: a bad cron or
    timezone is InvalidInput."""
    spec = body.schedule_type.model_dump(mode="json", by_alias=True, exclude_none=True)
    if spec["type"] == "cron":
        calendar.check_cron(spec["cron"])
        calendar.zone(spec["timezone"])
    return spec, body.target.model_dump(mode="json", by_alias=True, exclude_none=True)


def _shape(row: Row) -> Schedule:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "scheduleType": loads(row["schedule_type"]),
        "target": loads(row["target"]),
        "overlapPolicy": row["overlap_policy"],
        "missedRunPolicy": row["missed_run_policy"],
        "enabled": bool(row["enabled"]),
        "nextRunAt": None if row["next_run_at"] is None else iso(row["next_run_at"]),
        "lastRunAt": None if row["last_run_at"] is None else iso(row["last_run_at"]),
        "runCount": row["run_count"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def _run(row: Row) -> Run:
    return {
        "scheduledAt": iso(row["scheduled_at"]),
        "startedAt": iso(row["started_at"]),
        "status": row["status"],
        "targetType": row["target_type"],
        "targetId": row["target_id"],
        "error": row["error"],
    }


class Schedules:
    def __init__(self, store: Store, group: GroupCommit) -> None:
        self.store = store
        self.group = group

    # -- the API --------------------------------------------------------------------

    async def create(self, tenant: Tenant, body: ScheduleBody) -> Schedule:
        spec, target = _specs(body)
        now, schedule_id = now_ms(), str(uuid.uuid4())
        upcoming = calendar.next_run(spec, now, now) if body.enabled else None
        async with self.store.transaction() as tx:
            inserted = await tx.execute(
                "INSERT INTO schedules (id, tenant_id, name, description, schedule_type, target, "
                "overlap_policy, missed_run_policy, enabled, next_run_at, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) "
                "ON CONFLICT (tenant_id, name) DO NOTHING",
                schedule_id, tenant.id, body.name, body.description, dumps(spec), dumps(target),
                body.overlap_policy, body.missed_run_policy, int(body.enabled), upcoming, now,
            )  # fmt: skip
            if not inserted:
                raise Conflict(f"a schedule named {body.name!r} exists", code="NAME_TAKEN")
            tx.notify(DUE_KEY)
        return await self.get(tenant, schedule_id)

    async def row(self, tenant: Tenant, schedule_id: str, tx: Tx | None = None) -> Row:
        sql = "SELECT * FROM schedules WHERE id = $1 AND tenant_id = $2"
        if tx is not None:
            row = await tx.fetchrow(sql + " FOR UPDATE", schedule_id, tenant.id)
        else:
            async with self.store.read() as rtx:
                row = await rtx.fetchrow(sql, schedule_id, tenant.id)
        if row is None:
            raise not_found(f"schedule {schedule_id}")
        return row

    async def get(self, tenant: Tenant, schedule_id: str) -> Schedule:
        return _shape(await self.row(tenant, schedule_id))

    async def list(self, tenant: Tenant, q: ListSchedules) -> ScheduleList:
        found = await page(
            self.store, columns="*", table="schedules",
            filters=Filters("tenant_id = ?", tenant.id), order=SCHEDULE_ORDER,
            limit=q.limit, offset=q.offset, cursor=q.cursor, shape=_shape,
        )  # fmt: skip
        return cast(ScheduleList, found.answer("schedules", q.limit, q.offset))

    async def replace(self, tenant: Tenant, schedule_id: str, body: ScheduleBody) -> Schedule:
        spec, target = _specs(body)
        now = now_ms()
        async with self.store.transaction() as tx:
            row = await self.row(tenant, schedule_id, tx)
            if body.name != row["name"] and await tx.fetchval(
                "SELECT id FROM schedules WHERE tenant_id = $1 AND name = $2", tenant.id, body.name
            ):
                raise Conflict(f"a schedule named {body.name!r} exists", code="NAME_TAKEN")
            anchor = row["created_at"]
            upcoming = calendar.next_run(spec, now, anchor) if body.enabled else None
            await tx.execute(
                "UPDATE schedules SET name = $2, description = $3, schedule_type = $4, "
                "target = $5, overlap_policy = $6, missed_run_policy = $7, enabled = $8, "
                "next_run_at = $9, updated_at = $10 WHERE id = $1",
                schedule_id, body.name, body.description, dumps(spec), dumps(target),
                body.overlap_policy, body.missed_run_policy, int(body.enabled), upcoming, now,
            )  # fmt: skip
            tx.notify(DUE_KEY)
        return await self.get(tenant, schedule_id)

    async def delete(self, tenant: Tenant, schedule_id: str) -> None:
        async with self.store.transaction() as tx:
            await self.row(tenant, schedule_id, tx)
            await tx.execute("DELETE FROM schedule_runs WHERE schedule_id = $1", schedule_id)
            await tx.execute("DELETE FROM schedules WHERE id = $1", schedule_id)

    async def enable(self, tenant: Tenant, schedule_id: str, on: bool) -> Schedule:
        """Enable (the next run computed from now) or disable (no next run)."""
        now = now_ms()
        async with self.store.transaction() as tx:
            row = await self.row(tenant, schedule_id, tx)
            spec = loads(row["schedule_type"])
            upcoming = calendar.next_run(spec, now, row["created_at"]) if on else None
            await tx.execute(
                "UPDATE schedules SET enabled = $2, next_run_at = $3, updated_at = $4 WHERE id = $1",
                schedule_id,
                int(on),
                upcoming,
                now,
            )
            tx.notify(DUE_KEY)
        return await self.get(tenant, schedule_id)

    async def trigger(self, tenant: Tenant, schedule_id: str) -> Triggered:
        """Run now, whatever the slots and the overlap policy say."""
        now = now_ms()
        async with self.store.transaction() as tx:
            row = await self.row(tenant, schedule_id, tx)
            run = await _start(tx, row, now, now)
            await tx.execute(
                "UPDATE schedules SET last_run_at = $2, last_target_id = $3, "
                "run_count = run_count + 1 WHERE id = $1",
                schedule_id,
                now,
                run["targetId"],
            )
        assert run["targetId"] is not None
        return {"targetType": run["targetType"], "targetId": run["targetId"], "run": run}

    async def runs(self, tenant: Tenant, schedule_id: str, q: ListRuns) -> RunList:
        await self.row(tenant, schedule_id)
        found = await page(
            self.store, columns="*", table="schedule_runs",
            filters=Filters("schedule_id = ?", schedule_id), order=RUN_ORDER,
            limit=q.limit, offset=q.offset, cursor=q.cursor, shape=_run,
        )  # fmt: skip
        return cast(RunList, found.answer("runs", q.limit, q.offset))

    # -- the scheduler ----------------------------------------------------------------

    async def fire_due(self) -> int:
        """Fire the due slots this process can claim; how many schedules it handled."""
        now = now_ms()
        async with self.store.transaction() as tx:
            rows = await tx.fetch(
                "SELECT * FROM schedules WHERE enabled = 1 AND next_run_at <= $1 "
                "ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                now,
                BATCH,
            )
            for row in rows:
                await _fire(tx, row, now)
        return len(rows)


async def _fire(tx: Tx, row: Row, now: int) -> None:
    spec, slot, anchor = loads(row["schedule_type"]), int(row["next_run_at"]), row["created_at"]
    upcoming = calendar.next_run(spec, now, anchor)
    after_slot = calendar.next_run(spec, slot, anchor)
    missed = now - slot > LATE_MS or (after_slot is not None and after_slot <= now)
    ran: Run | None = None
    if missed and row["missed_run_policy"] == "skip":
        count, at = 1, after_slot
        while at is not None and at <= now and count < MAX_MISSED:
            count, at = count + 1, calendar.next_run(spec, at, anchor)
        await _record(
            tx, row, slot, now, "skipped", None, f"{count} slot(s) missed while the server was down"
        )
    elif row["overlap_policy"] != "allow" and await _open(tx, row):
        if row["overlap_policy"] == "skip":
            previous = row["last_target_id"]
            await _record(
                tx, row, slot, now, "skipped", None, f"the previous run ({previous}) has not ended"
            )
        else:
            await _cancel_previous(tx, row, now)
            ran = await _start(tx, row, slot, now)
    else:
        ran = await _start(tx, row, slot, now)
    await tx.execute(
        "UPDATE schedules SET next_run_at = $2, last_run_at = $3, updated_at = $3, "
        "last_target_id = COALESCE($4, last_target_id), run_count = run_count + $5 WHERE id = $1",
        row["id"],
        upcoming,
        now,
        None if ran is None else ran["targetId"],
        0 if ran is None else 1,
    )


async def _start(tx: Tx, row: Row, slot: int, now: int) -> Run:
    """Start the schedule's target and record the run."""
    target = loads(row["target"])
    target_id = str(uuid.uuid4())
    kind: Literal["workflow", "task"] = target["type"]
    if kind == "workflow":
        await create_execution(
            tx, row["tenant_id"], execution_id=target_id, kind=target["workflowKind"],
            queue=target["queue"], input=target.get("input"), now=now,
            metadata={**(target.get("metadata") or {}), "scheduleId": row["id"]},
        )  # fmt: skip
    else:
        spec = ScheduleTask(
            type="SCHEDULE_TASK", task_execution_id=target_id, kind=target["taskKind"],
            input=target.get("input"), max_retries=target["maxRetries"], queue=target["queue"],
            retry_policy=RetryPolicy(), metadata={"scheduleId": row["id"]},
        )  # fmt: skip
        await insert_task(
            tx, row["tenant_id"], spec, workflow_id=None, now=now, default_queue="default"
        )
    return await _record(tx, row, slot, now, "started", target_id, None)


async def _record(
    tx: Tx, row: Row, slot: int, now: int, status: str, target_id: str | None, error: str | None
) -> Run:
    kind = loads(row["target"])["type"]
    await tx.execute(
        "INSERT INTO schedule_runs (id, schedule_id, scheduled_at, started_at, status, "
        "target_type, target_id, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        str(uuid.uuid4()), row["id"], slot, now, status, kind, target_id, error,
    )  # fmt: skip
    return {
        "scheduledAt": iso(slot),
        "startedAt": iso(now),
        "status": status,  # type: ignore[typeddict-item]
        "targetType": kind,
        "targetId": target_id,
        "error": error,
    }


async def _open(tx: Tx, row: Row) -> bool:
    """Whether the previous run's execution or task has not ended."""
    previous = row["last_target_id"]
    if previous is None:
        return False
    if loads(row["target"])["type"] == "workflow":
        status = await tx.fetchval("SELECT status FROM workflow_executions WHERE id = $1", previous)
        return status is not None and status not in TERMINAL_WORKFLOW
    status = await tx.fetchval("SELECT status FROM task_executions WHERE id = $1", previous)
    return status is not None and status not in ENDED_TASK


async def _cancel_previous(tx: Tx, row: Row, now: int) -> None:
    previous = row["last_target_id"]
    if loads(row["target"])["type"] == "workflow":
        wf = await tx.fetchrow(EXECUTION_FOR_UPDATE, previous)
        if wf is not None and wf["status"] not in TERMINAL_WORKFLOW:
            await cancel_execution(tx, wf, "a newer run of its schedule", True, "schedule", now)
        return
    # A standalone task: a PENDING one ends at once; a running one is asked to stop (its
    # worker sees it at its next heartbeat).
    if not await cancel_pending(tx, row["tenant_id"], previous, now):
        await tx.execute(
            "UPDATE task_executions SET cancel_requested = 1, updated_at = $2 "
            "WHERE id = $1 AND status = 'RUNNING'",
            previous,
            now,
        )
