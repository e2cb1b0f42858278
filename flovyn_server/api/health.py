"""Health and Prometheus metrics (open, no key)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flovyn_server import __version__, metrics
from flovyn_server.api.common import engine, json
from flovyn_server.api.routing import Router
from flovyn_server.models.discovery import Health

router = Router("Health")


@router.get("/_/health", answers={200: Health, 503: Health})
async def health(request: web.Request) -> web.Response:
    """UP with the version and store; 503 DOWN when the database does not answer."""
    store = engine(request).store
    up = await store.ping()
    body: Health = {
        "status": "UP" if up else "DOWN",
        "version": __version__,
        "storage": "postgres" if store.backend == "postgres" else "sqlite",
        "plugins": [],
    }
    return json(body, 200 if up else 503)


@router.get("/_/metrics", answers={200: str}, content_type="text/plain")
async def prometheus(request: web.Request) -> web.Response:
    """Prometheus metrics in the text format.

    Requests by route, workflows and tasks by outcome, queue depth, group commits,
    idempotency hits."""
    return web.Response(
        body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
