"""Acting on executions: cancel, retry, signal, and settling promises."""

from __future__ import annotations

from aiohttp import web

from flovyn_server.api.common import body_object, engine, json, tenant

routes = web.RouteTableDef()
P = "/api/tenants/{slug}"


@routes.post(P + "/workflow-executions/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    return json(
        await engine(request).control.cancel(
            tenant(request), request.match_info["id"], await body_object(request)
        )
    )


@routes.post(P + "/workflow-executions/{id}/retry")
async def retry(request: web.Request) -> web.Response:
    return json(
        await engine(request).control.retry(
            tenant(request), request.match_info["id"], await body_object(request)
        )
    )


@routes.post(P + "/workflow-executions/{id}/signal")
async def signal(request: web.Request) -> web.Response:
    return json(
        await engine(request).control.signal(
            tenant(request), request.match_info["id"], await body_object(request)
        )
    )


@routes.post(P + "/promises/{identifier}/resolve")
async def resolve_promise(request: web.Request) -> web.Response:
    return json(
        await engine(request).control.settle_promise(
            tenant(request),
            request.match_info["identifier"],
            await body_object(request),
            resolve=True,
        )
    )


@routes.post(P + "/promises/{identifier}/reject")
async def reject_promise(request: web.Request) -> web.Response:
    return json(
        await engine(request).control.settle_promise(
            tenant(request),
            request.match_info["identifier"],
            await body_object(request),
            resolve=False,
        )
    )
