"""Errors, authentication and metrics, once for every route."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from flovyn_server import metrics
from flovyn_server.api.common import engine, json
from flovyn_server.domain import ApiError

log = logging.getLogger("flovyn_server.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


INTERNAL = ApiError(500, "INTERNAL", "internal server error (logged)")


def error_body(err: ApiError) -> dict[str, object]:
    payload: dict[str, object] = {"error": err.message, "code": err.code}
    if err.details:
        payload["details"] = err.details
    return payload


def error_response(err: ApiError) -> web.Response:
    return json(error_body(err), err.status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = (
            exc.text
            if exc.status != 413
            else (f"request body is larger than the limit of {request.app['max_body']} bytes")
        )
        if exc.status == 404:
            message = f"no route for {request.method} {request.path}"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        return error_response(
            ApiError(exc.status, _HTTP_CODES.get(exc.status, "HTTP_ERROR"), message or exc.reason)
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(INTERNAL)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message)


def _forbidden(message: str) -> ApiError:
    return ApiError(403, "FORBIDDEN", message)


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tenant API keys reach their tenant's REST routes, worker tokens only the worker
    protocol, the admin key everything but the worker protocol."""
    route = request.match_info.route.resource
    canonical = route.canonical if route is not None else ""
    if not canonical.startswith("/api/tenants") or canonical.startswith("/api/docs"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise _unauthorized("missing credentials: send 'Authorization: Bearer <key>'")
    who = await engine(request).tenants.authenticate(header[7:].strip())
    if who is None:
        raise _unauthorized("unknown or revoked key")
    request["principal"] = who
    slug = request.match_info.get("slug")
    worker_route = canonical.startswith("/api/tenants/{slug}/worker/")
    if slug is None:  # /api/tenants: managing tenants is for the admin
        if who.role != "admin":
            raise _forbidden("only the admin key manages tenants")
        return await handler(request)
    if worker_route != (who.role == "worker"):
        raise _forbidden(
            "worker tokens reach only the worker protocol; API keys only the REST API"
            if who.role != "admin"
            else "the admin key cannot act as a worker"
        )
    if who.role != "admin" and who.tenant_slug != slug:
        raise _forbidden(f"this key does not belong to tenant {slug!r}")
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
        metrics.labelled(metrics.REQUEST_SECONDS, request.method, name).observe(
            time.perf_counter() - start
        )
