#!/usr/bin/env python3
"""Lists at scale: N executions in one tenant, as many standalone tasks, and a task
with L log lines.

For each store this seeds the rows straight into a fresh database (not through the
API: a million triggers would take a while), starts ``flovyn server`` on it, and
times each request over REST: the p50 of 15 (after one warm-up), in milliseconds.

    python3 benchmarks/lists.py                               # 1,000,000 executions, both stores
    python3 benchmarks/lists.py --store sqlite --executions 200000 --log-lines 20000
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
import uuid
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench.client import Api, create_tenant, wait_healthy
from bench.processes import Resources, bench_main, free_port, prepare_database, start_server

from flovyn_server.store.base import open_store

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 20_000
# Shares of statuses in a long-lived installation: most executions are done.
STATUSES = ["COMPLETED"] * 90 + ["FAILED"] * 4 + ["CANCELLED"] * 2 + ["RUNNING"] * 2
STATUSES += ["WAITING", "PENDING"]
KINDS = ["order", "import", "approval", "report", "sync"]
QUEUES = ["default", "bulk", "priority"]
LEVELS = [("DEBUG", 10), ("INFO", 20), ("INFO", 20), ("INFO", 20), ("WARN", 30), ("ERROR", 40)]


TASK_STATUSES = (
    ["COMPLETED"] * 90 + ["FAILED"] * 4 + ["PENDING"] * 3 + ["RUNNING"] * 2 + ["CANCELLED"]
)


async def seed_tasks(url: str, tenant_id: str, n: int) -> None:
    """N standalone tasks (no workflow) over the last N seconds."""
    store = await open_store(url)
    start = int(time.time() * 1000) - n * 1000
    rows: list[tuple[Any, ...]] = []
    try:
        for i in range(n):
            at = start + i * 1000
            status = TASK_STATUSES[(i * 7 + i // 5) % 100]
            rows.append((str(uuid.uuid4()), tenant_id, f"job-{i % 5}", QUEUES[i % 3], status, at))
            if len(rows) == BATCH or i == n - 1:
                async with store.transaction() as tx:
                    await tx.executemany(
                        "INSERT INTO task_executions (id, tenant_id, kind, queue, status, "
                        "max_retries, retry_initial_ms, retry_coefficient, retry_max_ms, "
                        "retry_at, created_at, updated_at) "
                        "VALUES ($1, $2, $3, $4, $5, 3, 1000, 2.0, 60000, $6, $6, $6)",
                        rows,
                    )
                rows = []
                print(f"\r   seeded {i + 1} standalone tasks", end="", flush=True, file=sys.stderr)
        print()
    finally:
        await store.close()


async def seed(url: str, tenant_id: str, n: int, log_lines: int) -> tuple[str, str]:
    """N executions over the last N seconds, and one (workflow, task) with log lines."""
    store = await open_store(url)
    start = int(time.time() * 1000) - n * 1000
    rows: list[tuple[Any, ...]] = []
    last_id = ""
    try:
        for i in range(n):
            last_id = str(uuid.uuid4())
            at = start + i * 1000
            rows.append(
                (
                    last_id,
                    tenant_id,
                    KINDS[i % 5],
                    QUEUES[i % 3],
                    STATUSES[(i * 7 + i // 5) % 100],
                    at,
                )
            )
            if len(rows) == BATCH or i == n - 1:
                async with store.transaction() as tx:
                    await tx.executemany(
                        "INSERT INTO workflow_executions (id, tenant_id, kind, queue, status, "
                        "input, available_at, created_at, updated_at) "
                        "VALUES ($1, $2, $3, $4, $5, 'null', $6, $6, $6)",
                        rows,
                    )
                rows = []
                print(f"\r   seeded {i + 1} executions", end="", flush=True, file=sys.stderr)
        print()
        task_id = str(uuid.uuid4())
        async with store.transaction() as tx:
            await tx.execute(
                "INSERT INTO task_executions (id, tenant_id, workflow_execution_id, kind, queue, "
                "status, max_retries, retry_initial_ms, retry_coefficient, retry_max_ms, "
                "retry_at, created_at, updated_at) VALUES ($1, $2, $3, 'chatty', 'default', "
                "'COMPLETED', 0, 1000, 2.0, 60000, $4, $4, $4)",
                task_id,
                tenant_id,
                last_id,
                start,
            )
        for first in range(0, log_lines, BATCH):
            lines = [
                (
                    str(uuid.uuid4()),
                    task_id,
                    1 + i // 50_000,
                    *LEVELS[i % len(LEVELS)],
                    f"line {i}: processed item {i * 7 % 1000}",
                    start + i,
                    i,
                )
                for i in range(first, min(first + BATCH, log_lines))
            ]
            async with store.transaction() as tx:
                await tx.executemany(
                    "INSERT INTO task_logs (id, task_execution_id, attempt, level, level_rank, "
                    "message, ts, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    lines,
                )
    finally:
        await store.close()
    if url.startswith("postgresql"):
        # The steady state autovacuum keeps: statistics, and a visibility map that lets
        # counts read the indexes alone.
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
    else:  # what the server's hourly statistics pass does, at once
        store = await open_store(url)
        try:
            async with store.transaction() as tx:
                await tx.execute("PRAGMA analysis_limit=1000")
                await tx.execute("ANALYZE")
        finally:
            await store.close()
    return last_id, task_id


async def timed(api: Api, path: str, params: dict[str, str], key: str) -> tuple[float, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    times = []
    body: Any = None
    for i in range(16):
        t0 = time.perf_counter()
        async with api.http.get(api.base + path, params=params, headers=headers) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"{path} {params}: {resp.status} {body}")
        if i:  # the first one warms up
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), body


async def run_store(store: str, args: argparse.Namespace, res: Resources) -> list[str]:
    tmp = res.temp_dir(prefix=f"flovyn-lists-{store}-")
    db = await prepare_database(res, store, tmp, args.postgres_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin_key = "bench-admin-" + secrets.token_hex(16)
    server = start_server(res, store, tmp, port, db.url, admin_key, None)
    print(f"\n== {store} ({db.label})", flush=True)
    async with aiohttp.ClientSession() as http:
        api = Api(http, base)
        await wait_healthy(api, server, 60)
        tenant, _ = await create_tenant(api, admin_key)
        async with http.get(
            f"{base}/api/tenants/{tenant.slug}", headers={"Authorization": f"Bearer {admin_key}"}
        ) as resp:
            tenant_id = (await resp.json())["id"]
        t0 = time.perf_counter()
        await seed_tasks(db.url, tenant_id, args.tasks)  # before seed(): it ends analysing
        workflow_id, task_id = await seed(db.url, tenant_id, args.executions, args.log_lines)
        print(f"   seeded in {time.perf_counter() - t0:.0f} s")
        p = f"/api/tenants/{tenant.slug}"
        lists = f"{p}/workflow-executions"
        _, first = await timed(api, lists, {"limit": "20"}, tenant.key)
        deep = first["nextCursor"]
        for _ in range(20):  # a cursor 21 pages in
            _, page = await timed_once(api, lists, {"limit": "20", "cursor": deep}, tenant.key)
            deep = page["nextCursor"]
        logs = f"{lists}/{workflow_id}/tasks/{task_id}/logs"
        tasks = f"{p}/tasks"
        _, task_page = await timed(api, tasks, {"limit": "20"}, tenant.key)
        task_cursor = task_page["nextCursor"]
        _, log_page = await timed(api, logs, {"limit": "100"}, tenant.key)
        cases: list[tuple[str, str, dict[str, str]]] = [
            ("first page", lists, {"limit": "20"}),
            ("?status=FAILED", lists, {"status": "FAILED"}),
            ("?status=RUNNING,WAITING", lists, {"status": "RUNNING,WAITING"}),
            ("?kind=order&status=RUNNING", lists, {"kind": "order", "status": "RUNNING"}),
            ("?queue=bulk", lists, {"queue": "bulk"}),
            ("?createdAfter (last hour)", lists, {"createdAfter": _iso_ago(3600)}),
            ("cursor, 21 pages in", lists, {"limit": "20", "cursor": deep}),
            ("?offset=500000 (compatibility)", lists, {"offset": str(args.executions // 2)}),
            ("counts per status", f"{lists}/counts", {}),
            (f"logs of {args.log_lines} lines, first page", logs, {"limit": "100"}),
            ("logs, next page by cursor", logs, {"limit": "100",
                                                 "cursor": log_page["nextCursor"] or ""}),
            ("logs ?level=ERROR", logs, {"level": "ERROR"}),
            ("logs ?search= (substring)", logs, {"search": "item 999"}),
            ("standalone tasks, first page", tasks, {"limit": "20"}),
            ("tasks ?status=FAILED", tasks, {"status": "FAILED"}),
            ("tasks ?kind=job-1&status=PENDING", tasks, {"kind": "job-1", "status": "PENDING"}),
            ("tasks ?queue=bulk", tasks, {"queue": "bulk"}),
            ("tasks, a page by cursor", tasks, {"limit": "20", "cursor": task_cursor}),
        ]  # fmt: skip
        print(f"   {'request':<40} {'p50 ms':>8}   total")
        for label, path, params in cases:
            ms, body = await timed(api, path, params, tenant.key)
            total = body.get("total", "")
            mark = " (estimate)" if body.get("totalIsEstimate") or body.get("estimated") else ""
            print(f"   {label:<40} {ms:8.1f}   {total}{mark}", flush=True)
    return []


async def timed_once(api: Api, path: str, params: dict[str, str], key: str) -> tuple[float, Any]:
    t0 = time.perf_counter()
    headers = {"Authorization": f"Bearer {key}"}
    async with api.http.get(api.base + path, params=params, headers=headers) as resp:
        body = await resp.json()
    return (time.perf_counter() - t0) * 1000, body


def _iso_ago(seconds: int) -> str:
    moment = time.gmtime(time.time() - seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--executions", type=int, default=1_000_000)
    p.add_argument("--log-lines", type=int, default=100_000)
    p.add_argument("--tasks", type=int, default=1_000_000, help="standalone tasks")
    p.add_argument("--postgres-url", default=os.environ.get("FLOVYN_BENCH_PG_URL", DEFAULT_PG_URL))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, parse_args, run_store)


if __name__ == "__main__":
    sys.exit(main())
