"""`flovyn demo`: an embedded server on SQLite, a worker of the demo workflows
(`demo_flows.py`) in the same process, a steady trickle of triggers, and the
dashboard on top. `--headless` runs orders to completion and prints as it goes
instead (for CI, and for a README that shows output)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from flovyn_tui import demo_flows
from flovyn_tui.dashboard.embedded import EmbeddedServer, Local
from flovyn_worker import Client, Worker
from flovyn_worker.decorators import workflow_kind

TRICKLE_S = 1.5  # seconds between two triggers under the dashboard


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


@contextlib.asynccontextmanager
async def demo_worker(local: Local) -> AsyncIterator[Worker]:
    worker = Worker(
        local.url,
        tenant=local.tenant,
        token=local.worker_token,
        workflows=demo_flows.WORKFLOWS,
        tasks=demo_flows.TASKS,
        name="demo-worker",
    )
    async with worker:
        yield worker


async def trickle(local: Local, every: float = TRICKLE_S) -> None:
    """Trigger the demo's workflows one after another until cancelled."""
    async with Client(local.url, tenant=local.tenant, api_key=local.api_key) as client:
        n = 0
        while True:
            kind, data = demo_flows.trigger_for(n)
            with contextlib.suppress(Exception):  # a busy moment: the next one goes
                await client.trigger_workflow(kind, data)
            n += 1
            await asyncio.sleep(every)


async def _headless(workflows: int, data_dir: Path, port: int) -> int:
    server = EmbeddedServer(data_dir, port)
    local = await server.start()
    print(
        f"server    {local.url}  (SQLite at {server.settings.database_url.removeprefix('sqlite:///')})"
    )
    print(f"tenant    {local.tenant}   API key {local.api_key}")
    print(
        f"CLI       export FLOVYN_SERVER={local.url} FLOVYN_TENANT={local.tenant} FLOVYN_API_KEY={local.api_key}"
    )
    try:
        async with (
            demo_worker(local),
            Client(local.url, tenant=local.tenant, api_key=local.api_key) as client,
        ):
            kinds = [workflow_kind(w)[0] for w in demo_flows.WORKFLOWS]
            print(f"worker    demo-worker: workflows {kinds}")
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
                sys.stdout.write("\r" + _bar(sum(outcomes.values()), len(handles)))
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
        await server.stop()


def _dashboard(data_dir: Path, port: int) -> int:
    from flovyn_tui.dashboard.app import FlovynApp, Target, log_to

    log_to(data_dir / "flovyn.log")

    async def start(local: Local) -> None:
        async with demo_worker(local):
            await trickle(local)

    app = FlovynApp(
        Target(None, None, None), embedded=EmbeddedServer(data_dir, port), on_ready=start
    )
    try:
        return app.run() or 0
    finally:
        # The log file goes with a temporary data dir: what is still said on the way out
        # (at interpreter exit) must not try to write to it.
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def run_demo(*, workflows: int, data_dir: str | None, port: int, headless: bool) -> int:
    with contextlib.ExitStack() as stack:
        folder = (
            Path(data_dir)
            if data_dir
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flovyn-demo-")))
        )
        if headless:
            # Task log lines (e.g. the simulated card failures) are stored on the
            # server; the terminal shows only the demo's progress and real errors.
            logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
            return asyncio.run(_headless(workflows, folder, port))
        return _dashboard(folder, port)
    return 0
