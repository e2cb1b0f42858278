"""Health and Prometheus metrics (open, no key)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flovyn_server import __version__, metrics
from flovyn_server.api.common import engine, json

routes = web.RouteTableDef()


@routes.get("/_/health")
async def health(request: web.Request) -> web.Response:
    store = engine(request).store
    up = await store.ping()
    body: dict[str, object] = {
        "status": "UP" if up else "DOWN",
        "version": __version__,
        "storage": store.backend,
        "plugins": [],
    }
    return json(body, 200 if up else 503)


@routes.get("/_/metrics")
async def prometheus(_request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
