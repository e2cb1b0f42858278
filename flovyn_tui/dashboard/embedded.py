"""A server inside the dashboard's own process, for `flovyn tui` without `--server`
and for `flovyn demo`: SQLite in the usual data directory, a local tenant with an
API key and a worker token made the first time and kept in `local.json` beside the
database (readable by its owner only), so that a worker started later reaches it."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from flovyn_server.app import create_app, load_admin_key
from flovyn_server.settings import Settings
from flovyn_worker import Client, FlovynApiError

LOCAL_TENANT = "local"


@dataclass(frozen=True)
class Local:
    url: str
    tenant: str
    api_key: str
    worker_token: str

    def worker_line(self) -> str:
        """What to paste to run a worker against it."""
        return f'Worker("{self.url}", tenant="{self.tenant}", token="{self.worker_token}", ...)'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedServer:
    """`start()` serves on 127.0.0.1 in the running event loop; `stop()` shuts down as
    `flovyn server` does on SIGTERM (polls answered, the store closed)."""

    def __init__(self, data_dir: Path | None = None, port: int = 0) -> None:
        self.settings = Settings.from_env(data_dir=data_dir)
        self.settings.host = "127.0.0.1"
        self.settings.port = port or free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    async def start(self) -> Local:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._runner = web.AppRunner(create_app(self.settings), shutdown_timeout=5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.host, self.settings.port).start()
        return await self._local()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _local(self) -> Local:
        """The local tenant's credentials: kept from an earlier start, or made now."""
        path = self.data_dir / "local.json"
        admin = load_admin_key(self.settings)
        async with Client(self.url, api_key=admin) as client:
            if path.exists():
                saved = json.loads(path.read_text())
                try:
                    async with Client(
                        self.url, tenant=saved["tenant"], api_key=saved["apiKey"]
                    ) as c:
                        await c.get_tenant()
                    return Local(self.url, saved["tenant"], saved["apiKey"], saved["workerToken"])
                except (FlovynApiError, KeyError):
                    pass  # a new database under an old file: make them again
            try:
                await client.create_tenant("Local", LOCAL_TENANT)
            except FlovynApiError as exc:
                if exc.status != 409:
                    raise
            key = (await client.create_api_key("dashboard", slug=LOCAL_TENANT))["key"]
            token = (await client.create_worker_token("local workers", slug=LOCAL_TENANT))["token"]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"tenant": LOCAL_TENANT, "apiKey": key, "workerToken": token}, f)
        return Local(self.url, LOCAL_TENANT, key, token)
