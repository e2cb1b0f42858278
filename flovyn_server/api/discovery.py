"""What workers are connected and which workflow and task kinds they offer."""

from __future__ import annotations

from aiohttp import web

from flovyn_server.api.common import engine, json, page, tenant

routes = web.RouteTableDef()
P = "/api/tenants/{slug}"


@routes.get(P + "/workers")
async def list_workers(request: web.Request) -> web.Response:
    limit, offset = page(request, 50)
    filters = {"type": request.query.get("type"), "status": request.query.get("status")}
    return json(await engine(request).workers.list(tenant(request), filters, limit, offset))


@routes.get(P + "/workers/{id}")
async def get_worker(request: web.Request) -> web.Response:
    return json(await engine(request).workers.get(tenant(request), request.match_info["id"]))


@routes.get(P + "/workflow-definitions")
async def workflow_definitions(request: web.Request) -> web.Response:
    return json(await engine(request).definitions.list(tenant(request), "workflow"))


@routes.get(P + "/workflow-definitions/{kind}")
async def workflow_definition(request: web.Request) -> web.Response:
    return json(
        await engine(request).definitions.get(
            tenant(request), "workflow", request.match_info["kind"]
        )
    )


@routes.get(P + "/task-definitions")
async def task_definitions(request: web.Request) -> web.Response:
    return json(await engine(request).definitions.list(tenant(request), "task"))


@routes.get(P + "/task-definitions/{kind}")
async def task_definition(request: web.Request) -> web.Response:
    return json(
        await engine(request).definitions.get(tenant(request), "task", request.match_info["kind"])
    )
