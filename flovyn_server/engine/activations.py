"""Workflow activations: claim with the whole history, then apply the worker's commands."""

from __future__ import annotations

import uuid
from typing import Any

from flovyn_server import metrics
from flovyn_server.domain import (
    ApiError,
    EventType,
    bad_request,
    not_found,
    now_ms,
    parse_ttl_ms,
)
from flovyn_server.engine import claims, eager, shapes, validate
from flovyn_server.engine.group_commit import GroupCommit
from flovyn_server.engine.history import Event, insert_events, load_histories
from flovyn_server.engine.idempotency import claim_key
from flovyn_server.engine.tasks import insert_task
from flovyn_server.engine.tenants import Tenant
from flovyn_server.engine.wake import DUE_KEY, workflow_key
from flovyn_server.engine.workflows import create_execution, ended, finish
from flovyn_server.jsonio import dumps
from flovyn_server.store.base import Store, Tx

SUBMIT_STATUSES = ("SUSPENDED", "COMPLETED", "FAILED", "CANCELLED")


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
    ) -> list[dict[str, Any]]:
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
        self, tx: Tx, tenant: Tenant, workflow_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """The execution, locked, if the worker holds this activation; 404 or 409 if not."""
        workflow_id = validate.uuid_text(workflow_id, "workflow execution id")
        worker_id = validate.string(body, "workerId")
        activation = validate.integer(body, "activationId", lo=0)
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
            raise ApiError(
                409,
                "STALE_ACTIVATION",
                f"activation {activation} of {workflow_id} is not held by this worker",
            )
        return row

    async def _hold_and_end(
        self,
        tx: Tx,
        tenant: Tenant,
        workflow_id: str,
        body: dict[str, Any],
        handover: eager.Offer | None,
        status: str,
        output: Any,
        error: str | None,
        reserved: int,
        now: int,
    ) -> dict[str, Any]:
        """The submit's UPDATE: if the worker holds this activation, set the outcome
        (SUSPENDED: WAITING, or PENDING when a resume was requested meanwhile) and
        reserve `reserved` sequences; 404 or 409 if it does not."""
        worker_id = validate.string(body, "workerId")
        activation = validate.integer(body, "activationId", lo=0)
        online = "" if handover is None else f", {claims.worker_online('$3', '$2')} AS online"
        row = await tx.fetchrow(
            "UPDATE workflow_executions SET status = CASE WHEN $5 = 'SUSPENDED' THEN "
            "CASE WHEN resume_requested = 1 THEN 'PENDING' ELSE 'WAITING' END ELSE $5 END, "
            "output = CASE WHEN $5 = 'SUSPENDED' THEN output ELSE $6 END, "
            "error = CASE WHEN $5 = 'SUSPENDED' THEN error ELSE $7 END, "
            "completed_at = CASE WHEN $5 = 'SUSPENDED' THEN completed_at ELSE $8 END, "
            "resume_requested = 0, worker_id = NULL, "
            "current_sequence = current_sequence + $9, updated_at = $8 "
            "WHERE id = $1 AND tenant_id = $2 AND status = 'RUNNING' AND worker_id = $3 "
            "AND activation_id = $4 RETURNING id, tenant_id, kind, queue, status, parent_id, "
            f"child_name, current_sequence{online}",
            workflow_id,
            tenant.id,
            worker_id,
            activation,
            status,
            None if output is None else dumps(output),
            error,
            now,
            reserved,
        )
        if row is None:
            await self._held(tx, tenant, workflow_id, body)  # raises 404 or 409
            raise ApiError(409, "STALE_ACTIVATION", f"activation {activation} is not held")
        if handover is not None:
            handover.online = bool(row["online"])
        return row

    async def submit(
        self, tenant: Tenant, workflow_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        body = validate.body_object(body)
        status = body.get("status")
        if status not in SUBMIT_STATUSES:
            raise bad_request(f"status must be one of {', '.join(SUBMIT_STATUSES)}")
        commands = body.get("commands", [])
        if not isinstance(commands, list) or not all(isinstance(c, dict) for c in commands):
            raise bad_request("commands must be a list of objects")
        offered = eager.offer(body, "eagerTasks")  # a bad offer is a 400 before anything runs
        workflow_id = validate.uuid_text(workflow_id, "workflow execution id")
        # The outcome comes first: the UPDATE that checks the activation is held also
        # sets it and reserves the sequences of the events, one statement in all.
        output, error, final_event = None, None, None
        if status in ("COMPLETED", "FAILED"):
            wanted = "COMPLETE_WORKFLOW" if status == "COMPLETED" else "FAIL_WORKFLOW"
            if not commands or commands[-1].get("type") != wanted:
                raise bad_request(f"status {status} needs a final {wanted} command")
            *commands, last = commands
            if status == "COMPLETED":
                output = last.get("output")
                final_event = (EventType.WORKFLOW_COMPLETED, {"output": output})
            else:
                error = str(last.get("error") or "workflow failed")
                data = {"error": error}
                if last.get("stackTrace"):
                    data["stackTrace"] = str(last["stackTrace"])
                final_event = (EventType.WORKFLOW_EXECUTION_FAILED, data)
        now = now_ms()

        async def write(tx: Tx) -> dict[str, Any]:
            handover = None if offered is None else offered.fresh()
            handed: list[dict[str, Any]] = []
            ending = final_event
            if status == "CANCELLED":
                reason = await tx.fetchval(
                    "SELECT data FROM workflow_events WHERE workflow_execution_id = $1 "
                    "AND event_type = 'CANCELLATION_REQUESTED' ORDER BY sequence DESC LIMIT 1",
                    workflow_id,
                )
                if reason is None:
                    raise bad_request("status CANCELLED needs a cancellation request")
                ending = (
                    EventType.WORKFLOW_CANCELLED,
                    {"reason": shapes.loads(reason).get("reason")},
                )
            reserved = len(commands) + (ending is not None)
            row = await self._hold_and_end(
                tx, tenant, workflow_id, body, handover, status, output, error, reserved, now
            )
            events: list[Event] = []
            for command in commands:
                if command.get("type") == "SCHEDULE_TASK":
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
            await insert_events(tx, workflow_id, events, sequence, now)
            if ending is not None:
                await ended(tx, row, row["status"], output=output, error=error)
            elif row["status"] == "PENDING":
                tx.notify(workflow_key(tenant.id, row["queue"]))
            answer: dict[str, Any] = {"status": row["status"], "currentSequence": sequence}
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
        wf: dict[str, Any],
        cmd: dict[str, Any],
        now: int,
        handover: eager.Offer | None,
    ) -> dict[str, Any] | None:
        """Insert the task; hand it to the submitting worker when its offer covers it."""
        run_by = None
        queue = validate.queue(cmd, "queue", None) or wf["queue"]
        if handover is not None and handover.wants(str(cmd.get("kind")), queue):
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

    async def _apply(
        self, tx: Tx, tenant: Tenant, wf: dict[str, Any], cmd: dict[str, Any], now: int
    ) -> Event | None:
        kind = cmd.get("type")
        if kind == "START_TIMER":
            timer_id = validate.string(cmd, "timerId")
            duration = validate.integer(cmd, "durationMs", lo=0)
            inserted = await tx.execute(
                "INSERT INTO timers (id, tenant_id, workflow_execution_id, fire_at, status) "
                "VALUES ($1, $2, $3, $4, 'PENDING') ON CONFLICT (id) DO NOTHING",
                timer_id,
                tenant.id,
                wf["id"],
                now + duration,
            )
            tx.notify(DUE_KEY)
            return (
                (EventType.TIMER_STARTED, {"timerId": timer_id, "durationMs": duration})
                if inserted
                else None
            )
        if kind == "CANCEL_TIMER":
            timer_id = validate.string(cmd, "timerId")
            changed = await tx.execute(
                "UPDATE timers SET status = 'CANCELLED' WHERE id = $1 AND workflow_execution_id = $2 "
                "AND status = 'PENDING'",
                timer_id,
                wf["id"],
            )
            return (EventType.TIMER_CANCELLED, {"timerId": timer_id}) if changed else None
        if kind == "CREATE_PROMISE":
            return await create_promise(tx, tenant, wf, cmd, now)
        if kind == "SCHEDULE_CHILD_WORKFLOW":
            child_id = validate.uuid_text(validate.string(cmd, "childWorkflowExecutionId"))
            child_kind = validate.string(cmd, "kind")
            name = validate.string(cmd, "childExecutionName")
            created = await create_execution(
                tx,
                tenant.id,
                execution_id=child_id,
                kind=child_kind,
                queue=validate.queue(cmd, "queue", None) or wf["queue"],
                input=cmd.get("input"),
                now=now,
                parent_id=wf["id"],
                child_name=name,
            )
            if not created:
                existing = await tx.fetchrow(
                    "SELECT kind, parent_id FROM workflow_executions WHERE id = $1", child_id
                )
                if existing is None or (existing["kind"], existing["parent_id"]) != (
                    child_kind,
                    wf["id"],
                ):
                    raise ApiError(409, "ID_CONFLICT", f"execution {child_id} exists already")
                return None
            return (
                EventType.CHILD_WORKFLOW_INITIATED,
                {
                    "childExecutionName": name,
                    "childWorkflowKind": child_kind,
                    "childWorkflowExecutionId": child_id,
                },
            )
        if kind == "RECORD_OPERATION":
            name = validate.string(cmd, "operationName")
            return (
                EventType.OPERATION_COMPLETED,
                {"operationName": name, "result": cmd.get("result")},
            )
        if kind == "SET_STATE":
            key = validate.string(cmd, "key")
            await tx.execute(
                "INSERT INTO workflow_state (workflow_execution_id, key, value) VALUES ($1, $2, $3) "
                "ON CONFLICT (workflow_execution_id, key) DO UPDATE SET value = excluded.value",
                wf["id"],
                key,
                dumps(cmd.get("value")),
            )
            return (EventType.STATE_SET, {"key": key, "value": cmd.get("value")})
        if kind == "CLEAR_STATE":
            key = validate.string(cmd, "key")
            await tx.execute(
                "DELETE FROM workflow_state WHERE workflow_execution_id = $1 AND key = $2",
                wf["id"],
                key,
            )
            return (EventType.STATE_CLEARED, {"key": key})
        raise bad_request(f"unknown or misplaced command {kind!r}")

    async def fail_activation(
        self, tenant: Tenant, workflow_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """The worker could not replay: FAILED without advancing the history."""
        body = validate.body_object(body)
        error = str(body.get("error") or "activation failed")
        error_type = str(body.get("errorType") or "ActivationError")
        async with self.store.transaction() as tx:
            row = await self._held(tx, tenant, workflow_id, body)
            await finish(tx, row, "FAILED", error=f"{error_type}: {error}", now=now_ms())
        return {"status": "FAILED"}


def task_scheduled(task: dict[str, Any], cmd: dict[str, Any]) -> Event:
    return (
        EventType.TASK_SCHEDULED,
        {
            "taskExecutionId": task["taskExecutionId"],
            "kind": task["kind"],
            "input": task["input"],
            "maxRetries": cmd["maxRetries"],
            "queue": task["queue"],
        },
    )


async def create_promise(
    tx: Tx, tenant: Tenant, wf: dict[str, Any], cmd: dict[str, Any], now: int
) -> Event | None:
    """A named promise of the execution; with `idempotencyKey` it can also be settled as
    `key:<idempotencyKey>` (a key stays bound while its promise is pending)."""
    name = validate.string(cmd, "promiseName")
    timeout = validate.integer(cmd, "timeoutMs", None, lo=0)
    key = validate.string(cmd, "idempotencyKey", None, max_len=512)
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
            return status != "PENDING"

        ttl = parse_ttl_ms(cmd.get("idempotencyKeyTTL"))
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
            raise ApiError(
                409, "ID_CONFLICT", f"promise key {key!r} belongs to another pending promise"
            )
    if timeout is not None:
        tx.notify(DUE_KEY)
    data: dict[str, Any] = {"promiseId": promise_id, "promiseName": name}
    if timeout is not None:
        data["timeoutMs"] = timeout
    if key is not None:
        data["idempotencyKey"] = key
    return (EventType.PROMISE_CREATED, data)
