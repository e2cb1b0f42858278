"""Authentication and metrics, once for every route (errors: `errors.py`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from flovyn_server import metrics
from flovyn_server.api.common import credential_for, engine, is_stream
from flovyn_server.domain import Forbidden, Unauthenticated

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tenant API keys reach their tenant's REST routes, worker tokens only the worker
    protocol, the admin key everything but the worker protocol."""
    route = request.match_info.route.resource
    canonical = route.canonical if route is not None else ""
    needed = credential_for(request.method, canonical)
    if needed is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if not header and is_stream(request, canonical) and "access_token" in request.query:
        # A browser's EventSource cannot send headers. (Never logged: no access log,
        # and errors name the path without its query.)
        header = "Bearer " + request.query["access_token"]
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise Unauthenticated("missing credentials: send 'Authorization: Bearer <key>'")
    who = await engine(request).tenants.authenticate(header[7:].strip())
    if who is None:
        raise Unauthenticated("unknown or revoked key")
    request["principal"] = who
    if needed == "admin":
        if who.role != "admin":
            raise Forbidden("only the admin key manages tenants")
        return await handler(request)
    slug = request.match_info["slug"]
    if (needed == "worker") != (who.role == "worker"):
        raise Forbidden(
            "worker tokens reach only the worker protocol; API keys only the REST API"
            if who.role != "admin"
            else "the admin key cannot act as a worker"
        )
    if who.role != "admin" and who.tenant_slug != slug:
        raise Forbidden(f"this key does not belong to tenant {slug!r}")
    request["tenant"] = await engine(request).tenants.resolve(slug)
    return await handler(request)


@web.middleware
async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        metrics.labelled(metrics.REQUESTS, request.method, name, str(status)).inc()
        if not is_stream(request, name):  # a stream lasts as long as its client: not a latency
            metrics.labelled(metrics.REQUEST_SECONDS, request.method, name).observe(
                time.perf_counter() - start
            )
