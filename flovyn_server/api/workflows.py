"""Workflow executions over REST: trigger, list, read, events, tasks, attempts, logs."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from flovyn_server.api.common import body_object, engine, int_param, json, multi, page, tenant
from flovyn_server.engine import validate

routes = web.RouteTableDef()
P = "/api/tenants/{slug}"


@routes.post(P + "/workflows/{kind}/trigger")
async def trigger(request: web.Request) -> web.Response:
    answer, created = await engine(request).workflows.trigger(
        tenant(request), request.match_info["kind"], await body_object(request)
    )
    return json(answer, 201 if created else 200)


@routes.get(P + "/workflow-executions")
async def list_executions(request: web.Request) -> web.Response:
    limit, offset = page(request, 20)
    q = request.query
    filters = {
        "status": [s.upper() for s in multi(request, "status")],
        "kind": q.get("kind"),
        "queue": q.get("queue"),
        "parentId": q.get("parentId"),
        "createdAfter": q.get("createdAfter"),
        "createdBefore": q.get("createdBefore"),
    }
    return json(await engine(request).workflows.list(tenant(request), filters, limit, offset))


@routes.get(P + "/workflow-executions/{id}")
async def get_execution(request: web.Request) -> web.Response:
    return json(await engine(request).workflows.get(tenant(request), request.match_info["id"]))


@routes.get(P + "/workflow-executions/{id}/events")
async def events(request: web.Request) -> web.Response:
    since = int_param(request, "since_sequence", 0, lo=0, hi=2**31, alias="sinceSequence")
    limit = int_param(request, "limit", 1000, lo=1, hi=10000)
    return json(
        await engine(request).workflows.events(
            tenant(request), request.match_info["id"], since, limit
        )
    )


@routes.get(P + "/workflow-executions/{id}/tasks")
async def tasks(request: web.Request) -> web.Response:
    eng = engine(request)
    row = await eng.workflows.row(tenant(request), request.match_info["id"])
    return json(await eng.tasks.of_workflow(row["id"]))


@routes.get(P + "/workflow-executions/{id}/state")
async def state(request: web.Request) -> web.Response:
    return json(await engine(request).workflows.state(tenant(request), request.match_info["id"]))


@routes.get(P + "/workflow-executions/{id}/children")
async def children(request: web.Request) -> web.Response:
    return json(await engine(request).workflows.children(tenant(request), request.match_info["id"]))


async def _task_of_workflow(request: web.Request) -> dict[str, Any]:
    """The path's task if it belongs to the path's workflow of this tenant (else 404);
    one lookup: the task row names its tenant and workflow."""
    workflow_id = validate.uuid_text(request.match_info["id"], "workflow execution id")
    return await engine(request).tasks.owned(
        tenant(request), request.match_info["taskId"], workflow_id
    )


@routes.get(P + "/workflow-executions/{id}/tasks/{taskId}/attempts")
async def attempts(request: web.Request) -> web.Response:
    eng = engine(request)
    task = await _task_of_workflow(request)
    return json(await eng.tasks.attempts(task["id"]))


@routes.get(P + "/workflow-executions/{id}/tasks/{taskId}/logs")
async def logs(request: web.Request) -> web.Response:
    eng = engine(request)
    task = await _task_of_workflow(request)
    limit = int_param(request, "limit", 100, lo=1, hi=1000)
    offset = int_param(request, "offset", 0, lo=0, hi=10**9)
    return json(await eng.tasks.logs(task["id"], dict(request.query), limit, offset))
