"""`flovyn demo`: an embedded server on SQLite, the example order worker, and workflows
triggered and watched until they complete."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import secrets
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from aiohttp import web

from flovyn_server.app import create_app
from flovyn_server.settings import Settings
from flovyn_worker import Client, Worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "orders.py"


def _load_example() -> ModuleType:
    """The order example from the source tree's `examples/` (the demo runs from a checkout)."""
    if not EXAMPLE.exists():
        raise SystemExit(f"flovyn demo needs the example at {EXAMPLE}; run it from a checkout")
    spec = importlib.util.spec_from_file_location("flovyn_example_orders", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


async def _demo(workflows: int, data_dir: Path, port: int) -> int:
    example = _load_example()
    admin_key = "flovyn_admin_" + secrets.token_urlsafe(16)
    settings = Settings(port=port or _free_port(), data_dir=data_dir, admin_key=admin_key)
    runner = web.AppRunner(create_app(settings), shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    url = f"http://{settings.host}:{settings.port}"
    print(f"server    {url}  (SQLite at {settings.database_url.removeprefix('sqlite:///')})")
    try:
        async with Client(url, api_key=admin_key) as admin:
            slug = f"demo-{secrets.token_hex(3)}"
            await admin.create_tenant("Demo", slug)
            key = (await admin.create_api_key("demo", slug=slug))["key"]
            token = (await admin.create_worker_token("demo", slug=slug))["token"]
        print(f"tenant    {slug}   API key {key}")
        print(f"CLI       export FLOVYN_SERVER={url} FLOVYN_TENANT={slug} FLOVYN_API_KEY={key}")
        worker = Worker(
            url,
            tenant=slug,
            token=token,
            workflows=example.WORKFLOWS,
            tasks=example.TASKS,
            name="demo-worker",
        )
        async with worker, Client(url, tenant=slug, api_key=key) as client:
            print(f"worker    orders-example: workflows {[w.__name__ for w in example.WORKFLOWS]}")
            started = time.perf_counter()
            handles = [
                await client.start_workflow(
                    "order",
                    {"orderId": f"A-{i:04d}", "amount": 10 + i, "items": ["book", "lamp"]},
                )
                for i in range(workflows)
            ]
            print(f"triggered {len(handles)} order workflows")
            outcomes: Counter[str] = Counter()

            async def wait(handle: Any) -> None:
                try:
                    await handle.result(timeout=120)
                    outcomes["COMPLETED"] += 1
                except Exception as exc:  # the demo reports failures, it does not stop
                    outcomes[type(exc).__name__] += 1
                done = sum(outcomes.values())
                sys.stdout.write("\r" + _bar(done, len(handles)))
                sys.stdout.flush()

            await asyncio.gather(*(wait(h) for h in handles))
            elapsed = time.perf_counter() - started
            print(
                f"\ndone in {elapsed:.2f} s: " + ", ".join(f"{k} {v}" for k, v in outcomes.items())
            )
            sample = await client.get_handle(handles[0].id).events()
            print(f"history of {handles[0].id}:")
            for event in sample:
                print(f"  {event['sequence']:>3}  {event['eventType']}")
            return 0 if outcomes["COMPLETED"] == len(handles) else 1
    finally:
        await runner.cleanup()


def run_demo(*, workflows: int, data_dir: str | None, port: int) -> int:
    # Task log lines (e.g. the example's simulated card failures) are stored on the
    # server; the terminal shows only the demo's own progress and real errors.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if data_dir:
        return asyncio.run(_demo(workflows, Path(data_dir), port))
    with tempfile.TemporaryDirectory(prefix="flovyn-demo-") as tmp:
        return asyncio.run(_demo(workflows, Path(tmp), port))
