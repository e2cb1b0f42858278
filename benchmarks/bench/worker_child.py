"""The worker child: one SDK ``Worker`` serving the workflow ``bench`` and its task ``echo``.

The benchmark starts each worker as ``throughput.py --worker-child ...``; the worker
token comes in ``FLOVYN_BENCH_TOKEN``. It prints ``READY <worker id>`` once registered
and stops on SIGTERM/SIGINT or when the benchmark that started it is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from flovyn_worker import TaskContext, Worker, WorkflowContext, task, workflow

FLAG = "--worker-child"
TOKEN_ENV = "FLOVYN_BENCH_TOKEN"  # not on the command line, where ps shows it


@task(name="echo")
async def echo_task(ctx: TaskContext, value: Any) -> Any:
    return value


@workflow(name="bench")
async def bench_workflow(ctx: WorkflowContext, value: Any) -> Any:
    return await ctx.schedule(echo_task, value)


async def _serve(args: argparse.Namespace) -> None:
    worker = Worker(
        args.server,
        tenant=args.tenant,
        token=os.environ[TOKEN_ENV],
        workflows=[bench_workflow],
        tasks=[echo_task],
        max_concurrent_workflows=args.max_items,
        max_concurrent_tasks=args.max_items,
        poll_timeout=args.poll_timeout,
        name=args.name,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        print(f"READY {worker.worker_id}", flush=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if os.getppid() != args.parent_pid:  # the benchmark died: do not linger
                break


def worker_child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"throughput.py {FLAG}")
    parser.add_argument("--server", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--max-items", type=int, default=100)
    parser.add_argument("--poll-timeout", type=float, default=20.0)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:  # as the server does, and as we advise workers to (see README)
        import uvloop
    except ImportError:
        asyncio.run(_serve(args))
    else:
        uvloop.run(_serve(args))
    return 0
