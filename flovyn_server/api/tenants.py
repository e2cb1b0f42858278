"""Tenants, API keys and worker tokens."""

from __future__ import annotations

from aiohttp import web

from flovyn_server.api.common import body_object, engine, json, tenant

routes = web.RouteTableDef()


@routes.post("/api/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    return json(await engine(request).tenants.create(await body_object(request)), 201)


@routes.get("/api/tenants/{slug}")
async def get_tenant(request: web.Request) -> web.Response:
    return json(await engine(request).tenants.get(request.match_info["slug"]))


@routes.post("/api/tenants/{slug}/api-keys")
async def create_api_key(request: web.Request) -> web.Response:
    made = await engine(request).tenants.create_credential(
        tenant(request), "api", await body_object(request)
    )
    return json(made, 201)


@routes.post("/api/tenants/{slug}/worker-tokens")
async def create_worker_token(request: web.Request) -> web.Response:
    made = await engine(request).tenants.create_credential(
        tenant(request), "worker", await body_object(request)
    )
    return json(made, 201)
