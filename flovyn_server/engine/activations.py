"""Workflow activations: claim with the whole history, then apply the worker's commands."""

from __future__ import annotations

import uuid
from typing import Any

from flovyn_server import metrics
from flovyn_server.domain import (
    Conflict,
    EventType,
    InvalidInput,
    not_found,
    now_ms,
    parse_ttl_ms,
)
from flovyn_server.engine import claims, eager, shapes
from flovyn_server.engine.group_commit import GroupCommit
from flovyn_server.engine.history import Event, insert_events, load_histories, reserve_positions
from flovyn_server.engine.idempotency import claim_key
from flovyn_server.engine.tasks import insert_task
from flovyn_server.engine.tenants import Tenant
from flovyn_server.engine.wake import DUE_KEY, status_changed, workflow_key
from flovyn_server.engine.workflows import create_execution, ended, finish
from flovyn_server.jsonio import dumps, loads
from flovyn_server.models.worker import (
    Activation,
    CancelTimer,
    ClearState,
    Command,
    CompleteWorkflow,
    CreatePromise,
    FailActivation,
    FailActivationAnswer,
    FailWorkflow,
    RecordOperation,
    ScheduleChildWorkflow,
    ScheduleTask,
    SetState,
    StartTimer,
    Submit,
    SubmitAnswer,
    TaskItem,
)
from flovyn_server.store.base import Row, Store, Tx


def stale_activation(activation: int, workflow_id: str) -> Conflict:
    return Conflict(
        f"activation {activation} of {workflow_id} is not held by this worker",
        code="STALE_ACTIVATION",
    )


class Activations:
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
    ) -> list[Activation]:
        """Claim up to `max_items` PENDING executions; each comes with its full history."""
        async with self.store.transaction() as tx:
            rows = await claims.claim(
                tx,
                "workflow_executions",
                assign="activation_id = activation_id + 1, resume_requested = 0, "
                "started_at = COALESCE(started_at, $2)",
                due="",
                order="available_at",
                returning=shapes.ACTIVATION_COLUMNS,
                worker_id=worker_id,
                tenant_id=tenant.id,
                queue=queue,
                kinds=kinds,
                limit=max_items,
                now=now_ms(),
            )
            if not rows:
                return []
            history = await load_histories(tx, [r["id"] for r in rows])
        return [shapes.activation(r, history[r["id"]]) for r in rows]

    async def _held(
        self, tx: Tx, tenant: Tenant, workflow_id: str, worker_id: str, activation: int
    ) -> Row:
        """The execution, locked, if the worker holds this activation; NotFound or
        Conflict if not."""
        row = await tx.fetchrow(
            "SELECT id, tenant_id, kind, queue, status, worker_id, activation_id, parent_id, "
            "child_name FROM workflow_executions WHERE id = $1 FOR UPDATE",
            workflow_id,
        )
        if row is None or row["tenant_id"] != tenant.id:
            raise not_found(f"workflow execution {workflow_id}")
        if (row["status"], row["worker_id"], row["activation_id"]) != (
            "RUNNING",
            worker_id,
            activation,
        ):
            raise stale_activation(activation, workflow_id)
        return row

    async def _hold_and_end(
        self,
        tx: Tx,
        tenant: Tenant,
        workflow_id: str,
        req: Submit,
        handover: eager.Offer | None,
        status: str,
        output: Any,
        error: str | None,
        reserved: int,
        now: int,
    ) -> dict[str, Any]:
        """The submit's UPDATE: if the worker holds this activation, set the outcome
        (SUSPENDED: WAITING, or PENDING when a resume was requested meanwhile) and
        reserve `reserved` sequences; NotFound or Conflict if it does not."""
        worker_id, activation = req.worker_id, req.activation_id
        online = "" if handover is None else f", {claims.worker_online('$3', '$2')} AS online"
        positions, first = reserve_positions(tx, reserved, 10)
        row = await tx.fetchrow(
            "UPDATE workflow_executions SET status = CASE WHEN $5 = 'SUSPENDED' THEN "
            "CASE WHEN resume_requested = 1 THEN 'PENDING' ELSE 'WAITING' END ELSE $5 END, "
            "output = CASE WHEN $5 = 'SUSPENDED' THEN output ELSE $6 END, "
            "error = CASE WHEN $5 = 'SUSPENDED' THEN error ELSE $7 END, "
            "completed_at = CASE WHEN $5 = 'SUSPENDED' THEN completed_at ELSE $8 END, "
            "resume_requested = 0, worker_id = NULL, cancel_requested = CASE WHEN $5 = "
            "'SUSPENDED' THEN cancel_requested ELSE 0 END, "
            "current_sequence = current_sequence + $9, updated_at = $8, "
            f"{positions} "
            "WHERE id = $1 AND tenant_id = $2 AND status = 'RUNNING' AND worker_id = $3 "
            "AND activation_id = $4 RETURNING id, tenant_id, kind, queue, status, parent_id, "
            f"child_name, current_sequence, stream_pos{online}",
            workflow_id,
            tenant.id,
            worker_id,
            activation,
            status,
            None if output is None else dumps(output),
            error,
            now,
            reserved,
            first,
        )
        if row is None:
            await self._held(tx, tenant, workflow_id, worker_id, activation)  # NotFound or Conflict
            raise stale_activation(activation, workflow_id)
        if handover is not None:
            handover.online = bool(row["online"])
        status_changed(tx, tenant.id, workflow_id)
        return row

    async def submit(self, tenant: Tenant, workflow_id: str, req: Submit) -> SubmitAnswer:
        """Apply an activation's commands in order, in one transaction, with its outcome."""
        status = req.status
        offered = eager.offer(req.worker_id, req.eager_tasks)
        # The outcome comes first: the UPDATE that checks the activation is held also
        # sets it and reserves the sequences of the events, one statement in all.
        commands: list[Command] = list(req.commands)
        output, error, final_event = None, None, None
        if status in ("COMPLETED", "FAILED"):
            wanted = CompleteWorkflow if status == "COMPLETED" else FailWorkflow
            if not commands or not isinstance(commands[-1], wanted):
                name = "COMPLETE_WORKFLOW" if status == "COMPLETED" else "FAIL_WORKFLOW"
                raise InvalidInput(f"status {status} needs a final {name} command")
            last = commands.pop()
            if isinstance(last, CompleteWorkflow):
                output = last.output
                final_event = (EventType.WORKFLOW_COMPLETED, {"output": output})
            elif isinstance(last, FailWorkflow):
                error = last.error or "workflow failed"
                data = {"error": error}
                if last.stack_trace:
                    data["stackTrace"] = last.stack_trace
                final_event = (EventType.WORKFLOW_EXECUTION_FAILED, data)
        now = now_ms()

        async def write(tx: Tx) -> SubmitAnswer:
            handover = None if offered is None else offered.fresh()
            handed: list[TaskItem] = []
            ending = final_event
            if status == "CANCELLED":
                reason = await tx.fetchval(
                    "SELECT data FROM workflow_events WHERE workflow_execution_id = $1 "
                    "AND event_type = 'CANCELLATION_REQUESTED' ORDER BY sequence DESC LIMIT 1",
                    workflow_id,
                )
                if reason is None:
                    raise InvalidInput("status CANCELLED needs a cancellation request")
                ending = (
                    EventType.WORKFLOW_CANCELLED,
                    {"reason": loads(reason).get("reason")},
                )
            reserved = len(commands) + (ending is not None)
            row = await self._hold_and_end(
                tx, tenant, workflow_id, req, handover, status, output, error, reserved, now
            )
            events: list[Event] = []
            for command in commands:
                if isinstance(command, ScheduleTask):
                    task = await self._schedule_task(tx, tenant, row, command, now, handover)
                    if task is not None:
                        events.append(task_scheduled(task, command))
                        if task["attempt"]:  # handed over, already RUNNING
                            handed.append(task)
                else:
                    event = await self._apply(tx, tenant, row, command, now)
                    if event is not None:
                        events.append(event)
            if ending is not None:
                events.append(ending)
            sequence = int(row["current_sequence"])
            if len(events) < reserved:  # a command that was a no-op: give back its number
                sequence = int(
                    await tx.fetchval(
                        "UPDATE workflow_executions SET current_sequence = current_sequence - $2 "
                        "WHERE id = $1 RETURNING current_sequence",
                        workflow_id,
                        reserved - len(events),
                    )
                )
            await insert_events(
                tx,
                tenant.id,
                workflow_id,
                events,
                sequence,
                now,
                int(row["stream_pos"]),
                reserved,
            )
            if ending is not None:
                await ended(tx, row, row["status"], output=output, error=error)
            elif row["status"] == "PENDING":
                tx.notify(workflow_key(tenant.id, row["queue"]))
            answer: SubmitAnswer = {"status": row["status"], "currentSequence": sequence}
            if handover is not None:
                answer["tasks"] = handed
                count = metrics.labelled(metrics.EAGER_HANDOVERS, "task")
                tx.on_commit(lambda: count.inc(len(handed)))
            return answer

        return await self.group.run(workflow_id, write)

    async def _schedule_task(
        self,
        tx: Tx,
        tenant: Tenant,
        wf: Row,
        cmd: ScheduleTask,
        now: int,
        handover: eager.Offer | None,
    ) -> TaskItem | None:
        """Insert the task; hand it to the submitting worker when its offer covers it."""
        run_by = None
        queue = cmd.queue or wf["queue"]
        if handover is not None and handover.wants(cmd.kind, queue):
            run_by = handover.worker_id
            handover.slots -= 1
        return await insert_task(
            tx,
            tenant.id,
            cmd,
            workflow_id=wf["id"],
            now=now,
            default_queue=wf["queue"],
            run_by=run_by,
        )

    async def _apply(self, tx: Tx, tenant: Tenant, wf: Row, cmd: Command, now: int) -> Event | None:
        """Apply one command (all but SCHEDULE_TASK); its event, or None for a no-op."""
        if isinstance(cmd, StartTimer):
            inserted = await tx.execute(
                "INSERT INTO timers (id, tenant_id, workflow_execution_id, fire_at, status) "
                "VALUES ($1, $2, $3, $4, 'PENDING') ON CONFLICT (id) DO NOTHING",
                cmd.timer_id,
                tenant.id,
                wf["id"],
                now + cmd.duration_ms,
            )
            tx.notify(DUE_KEY)
            return (
                (EventType.TIMER_STARTED, {"timerId": cmd.timer_id, "durationMs": cmd.duration_ms})
                if inserted
                else None
            )
        if isinstance(cmd, CancelTimer):
            changed = await tx.execute(
                "UPDATE timers SET status = 'CANCELLED' WHERE id = $1 AND workflow_execution_id = $2 "
                "AND status = 'PENDING'",
                cmd.timer_id,
                wf["id"],
            )
            return (EventType.TIMER_CANCELLED, {"timerId": cmd.timer_id}) if changed else None
        if isinstance(cmd, CreatePromise):
            return await create_promise(tx, tenant, wf, cmd, now)
        if isinstance(cmd, ScheduleChildWorkflow):
            child_id = cmd.child_workflow_execution_id
            created = await create_execution(
                tx,
                tenant.id,
                execution_id=child_id,
                kind=cmd.kind,
                queue=cmd.queue or wf["queue"],
                input=cmd.input,
                now=now,
                parent_id=wf["id"],
                child_name=cmd.child_execution_name,
            )
            if not created:
                existing = await tx.fetchrow(
                    "SELECT kind, parent_id FROM workflow_executions WHERE id = $1", child_id
                )
                if existing is None or (existing["kind"], existing["parent_id"]) != (
                    cmd.kind,
                    wf["id"],
                ):
                    raise Conflict(f"execution {child_id} exists already", code="ID_CONFLICT")
                return None
            return (
                EventType.CHILD_WORKFLOW_INITIATED,
                {
                    "childExecutionName": cmd.child_execution_name,
                    "childWorkflowKind": cmd.kind,
                    "childWorkflowExecutionId": child_id,
                },
            )
        if isinstance(cmd, RecordOperation):
            return (
                EventType.OPERATION_COMPLETED,
                {"operationName": cmd.operation_name, "result": cmd.result},
            )
        if isinstance(cmd, SetState):
            await tx.execute(
                "INSERT INTO workflow_state (workflow_execution_id, key, value) VALUES ($1, $2, $3) "
                "ON CONFLICT (workflow_execution_id, key) DO UPDATE SET value = excluded.value",
                wf["id"],
                cmd.key,
                dumps(cmd.value),
            )
            return (EventType.STATE_SET, {"key": cmd.key, "value": cmd.value})
        if isinstance(cmd, ClearState):
            await tx.execute(
                "DELETE FROM workflow_state WHERE workflow_execution_id = $1 AND key = $2",
                wf["id"],
                cmd.key,
            )
            return (EventType.STATE_CLEARED, {"key": cmd.key})
        raise InvalidInput(f"{cmd.type} must be the last command, with status COMPLETED or FAILED")

    async def fail_activation(
        self, tenant: Tenant, workflow_id: str, req: FailActivation
    ) -> FailActivationAnswer:
        """The worker could not replay: FAILED without advancing the history."""
        async with self.store.transaction() as tx:
            row = await self._held(tx, tenant, workflow_id, req.worker_id, req.activation_id)
            await finish(tx, row, "FAILED", error=f"{req.error_type}: {req.error}", now=now_ms())
        return {"status": "FAILED"}


def task_scheduled(task: TaskItem, cmd: ScheduleTask) -> Event:
    return (
        EventType.TASK_SCHEDULED,
        {
            "taskExecutionId": task["taskExecutionId"],
            "kind": task["kind"],
            "input": task["input"],
            "maxRetries": cmd.max_retries,
            "queue": task["queue"],
        },
    )


async def create_promise(
    tx: Tx, tenant: Tenant, wf: Row, cmd: CreatePromise, now: int
) -> Event | None:
    """A named promise of the execution; with `idempotencyKey` it can also be settled as
    `key:<idempotencyKey>` (a key stays bound while its promise is pending)."""
    name, timeout, key = cmd.promise_name, cmd.timeout_ms, cmd.idempotency_key
    promise_id = str(uuid.uuid4())
    inserted = await tx.execute(
        "INSERT INTO promises (id, tenant_id, workflow_execution_id, name, status, timeout_at, "
        "created_at) VALUES ($1, $2, $3, $4, 'PENDING', $5, $6) "
        "ON CONFLICT (workflow_execution_id, name) DO NOTHING",
        promise_id,
        tenant.id,
        wf["id"],
        name,
        None if timeout is None else now + timeout,
        now,
    )
    if not inserted:
        return None
    if key is not None:

        async def settled(target: str) -> bool:
            status = await tx.fetchval("SELECT status FROM promises WHERE id = $1", target)
            return bool(status != "PENDING")

        ttl = parse_ttl_ms(cmd.idempotency_key_ttl)
        holder = await claim_key(
            tx,
            tenant.id,
            "promise",
            key,
            target_id=promise_id,
            ttl_ms=ttl,
            now=now,
            reusable=settled,
        )
        if holder is not None:
            raise Conflict(
                f"promise key {key!r} belongs to another pending promise", code="ID_CONFLICT"
            )
    if timeout is not None:
        tx.notify(DUE_KEY)
    data: dict[str, Any] = {"promiseId": promise_id, "promiseName": name}
    if timeout is not None:
        data["timeoutMs"] = timeout
    if key is not None:
        data["idempotencyKey"] = key
    return (EventType.PROMISE_CREATED, data)
