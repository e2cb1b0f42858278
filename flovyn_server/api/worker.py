"""The worker protocol: registration, long-polls, submits, task results, logs."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from flovyn_server import metrics
from flovyn_server.api.common import body_action, body_object, engine, json, tenant
from flovyn_server.api.middleware import INTERNAL, error_body, log
from flovyn_server.domain import ApiError, bad_request, now_ms
from flovyn_server.engine import validate
from flovyn_server.engine.wake import task_key, workflow_key

routes = web.RouteTableDef()
W = "/api/tenants/{slug}/worker"


async def _long_poll(request: web.Request, what: str) -> web.Response:
    eng = engine(request)
    t = tenant(request)
    body = await body_object(request)
    worker_id = validate.string(body, "workerId")
    queue = validate.queue(body)
    kinds = validate.string_list(body, "kinds", [])
    max_items = validate.integer(body, "maxItems", 1, lo=1, hi=100)
    timeout_ms = validate.integer(
        body, "timeoutMs", 20_000, lo=0, hi=eng.settings.max_poll_timeout_ms
    )
    await eng.workers.touch(t, worker_id)
    deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
    if what == "workflows":
        key = workflow_key(t.id, queue)

        async def claim() -> list[dict[str, Any]]:
            return await eng.activations.claim(t, worker_id, queue, kinds, max_items)
    else:
        key = task_key(t.id, queue)

        async def claim() -> list[dict[str, Any]]:
            return await eng.tasks.claim(t, worker_id, queue, kinds, max_items)

    items: list[dict[str, Any]] = []
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
                items = await claim() if kinds else []
                if len(items) == max_items:
                    eng.hub.wake([key])  # a full batch: more may be waiting for another poll
                remaining = deadline - asyncio.get_running_loop().time()
                if items or remaining <= 0 or eng.hub.closed:
                    break
                if what == "tasks" and kinds:
                    # A retry becomes due without any commit to wake us: wait until then.
                    due = await eng.tasks.next_retry_at(t, queue, kinds)
                    if due is not None:
                        remaining = min(remaining, max((due - now_ms()) / 1000, 0.001))
                await waiter.wait(remaining)
    finally:
        metrics.WAITING_POLLS.dec()
    return json({"activations" if what == "workflows" else "tasks": items})


@routes.post(W + "/register")
async def register(request: web.Request) -> web.Response:
    return json(await engine(request).workers.register(tenant(request), await body_object(request)))


@routes.post(W + "/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    return json(
        await engine(request).workers.heartbeat(tenant(request), await body_object(request))
    )


@routes.post(W + "/unregister")
async def unregister(request: web.Request) -> web.Response:
    return json(
        await engine(request).workers.unregister(tenant(request), await body_object(request))
    )


@routes.post(W + "/workflows/poll")
async def poll_workflows(request: web.Request) -> web.Response:
    return await _long_poll(request, "workflows")


@routes.post(W + "/tasks/poll")
async def poll_tasks(request: web.Request) -> web.Response:
    return await _long_poll(request, "tasks")


# Results of held work: the path's id, the worker's JSON body, the engine decides.
routes.post(W + "/workflows/{id}/submit")(body_action(lambda e: e.activations.submit))
routes.post(W + "/workflows/{id}/fail-activation")(
    body_action(lambda e: e.activations.fail_activation)
)
routes.post(W + "/tasks/{id}/complete")(body_action(lambda e: e.tasks.complete))
routes.post(W + "/tasks/{id}/fail")(body_action(lambda e: e.tasks.fail))
routes.post(W + "/tasks/{id}/progress")(body_action(lambda e: e.tasks.progress))
routes.post(W + "/tasks/{id}/heartbeat")(body_action(lambda e: e.tasks.heartbeat))


# One request for many results: the operations run side by side, so they share the
# group commit's transactions, and each gets its own outcome in `results`.
_BATCHED = {
    "submit": lambda e: e.activations.submit,
    "complete": lambda e: e.tasks.complete,
    "fail": lambda e: e.tasks.fail,
}


@routes.post(W + "/batch")
async def batch(request: web.Request) -> web.Response:
    eng, t = engine(request), tenant(request)
    operations = (await body_object(request)).get("operations")
    if not isinstance(operations, list) or not 1 <= len(operations) <= 100:
        raise bad_request("operations must be a list of 1 to 100 objects")

    async def run(op: Any) -> dict[str, Any]:
        kind = op.get("type") if isinstance(op, dict) else None
        try:
            if kind not in _BATCHED:
                raise bad_request(f"each operation needs a type: one of {', '.join(_BATCHED)}")
            answer = await _BATCHED[kind](eng)(t, str(op.get("id")), op.get("body"))
            result = {"status": 200, "body": answer}
        except ApiError as err:
            result = {"status": err.status, "body": error_body(err)}
        except Exception:
            log.exception("unhandled error in a batched %r", kind)
            result = {"status": 500, "body": error_body(INTERNAL)}
        if kind in _BATCHED:
            metrics.labelled(metrics.BATCHED_OPERATIONS, kind, str(result["status"])).inc()
        return result

    return json({"results": await asyncio.gather(*(run(op) for op in operations))})


@routes.post(W + "/logs")
async def logs(request: web.Request) -> web.Response:
    return json(
        await engine(request).tasks.append_logs(tenant(request), await body_object(request))
    )
