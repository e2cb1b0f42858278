#!/usr/bin/env python3
"""Steady load for a while: does the store stay bounded?

For each store this starts ``flovyn server`` and W worker processes, then triggers N
workflows back to back (the benchmark's one-task workflow, `--concurrency` in flight)
and samples, every `--every` seconds while they run and until all have completed:

  * SQLite: the size of the WAL file and of the database file;
  * PostgreSQL: the size of each table with its indexes (pg_total_relation_size);
  * the server's resident memory (RSS).

It prints the samples, the maximum of each, and, for PostgreSQL, the bytes per table
per 10,000 workflows at the end.

With `--kill-at S` the server is killed (SIGKILL) S seconds into the load and started
again on the same port and database: it prints the WAL it left and how long the new
one took to answer, and checks that every trigger the server acknowledged completes.

    python3 benchmarks/soak.py                           # 20000 workflows, both stores
    python3 benchmarks/soak.py --store sqlite --workflows 40000
    python3 benchmarks/soak.py --store sqlite --kill-at 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench.client import OPEN, Api, count, create_tenant, rough_count, trigger_many, wait_healthy
from bench.processes import (
    Resources,
    bench_main,
    free_port,
    prepare_database,
    start_server,
    start_workers,
    wait_workers_ready,
)

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SCRIPT = os.path.abspath(__file__)
MB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def pg_sizes(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "AND c.relkind = 'r' ORDER BY 2 DESC"
        )
    finally:
        await conn.close()
    return {r["relname"]: int(r["bytes"]) for r in rows}


async def run_store(store: str, args: argparse.Namespace, res: Resources) -> list[str]:
    tmp = res.temp_dir(prefix=f"flovyn-soak-{store}-")
    db = await prepare_database(res, store, tmp, args.postgres_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin_key = "bench-admin-" + secrets.token_hex(16)
    server = start_server(res, store, tmp, port, db.url, admin_key, None)
    print(f"\n== {store}: server pid {server.proc.pid} on {base} ({db.label})", flush=True)
    db_file = tmp / "flovyn.db"
    wal_file = tmp / "flovyn.db-wal"
    samples: list[tuple[float, int, int, int, int]] = []  # t, completed, wal, db, rss
    async with aiohttp.ClientSession() as http:
        api = Api(http, base)
        await wait_healthy(api, server, 60)
        tenant, token = await create_tenant(api, admin_key)
        workers = start_workers(
            res, SCRIPT, store, tmp, count=args.workers, server=base, tenant=tenant.slug,
            token=token, max_items=args.max_items, poll_timeout=20.0,
        )  # fmt: skip
        await wait_workers_ready(workers, 60)
        started = time.monotonic()
        triggers = asyncio.create_task(trigger_many(tenant, args.workflows, args.concurrency))
        print(f"   {'s':>6} {'completed':>10} {'WAL MB':>8} {'db MB':>8} {'RSS MB':>8}")
        deadline = started + args.timeout
        completed = 0
        killed = False
        while time.monotonic() < deadline:
            await asyncio.sleep(args.every)
            if (
                args.kill_at is not None
                and not killed
                and time.monotonic() - started >= args.kill_at
            ):
                killed = True
                server = await kill_and_restart(
                    res, store, tmp, port, db.url, admin_key, api, server
                )
            completed = await rough_count(tenant, "COMPLETED")  # an estimate past 1,000
            still_open = await rough_count(tenant, OPEN)  # exact near the end
            sample = (
                time.monotonic() - started,
                completed,
                file_size(wal_file),
                file_size(db_file),
                rss_bytes(server.proc.pid),
            )
            samples.append(sample)
            t, n, wal, size, rss = sample
            wal_text = f"{wal / MB:8.1f}" if store == "sqlite" else f"{'-':>8}"
            size_text = f"{size / MB:8.1f}" if store == "sqlite" else f"{'-':>8}"
            print(f"   {t:6.1f} {n:10d} {wal_text} {size_text} {rss / MB:8.1f}", flush=True)
            if triggers.done() and still_open == 0:
                break
        trig = await triggers
        completed = await count(tenant, "COMPLETED")
    # After a kill, the triggers in flight got no answer: only those acknowledged count.
    expected = len(trig.ids) if killed else args.workflows
    ran = samples[-1][0] if samples else 0.0
    if killed:
        unanswered = sum(trig.errors.values())
        print(
            f"   {len(trig.ids)} triggers acknowledged, {unanswered} unanswered while it was down"
        )
    print(f"   {completed} of {args.workflows} completed in {ran:.1f} s ({completed / ran:.0f}/s)")
    if store == "sqlite":
        print(
            f"   max WAL {max(s[2] for s in samples) / MB:.1f} MB, "
            f"database {samples[-1][3] / MB:.1f} MB at the end"
        )
    print(f"   max server RSS {max(s[4] for s in samples) / MB:.1f} MB")
    if store == "postgres":
        sizes = await pg_sizes(db.url)
        per = 10_000 / max(completed, 1)
        print("   PostgreSQL, per 10,000 workflows (table with its indexes):")
        for name, size in sizes.items():
            if size > 64 * 1024:
                print(f"     {name:<22} {size * per / MB:8.1f} MB")
        print(f"     {'all':<22} {sum(sizes.values()) * per / MB:8.1f} MB")
    problems = []
    if completed < expected:
        problems.append(f"only {completed} of {expected} acknowledged workflows completed")
    if trig.errors and not killed:
        problems.append(f"trigger errors: {dict(trig.errors)}")
    return problems


async def kill_and_restart(
    res: Resources, store: str, tmp: Path, port: int, url: str, admin_key: str, api: Api, old: Any
) -> Any:
    """SIGKILL the server mid-load, start it again, and say what that cost."""
    wal = file_size(tmp / "flovyn.db-wal")
    old.proc.kill()
    old.proc.wait()
    began = time.monotonic()
    server = start_server(res, store, tmp, port, url, admin_key, None)
    await wait_healthy(api, server, 120)
    took = time.monotonic() - began
    left = f" with a {wal / MB:.1f} MB WAL" if store == "sqlite" else ""
    print(f"   kill -9{left}: answering again {took:.2f} s after the restart", flush=True)
    return server


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--workflows", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--concurrency", type=int, default=32, help="triggers in flight")
    p.add_argument("--max-items", type=int, default=100, help="per worker, as the SDK default")
    p.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for all to complete")
    p.add_argument("--kill-at", type=float, help="SIGKILL and restart the server after S seconds")
    p.add_argument("--postgres-url", default=os.environ.get("FLOVYN_BENCH_PG_URL", DEFAULT_PG_URL))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, parse_args, run_store)


if __name__ == "__main__":
    sys.exit(main())
