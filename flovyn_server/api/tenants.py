"""Tenants, API keys and worker tokens."""

from __future__ import annotations

from aiohttp import web

from flovyn_server.api.common import P, engine, json, tenant
from flovyn_server.api.routing import Router
from flovyn_server.models.tenants import (
    ApiKeyAnswer,
    CreateCredential,
    CreateTenant,
    TenantAnswer,
    UpdateTenant,
    WorkerTokenAnswer,
)

router = Router("Tenants")


@router.post(
    "/api/tenants",
    answers={201: TenantAnswer},
    errors=(409,),
    examples={"acme": {"name": "Acme", "slug": "acme"}},
)
async def create_tenant(request: web.Request, body: CreateTenant) -> web.Response:
    """Create a tenant (admin key only); 409 when the slug is taken."""
    return json(await engine(request).tenants.create(body), 201)


@router.get(P, answers={200: TenantAnswer})
async def get_tenant(request: web.Request, slug: str) -> web.Response:
    """One tenant."""
    return json(await engine(request).tenants.get(slug))


@router.route(
    "PATCH",
    P,
    answers={200: TenantAnswer},
    examples={"keep 30 days": {"retentionSeconds": 2592000}},
)
async def update_tenant(request: web.Request, slug: str, body: UpdateTenant) -> web.Response:
    """Change a tenant's settings (admin key only): the fields sent, the others as
    they were. `retentionSeconds: null` goes back to the server's default."""
    return json(await engine(request).tenants.update(slug, body))


@router.post(P + "/api-keys", answers={201: ApiKeyAnswer})
async def create_api_key(request: web.Request, body: CreateCredential) -> web.Response:
    """Create an API key for the tenant's REST API; the key is shown this once."""
    return json(await engine(request).tenants.create_api_key(tenant(request), body), 201)


@router.post(P + "/worker-tokens", answers={201: WorkerTokenAnswer})
async def create_worker_token(request: web.Request, body: CreateCredential) -> web.Response:
    """Create a worker token for the worker protocol; the token is shown this once."""
    return json(await engine(request).tenants.create_worker_token(tenant(request), body), 201)
