"""A real server in the test's event loop, on the test's database, with a tenant ready.

`flovyn` starts `create_app` on a free port against `database_url` (SQLite file or a
fresh PostgreSQL database), creates a tenant with an API key and a worker token, and
offers small helpers: raw REST calls, an SDK `Client`, and a running SDK `Worker`.
Crash tests that need a separate server process use `tests/serverproc.py` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from flovyn_server.app import create_app
from flovyn_server.settings import Settings
from flovyn_server.store.base import Store, open_store
from flovyn_worker import Client, Worker
from flovyn_worker.transport import Transport
from tests.serverproc import ServerProcess

ADMIN_KEY = "test-admin-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Flovyn:
    url: str
    session: aiohttp.ClientSession
    slug: str = ""
    api_key: str = ""
    worker_token: str = ""
    app: web.Application | None = None
    _workers: list[Worker] = field(default_factory=list)

    @property
    def transport(self) -> Transport:
        """The SDK's HTTP layer on the test's session, for raw calls (no credentials of
        its own: each call says which it sends)."""
        return Transport(self.url, tenant=None, session=self.session)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON) of a REST call; `path` may use `P` for the tenant prefix."""
        if path.startswith("P/"):
            path = f"/api/tenants/{self.slug}/" + path[2:]
        sent = {"Authorization": f"Bearer {key or self.api_key}"} if key != "" else {}
        sent |= headers or {}
        data = raw if raw is not None else (None if body is None else _dumps(body))
        status, answer = await self.transport.exchange(
            method, path, data, params=params, headers=sent
        )
        text = answer.decode("utf-8", "replace")
        try:
            parsed = _loads(text) if text else None
        except ValueError:
            parsed = text
        return status, parsed

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, data = await self.call(method, path, body, **kw)
        assert 200 <= status < 300, (status, data)
        return data

    def client(self) -> Client:
        return Client(self.url, tenant=self.slug, api_key=self.api_key)

    @contextlib.asynccontextmanager
    async def worker(
        self, workflows: Iterable[Any] = (), tasks: Iterable[Any] = (), **kw: Any
    ) -> AsyncIterator[Worker]:
        kw.setdefault("poll_timeout", 5.0)
        worker = Worker(
            self.url,
            tenant=self.slug,
            token=self.worker_token,
            workflows=list(workflows),
            tasks=list(tasks),
            **kw,
        )
        async with worker:
            yield worker

    async def events(self, workflow_id: str) -> list[dict[str, Any]]:
        data = await self.ok("GET", f"P/workflow-executions/{workflow_id}/events")
        return list(data["events"])

    async def tasks(self, workflow_id: str) -> list[dict[str, Any]]:
        data = await self.ok("GET", f"P/workflow-executions/{workflow_id}/tasks")
        return list(data["tasks"])


def _dumps(value: Any) -> bytes:
    from flovyn_server.jsonio import dumps_bytes

    return dumps_bytes(value)


def _loads(text: str) -> Any:
    from flovyn_server.jsonio import loads

    return loads(text)


async def new_tenant(f: Flovyn, slug: str | None = None) -> tuple[str, str, str]:
    """Create a tenant; (slug, api key, worker token)."""
    slug = slug or f"t-{uuid.uuid4().hex[:10]}"
    await f.ok("POST", "/api/tenants", {"name": slug, "slug": slug}, key=ADMIN_KEY)
    key = (
        await f.ok("POST", f"/api/tenants/{slug}/api-keys", {"displayName": "tests"}, key=ADMIN_KEY)
    )["key"]
    token = (
        await f.ok(
            "POST", f"/api/tenants/{slug}/worker-tokens", {"displayName": "tests"}, key=ADMIN_KEY
        )
    )["token"]
    return slug, key, token


def settings_for(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """The tests' server settings (short liveness windows), with `overrides`."""
    values: dict[str, Any] = {
        "port": _free_port(),
        "data_dir": tmp_path / "data",
        "database": database_url,
        "admin_key": ADMIN_KEY,
        "liveness_timeout_ms": 3000,
        "heartbeat_interval_ms": 500,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture
def server_settings(database_url: str, tmp_path: Path) -> Settings:
    """Override in a test module (with `settings_for`) to change a setting."""
    return settings_for(database_url, tmp_path)


@pytest.fixture
async def flovyn(server_settings: Settings) -> AsyncIterator[Flovyn]:
    app = create_app(server_settings)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, server_settings.host, server_settings.port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            f = Flovyn(f"http://{server_settings.host}:{server_settings.port}", session, app=app)
            f.slug, f.api_key, f.worker_token = await new_tenant(f)
            yield f
    finally:
        await runner.cleanup()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """The store alone (migrated), for tests of the storage layer and what sits on it."""
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def server(database_url: str, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """`flovyn server` in a process of its own, to kill and restart."""
    # Liveness well above a restart, so that a test is about the server, not worker timeouts.
    proc = ServerProcess(
        database_url,
        tmp_path / "server",
        admin_key=ADMIN_KEY,
        env_extra={"FLOVYN_LIVENESS_TIMEOUT_MS": "20000", "FLOVYN_HEARTBEAT_INTERVAL_MS": "500"},
    )
    await asyncio.to_thread(proc.start)
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)
