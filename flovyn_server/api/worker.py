"""The worker protocol: registration, long-polls, submits, task results, logs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter

from flovyn_server import metrics
from flovyn_server.api.common import P, engine, json, tenant
from flovyn_server.api.errors import answer, log
from flovyn_server.api.routing import Router
from flovyn_server.domain import InvalidInput, now_ms
from flovyn_server.engine import Engine
from flovyn_server.engine.tenants import Tenant
from flovyn_server.engine.wake import task_key, workflow_key
from flovyn_server.models.worker import (
    ActivationList,
    AppendLogs,
    AttemptRef,
    Batch,
    BatchAnswer,
    BatchOperation,
    BatchResult,
    CancelledAnswer,
    CompleteAnswer,
    CompleteOperation,
    CompleteTask,
    FailActivation,
    FailActivationAnswer,
    FailAnswer,
    FailOperation,
    FailTask,
    LogsAccepted,
    Poll,
    Progress,
    Register,
    Registered,
    StreamData,
    Submit,
    SubmitAnswer,
    SubmitOperation,
    TaskItemList,
    WorkerRef,
    WorkerStatusAnswer,
)

router = Router("Worker protocol")
W = P + "/worker"


async def _long_poll(request: web.Request, body: Poll, what: str) -> dict[str, Any]:
    """Claim up to `maxItems`, waiting until work is committed or the timeout passes."""
    eng = engine(request)
    t = tenant(request)
    if body.timeout_ms > eng.settings.max_poll_timeout_ms:
        raise InvalidInput(
            f"timeoutMs must be at most {eng.settings.max_poll_timeout_ms}",
            {"field": "timeoutMs"},
        )
    await eng.workers.touch(t, body.worker_id)
    deadline = asyncio.get_running_loop().time() + body.timeout_ms / 1000
    claim: Callable[[], Awaitable[list[Any]]]
    if what == "workflows":
        key = workflow_key(t.id, body.queue)

        def claim() -> Awaitable[list[Any]]:
            return eng.activations.claim(t, body.worker_id, body.queue, body.kinds, body.max_items)
    else:
        key = task_key(t.id, body.queue)

        def claim() -> Awaitable[list[Any]]:
            return eng.tasks.claim(t, body.worker_id, body.queue, body.kinds, body.max_items)

    items: list[Any] = []
    metrics.WAITING_POLLS.inc()
    try:
        while True:
            with eng.hub.waiter(key) as waiter:
                if request.transport is None:
                    # The poller hung up (or died): claim nothing that would be lost, and
                    # hand a wake-up meant for us to another poll.
                    if waiter.event.is_set():
                        eng.hub.wake([key])
                    break
                items = await claim() if body.kinds else []
                if len(items) == body.max_items:
                    eng.hub.wake([key])  # a full batch: more may be waiting for another poll
                remaining = deadline - asyncio.get_running_loop().time()
                if items or remaining <= 0 or eng.hub.closed:
                    break
                if what == "tasks" and body.kinds:
                    # A retry becomes due without any commit to wake us: wait until then.
                    due = await eng.tasks.next_retry_at(t, body.queue, body.kinds)
                    if due is not None:
                        remaining = min(remaining, max((due - now_ms()) / 1000, 0.001))
                await waiter.wait(remaining)
    finally:
        metrics.WAITING_POLLS.dec()
    return {"activations" if what == "workflows" else "tasks": items}


@router.post(
    W + "/register",
    answers={200: Registered},
    examples={
        "orders": {
            "name": "orders-worker",
            "queues": ["default"],
            "workflows": [{"kind": "order"}],
            "tasks": [{"kind": "charge-card", "retryPolicy": {"maxAttempts": 4}}],
        }
    },
)
async def register_worker(request: web.Request, body: Register) -> web.Response:
    """Register a worker process with the kinds it runs.

    The answer gives its id and the heartbeat interval. Its kinds become (or stay)
    workflow and task definitions."""
    return json(await engine(request).workers.register(tenant(request), body))


@router.post(W + "/heartbeat", answers={200: WorkerStatusAnswer})
async def worker_heartbeat(request: web.Request, body: WorkerRef) -> web.Response:
    """A sign of life; a worker silent past the liveness timeout loses what it held."""
    return json(await engine(request).workers.heartbeat(tenant(request), body))


@router.post(W + "/unregister", answers={200: WorkerStatusAnswer})
async def unregister_worker(request: web.Request, body: WorkerRef) -> web.Response:
    """A clean stop: what the worker still holds is released at once."""
    return json(await engine(request).workers.unregister(tenant(request), body))


_POLL_EXAMPLE = {
    "workerId": "2f1c8a9e-5d3b-4c7a-9e1f-0a2b3c4d5e6f",
    "queue": "default",
    "kinds": ["order"],
    "maxItems": 4,
    "timeoutMs": 20000,
}


@router.post(W + "/workflows/poll", answers={200: ActivationList}, examples={"poll": _POLL_EXAMPLE})
async def poll_workflows(request: web.Request, body: Poll) -> web.Response:
    """Long-poll for workflow activations, each with the execution's whole history."""
    return json(await _long_poll(request, body, "workflows"))


@router.post(
    W + "/tasks/poll",
    answers={200: TaskItemList},
    examples={"poll": {**_POLL_EXAMPLE, "kinds": ["charge-card"]}},
)
async def poll_tasks(request: web.Request, body: Poll) -> web.Response:
    """Long-poll for tasks; each claim starts an attempt."""
    return json(await _long_poll(request, body, "tasks"))


@router.post(
    W + "/workflows/{id}/submit",
    answers={200: SubmitAnswer},
    errors=(409,),
    examples={
        "schedule a task": {
            "workerId": "2f1c8a9e-5d3b-4c7a-9e1f-0a2b3c4d5e6f",
            "activationId": 1,
            "status": "SUSPENDED",
            "commands": [
                {
                    "type": "SCHEDULE_TASK",
                    "taskExecutionId": "7f8a3c1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b",
                    "kind": "charge-card",
                    "input": {"amount": 10},
                }
            ],
        },
        "complete": {
            "workerId": "2f1c8a9e-5d3b-4c7a-9e1f-0a2b3c4d5e6f",
            "activationId": 2,
            "status": "COMPLETED",
            "commands": [{"type": "COMPLETE_WORKFLOW", "output": {"charged": True}}],
        },
    },
)
async def submit_activation(request: web.Request, id: str, body: Submit) -> web.Response:
    """Apply the commands of an activation the worker holds.

    The commands are applied in order, in one transaction. 409 STALE_ACTIVATION when
    the worker no longer holds the activation: nothing is applied."""
    return json(await engine(request).activations.submit(tenant(request), id, body))


@router.post(
    W + "/workflows/{id}/fail-activation", answers={200: FailActivationAnswer}, errors=(409,)
)
async def fail_activation(request: web.Request, id: str, body: FailActivation) -> web.Response:
    """Fail an activation the worker could not replay.

    The execution becomes FAILED with its history unchanged, ready for a manual retry
    once a fix is deployed."""
    return json(await engine(request).activations.fail_activation(tenant(request), id, body))


@router.post(
    W + "/tasks/{taskId}/complete",
    answers={200: CompleteAnswer},
    errors=(409,),
    examples={
        "done": {
            "workerId": "2f1c8a9e-5d3b-4c7a-9e1f-0a2b3c4d5e6f",
            "attempt": 1,
            "output": {"chargeId": "ch-1"},
        }
    },
)
async def complete_task(request: web.Request, taskId: str, body: CompleteTask) -> web.Response:
    """End the running attempt with its output; 409 STALE_ATTEMPT if it is not running."""
    return json(await engine(request).tasks.complete(tenant(request), taskId, body))


@router.post(W + "/tasks/{taskId}/fail", answers={200: FailAnswer}, errors=(409,))
async def fail_task(request: web.Request, taskId: str, body: FailTask) -> web.Response:
    """End the running attempt as failed: PENDING with retryAt when a retry is due."""
    return json(await engine(request).tasks.fail(tenant(request), taskId, body))


@router.post(W + "/tasks/{taskId}/progress", answers={200: CancelledAnswer}, errors=(409,))
async def report_progress(request: web.Request, taskId: str, body: Progress) -> web.Response:
    """Record the attempt's progress (0..1); the answer says whether to stop."""
    return json(await engine(request).tasks.progress(tenant(request), taskId, body))


@router.post(W + "/tasks/{taskId}/stream", answers={200: CancelledAnswer}, errors=(409,))
async def stream_data(request: web.Request, taskId: str, body: StreamData) -> web.Response:
    """Send stream data of the running attempt (`streamType` token, progress, data or
    error, and `data`) to the execution's workflow stream (`task_stream` events); the
    answer says whether to stop."""
    return json(await engine(request).tasks.stream_data(tenant(request), taskId, body))


@router.post(W + "/tasks/{taskId}/heartbeat", answers={200: CancelledAnswer}, errors=(409,))
async def task_heartbeat(request: web.Request, taskId: str, body: AttemptRef) -> web.Response:
    """The attempt is alive; the answer says whether its cancellation was requested."""
    return json(await engine(request).tasks.heartbeat(tenant(request), taskId, body))


_OPERATION = TypeAdapter[BatchOperation](BatchOperation)


async def _run(
    eng: Engine, t: Tenant, op: SubmitOperation | CompleteOperation | FailOperation
) -> Any:
    if isinstance(op, SubmitOperation):
        return await eng.activations.submit(t, op.id, op.body)
    if isinstance(op, CompleteOperation):
        return await eng.tasks.complete(t, op.id, op.body)
    return await eng.tasks.fail(t, op.id, op.body)


@router.post(W + "/batch", answers={200: BatchAnswer})
async def batch(request: web.Request, body: Batch) -> web.Response:
    """Many submits, task completions and failures at once.

    They run side by side, sharing the group commit's transactions, and each gets the
    answer its own route would give, in order (a malformed operation gets its own 400
    and the others still run)."""
    eng, t = engine(request), tenant(request)

    async def run(raw: Any) -> BatchResult:
        kind = raw.get("type") if isinstance(raw, dict) else None
        kind = kind if kind in ("submit", "complete", "fail") else None
        try:
            result: BatchResult = {
                "status": 200,
                "body": await _run(eng, t, _OPERATION.validate_python(raw)),
            }
        except Exception as exc:
            status, error = answer(exc)
            if status == 500:
                log.exception("unhandled error in a batched %r", kind)
            result = {"status": status, "body": dict(error)}
        if kind is not None:
            metrics.labelled(metrics.BATCHED_OPERATIONS, kind, str(result["status"])).inc()
        return result

    results = await asyncio.gather(*(run(op) for op in body.operations))
    return json({"results": results})


@router.post(W + "/logs", answers={200: LogsAccepted}, errors=(404,))
async def append_logs(request: web.Request, body: AppendLogs) -> web.Response:
    """Append task log lines (the SDK batches them); 404 if a task is unknown."""
    return json(await engine(request).tasks.append_logs(tenant(request), body))
