"""Workflows and tasks of the crash tests, and a worker script to run them in a subprocess.

    python tests/integration/crash_worker.py SERVER_URL TENANT WORKER_TOKEN

The test imports this module too, to run a second, in-process worker with the same code.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from flovyn_worker import RetryPolicy, TaskContext, Worker, WorkflowContext, task, workflow

FAST_RETRY = RetryPolicy(
    max_attempts=5,
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    max_interval=timedelta(seconds=1),
)


@task(name="mark-then-maybe-hang", retry_policy=FAST_RETRY)
async def mark_then_maybe_hang(ctx: TaskContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Leave a marker file `attempt-<n>` in `spec["markerDir"]`, then hang in the attempts
    listed in `spec["hangAttempts"]` (until the process is killed) or return."""
    marker = Path(spec["markerDir"]) / f"attempt-{ctx.attempt}"
    marker.write_text(f"{os.getpid()}\n")
    ctx.logger.info("attempt %d started in process %d", ctx.attempt, os.getpid())
    if ctx.attempt in spec["hangAttempts"]:
        await asyncio.sleep(3600)
    return {"attempt": ctx.attempt, "pid": os.getpid()}


@workflow(name="survives-worker-crash")
async def survives_worker_crash(ctx: WorkflowContext, spec: dict[str, Any]) -> Any:
    return await ctx.schedule(mark_then_maybe_hang, spec)


WORKFLOWS = [survives_worker_crash]
TASKS = [mark_then_maybe_hang]


async def main(server: str, tenant: str, token: str) -> None:
    worker = Worker(
        server, tenant=tenant, token=token, workflows=WORKFLOWS, tasks=TASKS,
        name="crash-worker", poll_timeout=5.0,
    )  # fmt: skip
    async with worker:
        print(f"worker {worker.worker_id} serving", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
