"""Task executions: scheduling, claims, attempts, retries with backoff, logs, progress."""

from __future__ import annotations

import uuid
from typing import Any, Literal, cast

from flovyn_server import metrics
from flovyn_server.domain import (
    Conflict,
    EventType,
    epoch_ms,
    iso,
    not_found,
    now_ms,
)
from flovyn_server.engine import claims, eager, shapes
from flovyn_server.engine.group_commit import GroupCommit
from flovyn_server.engine.history import Event, append_and_resume, append_and_take
from flovyn_server.engine.paging import Filters, Order, page
from flovyn_server.engine.tenants import Tenant
from flovyn_server.engine.wake import stream_key, task_key
from flovyn_server.jsonio import dumps, loads
from flovyn_server.models.worker import (
    AppendLogs,
    AttemptRef,
    CancelledAnswer,
    CompleteAnswer,
    CompleteTask,
    FailAnswer,
    FailTask,
    LogsAccepted,
    Progress,
    RetryPolicy,
    ScheduleTask,
    StreamData,
    TaskItem,
)
from flovyn_server.models.workflows import AttemptList, LogPage, LogsQuery, TaskList
from flovyn_server.store.base import Row, Store, Tx

# Backoff when a SCHEDULE_TASK leaves its retry policy (or a field of it) out.
DEFAULT_INITIAL_MS, DEFAULT_COEFFICIENT, DEFAULT_MAX_MS = 1000, 2.0, 60_000


def backoff_ms(attempt: int, initial: int, coefficient: float, maximum: int) -> int:
    """Delay before the retry that follows failed attempt number `attempt` (1-based)."""
    return int(min(initial * coefficient ** (attempt - 1), maximum))


def stale(task_id: str, attempt: int) -> Conflict:
    return Conflict(
        f"attempt {attempt} is not the running attempt of task {task_id}", code="STALE_ATTEMPT"
    )


async def insert_task(
    tx: Tx,
    tenant_id: str,
    spec: ScheduleTask,
    *,
    workflow_id: str | None,
    now: int,
    default_queue: str,
    run_by: str | None = None,
) -> TaskItem | None:
    """Insert a task from a SCHEDULE_TASK command: PENDING, or with `run_by` already
    RUNNING its first attempt on that worker (eager dispatch; the caller has checked
    the worker is online, see `eager.py`).

    Returns the task as a poll hands it out, or None when the id exists with the same
    kind (a resubmission); raises Conflict ID_CONFLICT when it exists with another kind.
    """
    task_id, kind, timeout_ms = spec.task_execution_id, spec.kind, spec.timeout_ms
    queue = spec.queue or default_queue
    policy = spec.retry_policy or RetryPolicy()
    initial = policy.initial_interval_ms
    coefficient = policy.backoff_coefficient
    maximum = policy.max_interval_ms
    inserted = await tx.execute(
        "INSERT INTO task_executions (id, tenant_id, workflow_execution_id, kind, queue, status, "
        "input, max_retries, retry_initial_ms, retry_coefficient, retry_max_ms, timeout_ms, "
        "metadata, idempotency_key, retry_at, created_at, updated_at, worker_id, "
        "execution_count, started_at, attempt_deadline, created_pos) "
        "VALUES ($1, $2, $3, $4, $5, $15, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $14, "
        f"$16, $17, $18, $19, {tx.pos_sql(20)}) ON CONFLICT (id) DO NOTHING",
        task_id,
        tenant_id,
        workflow_id,
        kind,
        queue,
        dumps(spec.input),
        spec.max_retries,
        DEFAULT_INITIAL_MS if initial is None else initial,
        DEFAULT_COEFFICIENT if coefficient is None else coefficient,
        DEFAULT_MAX_MS if maximum is None else maximum,
        timeout_ms,
        dumps(spec.metadata or {}),
        None,  # idempotency_key: only standalone tasks have one
        now,
        "RUNNING" if run_by else "PENDING",
        run_by,
        1 if run_by else 0,
        now if run_by else None,
        now + timeout_ms if run_by and timeout_ms else None,
        tx.next_pos(),
    )
    if not inserted:
        existing = await tx.fetchrow(
            "SELECT kind, tenant_id, workflow_execution_id FROM task_executions WHERE id = $1",
            task_id,
        )
        if existing is None or (
            existing["kind"],
            existing["tenant_id"],
            existing["workflow_execution_id"],
        ) != (kind, tenant_id, workflow_id):
            raise Conflict(
                f"task {task_id} exists already with another kind or owner", code="ID_CONFLICT"
            )
        return None
    tx.on_commit(metrics.labelled(metrics.TASKS, "created").inc)
    tx.notify(stream_key(tenant_id))
    if run_by:
        tx.write(START_ATTEMPT.format(pos=tx.pos_sql(5)), task_id, 1, run_by, now, tx.next_pos())
    else:
        tx.notify(task_key(tenant_id, queue))
    return {
        "taskExecutionId": task_id,
        "kind": kind,
        "input": spec.input,
        "attempt": 1 if run_by else 0,
        "workflowExecutionId": workflow_id,
        "queue": queue,
        "timeoutMs": timeout_ms,
    }


async def end_attempt(
    tx: Tx,
    task: Row,
    outcome: str,
    *,
    error: str | None,
    retryable: bool,
    now: int,
) -> FailAnswer:
    """Close the running attempt as FAILED or TIMEOUT and apply the retry rule.

    An attempt of a task whose cancellation was requested ends CANCELLED, whatever way
    it stopped: it is the cancellation that ended it, and the task ends CANCELLED too.
    """
    attempt = task["execution_count"]
    cancelled = bool(task["cancel_requested"])
    retry_at = None
    if retryable and not cancelled and attempt <= task["max_retries"]:
        retry_at = now + backoff_ms(
            attempt, task["retry_initial_ms"], task["retry_coefficient"], task["retry_max_ms"]
        )
    # Two positions: the attempt's end, and the retry it schedules (task_retry).
    await tx.execute(
        "UPDATE task_attempts SET status = $3, error = $4, finished_at = $5, retry_at = $6, "
        f"finished_pos = {tx.pos_sql(7)} WHERE task_execution_id = $1 AND attempt = $2",
        task["id"],
        attempt,
        "CANCELLED" if cancelled else outcome,
        error,
        now,
        retry_at,
        tx.next_pos(2),
    )
    tx.notify(stream_key(task["tenant_id"]))
    if retry_at is not None:
        await tx.execute(
            "UPDATE task_executions SET status = 'PENDING', error = $2, worker_id = NULL, "
            "retry_at = $3, attempt_deadline = NULL, updated_at = $4 WHERE id = $1",
            task["id"],
            error,
            retry_at,
            now,
        )
        tx.on_commit(metrics.labelled(metrics.TASKS, "retried").inc)
        # A poll already waiting on this queue computed its deadline before this retry
        # existed: wake it so that it caps its wait at the new retryAt.
        tx.notify(task_key(task["tenant_id"], task["queue"]))
        return {"status": "PENDING", "retryAt": iso(retry_at)}
    final: Literal["CANCELLED", "FAILED"] = "CANCELLED" if cancelled else "FAILED"
    await tx.execute(
        "UPDATE task_executions SET status = $2, error = $3, "
        "attempt_deadline = NULL, completed_at = $4, updated_at = $4 WHERE id = $1",
        task["id"],
        final,
        error,
        now,
    )
    tx.on_commit(metrics.labelled(metrics.TASKS, final.lower()).inc)
    wf = task["workflow_execution_id"]
    if wf:
        event = (
            (EventType.TASK_CANCELLED, {"taskExecutionId": task["id"]})
            if cancelled
            else (EventType.TASK_FAILED, {"taskExecutionId": task["id"], "error": error})
        )
        await append_and_resume(tx, wf, [event])
    return {"status": final}


START_ATTEMPT = (
    "INSERT INTO task_attempts (task_execution_id, attempt, worker_id, status, started_at, "
    "started_pos) VALUES ($1, $2, $3, 'RUNNING', $4, {pos})"
)


async def stream_event(tx: Tx, task: Row, event: str, data: dict[str, Any], now: int) -> None:
    """Keep what a task streams (progress, stream data) for the streams to carry."""
    await tx.execute(
        "INSERT INTO stream_events (pos, tenant_id, workflow_execution_id, task_execution_id, "
        f"event, data, created_at) VALUES ({tx.pos_sql(1)}, $2, $3, $4, $5, $6, $7)",
        tx.next_pos(),
        task["tenant_id"],
        task["workflow_execution_id"],
        task["id"],
        event,
        dumps(data),
        now,
    )
    tx.notify(stream_key(task["tenant_id"]))


TASK_ROW = (
    "SELECT id, tenant_id, workflow_execution_id, queue, status, execution_count, max_retries, "
    "retry_initial_ms, retry_coefficient, retry_max_ms, cancel_requested, worker_id "
    "FROM task_executions WHERE id = $1"
)
TASK_FOR_UPDATE = TASK_ROW + " FOR UPDATE"


def _lane(req: AttemptRef, task_id: str) -> str:
    """The group-commit lane of a task's result: that of the workflow it writes to, which
    the worker names (`workflowExecutionId`; else the task id will do)."""
    return req.workflow_execution_id or task_id


class Tasks:
    def __init__(self, store: Store, group: GroupCommit) -> None:
        self.store = store
        self.group = group

    async def claim(
        self,
        tenant: Tenant,
        worker_id: str,
        queue: str,
        kinds: list[str],
        max_items: int,
    ) -> list[TaskItem]:
        now = now_ms()
        async with self.store.transaction() as tx:
            rows = await claims.claim(
                tx,
                "task_executions",
                assign="execution_count = execution_count + 1, "
                "started_at = COALESCE(started_at, $2), attempt_deadline = "
                "CASE WHEN timeout_ms IS NULL THEN NULL ELSE $2 + timeout_ms END",
                due=" AND retry_at <= $2",
                order="retry_at",
                returning="id, kind, input, execution_count, workflow_execution_id, queue, "
                "timeout_ms",
                worker_id=worker_id,
                tenant_id=tenant.id,
                queue=queue,
                kinds=kinds,
                limit=max_items,
                now=now,
            )
            if rows:
                await tx.executemany(
                    START_ATTEMPT.format(pos=tx.pos_sql(5)),
                    [(r["id"], r["execution_count"], worker_id, now, tx.next_pos()) for r in rows],
                )
                tx.notify(stream_key(tenant.id))  # task streams show them started
        return [shapes.task_item(r) for r in rows]

    async def next_retry_at(self, tenant: Tenant, queue: str, kinds: list[str]) -> int | None:
        """When the earliest delayed retry on this queue becomes due (caps a poll's wait)."""
        marks = ", ".join(f"${i + 3}" for i in range(len(kinds)))
        async with self.store.read() as tx:
            value = await tx.fetchval(
                "SELECT min(retry_at) FROM task_executions WHERE tenant_id = $1 AND queue = $2 "
                f"AND status = 'PENDING' AND kind IN ({marks})",
                tenant.id,
                queue,
                *kinds,
            )
        return None if value is None else int(value)

    async def _running(
        self, tx: Tx, tenant: Tenant, task_id: str, attempt: int, *, lock: bool = True
    ) -> Row:
        """The task row if `attempt` is its running attempt; NotFound or Conflict if not."""
        task = await tx.fetchrow(TASK_FOR_UPDATE if lock else TASK_ROW, task_id)
        if task is None or task["tenant_id"] != tenant.id:
            raise not_found(f"task execution {task_id}")
        if task["status"] != "RUNNING" or task["execution_count"] != attempt:
            raise stale(task_id, attempt)
        return task

    async def complete(self, tenant: Tenant, task_id: str, req: CompleteTask) -> CompleteAnswer:
        now = now_ms()
        output, attempt = req.output, req.attempt
        offered = eager.offer(req.worker_id, req.eager_activation, max_slots=1)

        async def write(tx: Tx) -> CompleteAnswer:
            handover = None if offered is None else offered.fresh()
            answer: CompleteAnswer = {"status": "COMPLETED"}
            # The check that this attempt is the running one is the UPDATE's WHERE.
            online = "" if handover is None else f", {claims.worker_online('$6', '$2')} AS online"
            task = await tx.fetchrow(
                "UPDATE task_executions SET status = 'COMPLETED', output = $4, error = NULL, "
                "progress = CASE WHEN progress IS NULL THEN NULL ELSE 1.0 END, "
                "attempt_deadline = NULL, completed_at = $5, updated_at = $5 "
                "WHERE id = $1 AND tenant_id = $2 AND status = 'RUNNING' "
                f"AND execution_count = $3 RETURNING id, workflow_execution_id{online}",
                task_id,
                tenant.id,
                attempt,
                dumps(output),
                now,
                *(() if handover is None else (handover.worker_id,)),
            )
            if task is None:
                await self._running(tx, tenant, task_id, attempt)  # raises NotFound or Conflict
                raise stale(task_id, attempt)
            tx.write(
                "UPDATE task_attempts SET status = 'COMPLETED', output = $3, finished_at = $4, "
                f"finished_pos = {tx.pos_sql(5)} WHERE task_execution_id = $1 AND attempt = $2",
                task_id,
                attempt,
                dumps(output),
                now,
                tx.next_pos(),
            )
            tx.notify(stream_key(tenant.id))
            wf = task["workflow_execution_id"]
            if wf:
                events: list[Event] = [
                    (EventType.TASK_COMPLETED, {"taskExecutionId": task_id, "output": output})
                ]
                if handover is not None and task["online"]:
                    answer["activation"] = await append_and_take(tx, wf, events, now, handover)
                else:
                    await append_and_resume(tx, wf, events, now)
            tx.on_commit(metrics.labelled(metrics.TASKS, "completed").inc)
            if answer.get("activation"):
                tx.on_commit(metrics.labelled(metrics.EAGER_HANDOVERS, "activation").inc)
            return answer

        return await self.group.run(_lane(req, task_id), write)

    async def fail(self, tenant: Tenant, task_id: str, req: FailTask) -> FailAnswer:
        # The worker stopped the attempt at its timeout: the attempt is TIMEOUT, as when
        # the server's own deadline for it passes first.
        outcome = "TIMEOUT" if req.timed_out else "FAILED"
        now = now_ms()

        async def write(tx: Tx) -> FailAnswer:
            task = await self._running(tx, tenant, task_id, req.attempt)
            return await end_attempt(
                tx, task, outcome, error=req.error, retryable=req.retryable, now=now
            )

        return await self.group.run(_lane(req, task_id), write)

    async def progress(self, tenant: Tenant, task_id: str, req: Progress) -> CancelledAnswer:
        details = req.details
        now = now_ms()
        async with self.store.transaction() as tx:
            task = await self._running(tx, tenant, task_id, req.attempt)
            await tx.execute(
                "UPDATE task_executions SET progress = $2, progress_details = $3, updated_at = $4 "
                "WHERE id = $1",
                task["id"],
                req.progress,
                details if details is None or isinstance(details, str) else dumps(details),
                now,
            )
            data = {"attempt": req.attempt, "progress": req.progress, "details": details}
            await stream_event(tx, task, "task_progress", data, now)
        return {"cancelled": bool(task["cancel_requested"])}

    async def stream_data(self, tenant: Tenant, task_id: str, req: StreamData) -> CancelledAnswer:
        async with self.store.transaction() as tx:
            task = await self._running(tx, tenant, task_id, req.attempt, lock=False)
            data = {"attempt": req.attempt, "streamType": req.stream_type, "data": req.data}
            await stream_event(tx, task, "task_stream", data, now_ms())
        return {"cancelled": bool(task["cancel_requested"])}

    async def heartbeat(self, tenant: Tenant, task_id: str, req: AttemptRef) -> CancelledAnswer:
        async with self.store.read() as tx:
            task = await self._running(tx, tenant, task_id, req.attempt, lock=False)
        return {"cancelled": bool(task["cancel_requested"])}

    async def append_logs(self, tenant: Tenant, req: AppendLogs) -> LogsAccepted:
        rows = []
        for entry in req.entries:
            ts_ms = now_ms() if entry.timestamp is None else epoch_ms(entry.timestamp)
            rows.append(
                (
                    str(uuid.uuid4()),
                    entry.task_execution_id,
                    entry.attempt,
                    entry.level.value,
                    entry.level.rank,
                    entry.message,
                    ts_ms,
                )
            )
        if not rows:
            return {"accepted": 0}
        async with self.store.transaction() as tx:
            ids = {r[1] for r in rows}
            marks = ", ".join(f"${i + 2}" for i in range(len(ids)))
            known = await tx.fetch(
                f"SELECT id FROM task_executions WHERE tenant_id = $1 AND id IN ({marks})",
                tenant.id,
                *ids,
            )
            if len(known) != len(ids):
                raise not_found("task execution of a log entry")
            # seq, a line's stream position, is also its arrival order (for stable paging)
            await tx.executemany(
                "INSERT INTO task_logs (id, task_execution_id, attempt, level, level_rank, message, "
                f"ts, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, {tx.pos_sql(8)})",
                [(*r, tx.next_pos()) for r in rows],
            )
            tx.notify(stream_key(tenant.id))
        return {"accepted": len(rows)}

    # -- reads --

    async def of_workflow(self, workflow_id: str) -> TaskList:
        """The workflow's tasks in scheduling order (their TASK_SCHEDULED sequence).

        Tasks scheduled by one submit share `created_at`, so that column alone cannot
        order them; the event log can.
        """
        async with self.store.read() as tx:
            rows = await tx.fetch(
                f"SELECT {shapes.TASK_COLUMNS} FROM task_executions "
                "WHERE workflow_execution_id = $1 ORDER BY created_at, id",
                workflow_id,
            )
            scheduled = await tx.fetch(
                "SELECT data FROM workflow_events WHERE workflow_execution_id = $1 "
                "AND event_type = 'TASK_SCHEDULED' ORDER BY sequence",
                workflow_id,
            )
        position = {loads(e["data"]).get("taskExecutionId"): i for i, e in enumerate(scheduled)}
        rows.sort(key=lambda r: position.get(r["id"], len(position)))  # stable
        return {"tasks": [shapes.task(r) for r in rows]}

    async def owned(self, tenant: Tenant, task_id: str, workflow_id: str | None) -> Row:
        """A task of the tenant; with `workflow_id` it must belong to that workflow."""
        async with self.store.read() as tx:
            row = await tx.fetchrow(
                f"SELECT tenant_id, {shapes.TASK_COLUMNS} FROM task_executions WHERE id = $1",
                task_id,
            )
        if row is None or row["tenant_id"] != tenant.id:
            raise not_found(f"task execution {task_id}")
        if workflow_id is not None and row["workflow_execution_id"] != workflow_id:
            raise not_found(f"task execution {task_id}")
        return row

    async def attempts(self, task_id: str) -> AttemptList:
        async with self.store.read() as tx:
            rows = await tx.fetch(
                "SELECT * FROM task_attempts WHERE task_execution_id = $1 ORDER BY attempt",
                task_id,
            )
        return {"attempts": [shapes.attempt(r) for r in rows]}

    async def logs(self, task_id: str, q: LogsQuery) -> LogPage:
        """Logs at or above `level` (a minimum), containing `search`, of one `attempt`."""
        filters = Filters("task_execution_id = ?", task_id)
        if q.level is not None:
            filters.add("level_rank >= ?", q.level.rank)
        if q.search:
            filters.add("lower(message) LIKE ?", f"%{q.search.lower()}%")
        if q.attempt is not None:
            filters.add("attempt = ?", q.attempt)
        found = await page(
            self.store,
            columns="id, level, message, attempt",
            table="task_logs",
            filters=filters,
            order=Order("logs", ("ts", "seq"), descending=False),
            limit=q.limit,
            offset=q.offset,
            cursor=q.cursor,
            shape=shapes.log,
        )
        return cast(
            LogPage, {"taskExecutionId": task_id, **found.answer("logs", q.limit, q.offset)}
        )
