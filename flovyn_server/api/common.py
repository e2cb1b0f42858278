"""What every handler uses: typed app keys, the caller's tenant, JSON answers."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web

from flovyn_server.engine import Engine
from flovyn_server.engine.tenants import Principal, Tenant
from flovyn_server.jsonio import dumps_bytes
from flovyn_server.streams.hub import StreamHub

ENGINE = web.AppKey("engine", Engine)
STREAMS = web.AppKey("streams", StreamHub)
MAX_BODY = web.AppKey("max_body", int)
STREAM_ROUTES = web.AppKey("stream_routes", frozenset[str])  # canonical paths
P = "/api/tenants/{slug}"  # the tenant prefix of the REST API and the worker protocol


Credential = Literal["admin", "api", "worker"]


def credential_for(method: str, route: str) -> Credential | None:
    """Which credential a route (its method and canonical path) takes: the admin key
    creates and changes tenants, worker tokens reach the worker protocol, API keys (or
    the admin key) the rest of a tenant's routes; health, metrics and docs take none."""
    if not route.startswith("/api/tenants"):
        return None
    if route == "/api/tenants" or (route == P and method == "PATCH"):
        return "admin"
    return "worker" if route.startswith(P + "/worker/") else "api"


def is_stream(request: web.Request, route: str) -> bool:
    """Whether a route (its canonical path) answers with a Server-Sent Event stream."""
    return route in request.app[STREAM_ROUTES]


def engine(request: web.Request) -> Engine:
    return request.app[ENGINE]


def tenant(request: web.Request) -> Tenant:
    """The tenant of the path, set by the auth middleware after checking the caller."""
    value: Tenant = request["tenant"]
    return value


def principal(request: web.Request) -> Principal:
    value: Principal = request["principal"]
    return value


def json(data: Any, status: int = 200) -> web.Response:
    """An answer: `data` is one of the answer shapes of `flovyn_server.models`."""
    return web.Response(body=dumps_bytes(data), status=status, content_type="application/json")
