"""create_app(settings): one aiohttp Application wiring store, engine, routes and loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from flovyn_server.api import (
    control,
    discovery,
    errors,
    health,
    middleware,
    openapi,
    schedules,
    streams,
    tasks,
    tenants,
    webhooks,
    worker,
    workflows,
)
from flovyn_server.api.common import ENGINE, MAX_BODY, STREAM_ROUTES, STREAMS
from flovyn_server.engine import Engine
from flovyn_server.settings import Settings
from flovyn_server.store.base import open_store
from flovyn_server.streams.hub import StreamHub

log = logging.getLogger("flovyn_server")


def load_admin_key(settings: Settings) -> str:
    """FLOVYN_ADMIN_KEY, else the key in the data dir, else a new one written there."""
    if settings.admin_key:
        return settings.admin_key
    path = Path(settings.data_dir) / "admin.key"
    if path.exists():
        key = path.read_text().strip()
        log.info("admin key read from %s", path)
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "flovyn_admin_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    log.warning(
        "generated an admin key and wrote it to %s (set FLOVYN_ADMIN_KEY to choose one)", path
    )
    return key


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[middleware.measure, errors.errors, middleware.auth],
    )
    app[MAX_BODY] = settings.max_body_bytes
    errors.quiet_bad_requests()
    # The worker protocol carries most requests: its routes are matched first.
    routers = [
        m.router
        for m in (
            worker,
            health,
            tenants,
            workflows,
            tasks,
            schedules,
            webhooks,
            control,
            discovery,
            streams,
            openapi,
        )
    ]
    for router in routers:
        app.add_routes(router.routes)
    app[openapi.OPERATIONS] = [op for router in routers for op in router.operations]
    app[STREAM_ROUTES] = frozenset(op.path for op in app[openapi.OPERATIONS] if op.is_stream)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = await open_store(settings.database_url, pool_size=settings.postgres_pool_size)
        eng = Engine(store, settings, load_admin_key(settings))
        app[ENGINE] = eng
        # Store -> streams -> SSE: the hub hears the same commits the engine's polls do.
        hub = app[STREAMS] = StreamHub(store)
        store.on_commit_notify(hub.wake)
        store.on_resync(hub.wake_all)
        scheduler = asyncio.create_task(eng.scheduler.run(), name="flovyn-scheduler")
        log.info("flovyn server ready (storage %s)", store.backend)
        yield
        scheduler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scheduler
        await store.close()

    async def release_polls(app: web.Application) -> None:
        app[ENGINE].hub.close()
        app[STREAMS].close()  # open streams end; clients resume on another process

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(release_polls)
    return app
