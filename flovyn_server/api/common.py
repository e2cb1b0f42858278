"""Helpers every handler uses: typed app keys, JSON in and out, paging."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from flovyn_server.domain import bad_request
from flovyn_server.engine import Engine
from flovyn_server.engine.tenants import Principal, Tenant
from flovyn_server.jsonio import dumps_bytes, loads

ENGINE = web.AppKey("engine", Engine)


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
    return web.Response(body=dumps_bytes(data), status=status, content_type="application/json")


async def body(request: web.Request) -> Any:
    """The parsed JSON body; an empty body is `{}`. 400 on malformed JSON, 413 when too big."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return loads(raw)
    except ValueError:
        raise bad_request("request body is not valid JSON") from None


async def body_object(request: web.Request) -> dict[str, Any]:
    data = await body(request)
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object")
    return data


def int_param(
    request: web.Request, name: str, default: int, *, lo: int, hi: int, alias: str | None = None
) -> int:
    raw = request.query.get(name)
    if raw is None and alias:
        raw = request.query.get(alias)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer", {"parameter": name}) from None
    if not lo <= value <= hi:
        raise bad_request(f"{name} must be between {lo} and {hi}", {"parameter": name})
    return value


def page(request: web.Request, default_limit: int) -> tuple[int, int]:
    """(limit, offset) from the query string; limit at most 1000."""
    return (
        int_param(request, "limit", default_limit, lo=1, hi=1000),
        int_param(request, "offset", 0, lo=0, hi=10**9),
    )


def multi(request: web.Request, name: str) -> list[str]:
    """A repeatable or comma-separated query parameter."""
    values: list[str] = []
    for raw in request.query.getall(name, []):
        values.extend(v.strip() for v in raw.split(",") if v.strip())
    return values


Action = Callable[[Tenant, str, dict[str, Any]], Awaitable[Any]]


def body_action(
    pick: Callable[[Engine], Action], param: str = "id"
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler for `POST .../{param}/...` with a JSON object body: it calls the engine
    method `pick(engine)` with the tenant, the path parameter and the body."""

    async def handler(request: web.Request) -> web.Response:
        call = pick(engine(request))
        return json(
            await call(tenant(request), request.match_info[param], await body_object(request))
        )

    return handler
