#!/usr/bin/env python3
"""End-to-end throughput of a real Flovyn server with real SDK workers.

For each store (SQLite, PostgreSQL) this starts ``flovyn server`` as a subprocess,
creates a tenant, an API key and a worker token over REST, starts W worker
processes (this script again, in ``--worker-child`` mode) that serve one workflow
``bench`` (it schedules the task ``echo`` and returns its output), triggers N
workflows, waits until all are COMPLETED and prints figures computed from the
server's own timestamps.

    python3 benchmarks/throughput.py                       # 2000 workflows, 2 workers, both stores
    python3 benchmarks/throughput.py --workflows 200       # a quick check (well under a minute)
    python3 benchmarks/throughput.py --store sqlite --workers 4 --max-items 50
    python3 benchmarks/throughput.py --workflows 400 --rate 20   # latency below saturation
    python3 benchmarks/throughput.py --store postgres --profile py-spy   # where the server's time goes

Figures, per store:
  * workflows/s: N / (max completedAt - min createdAt), both from the server;
  * trigger -> completion and trigger -> first pickup (startedAt, the first claim by a
    worker) latencies, p50 / p90 / p99 / max. Triggering as fast as possible measures
    queueing at saturation; ``--rate`` paces the triggers to measure latency below it;
  * the same latency cut into phases for a sample of workflows, from their task's
    timestamps (queued -> picked up, first activation, task pickup, task run, resume);
  * the trigger rate alone (N / the time the client took to send all triggers, while
    the workers were already busy with the first ones);
  * CPU seconds of the server (event-loop thread and other threads), the workers,
    PostgreSQL, this client, and everything else on the machine (other load skews all
    figures: look at that line before comparing runs);
  * HTTP requests per workflow by route with their mean time in the server, from the
    server's /_/metrics.

The SDK ``Worker`` has no separate "items per poll" knob: a poll asks for up to three
quarters of its free slots (the rest stay free for work handed back eagerly), so
``--max-items`` sets both ``max_concurrent_workflows`` and ``max_concurrent_tasks`` of
every worker.

``--profile py-spy`` attaches py-spy (if installed) to the server for the measured
phase, sampling the thread that holds the GIL, and prints own time by package and
function; ``--profile cprofile`` runs the whole server under cProfile instead.

Everything it starts is stopped and everything it creates (temporary directories, the
``flovyn_bench_<hex>`` database) is removed at the end, on errors and on Ctrl-C. It exits
non-zero when a trigger failed or a workflow did not complete within ``--timeout``.

This file is the entry point: arguments, the run of each store and the summary. The
parts are modules of ``benchmarks/bench/`` (listed in its ``__init__``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

# `bench` is the folder next to this script, not an installed package. Python puts the
# script's folder first on sys.path when it is run by path, but not under -P, -I or
# PYTHONSAFEPATH, nor when this file is loaded some other way: add it for those too.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench.client import (
    Api,
    Tenant,
    count,
    create_tenant,
    listed_workers,
    trigger_many,
    wait_completed,
    wait_healthy,
)
from bench.measure import (
    CpuSnapshot,
    completed_of,
    fetch_executions,
    fetch_tasks,
    phase_sample,
    scrape_requests,
)
from bench.processes import (
    Child,
    Resources,
    free_port,
    prepare_database,
    start_server,
    start_workers,
    wait_workers_ready,
)
from bench.profiling import Profiler
from bench.report import Measurement, print_table, store_rows
from bench.worker_child import FLAG, worker_child

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SCRIPT = os.path.abspath(__file__)  # the workers run this script again, in worker-child mode


# -- one store ---------------------------------------------------------------------------


@dataclass
class StoreResult:
    store: str
    summary: dict[str, str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


async def measure_phase(
    args: argparse.Namespace,
    tenant: Tenant,
    server: Child,
    workers: list[Child],
    pg_name: str | None,
    profiler: Profiler,
) -> tuple[Measurement, list[str]]:
    """Trigger the workflows, wait for them and read what the server recorded; the
    measurement and what went wrong."""
    problems: list[str] = []
    baseline = await count(tenant, "COMPLETED")
    await profiler.start(server.proc.pid)
    requests0 = await scrape_requests(tenant.api)
    cpu0 = CpuSnapshot.take(server, workers, pg_name)
    wall0 = time.perf_counter()
    pace = f"{args.rate:g}/s" if args.rate > 0 else "as fast as possible"
    print(
        f"   triggering {args.workflows} workflows ({pace}, {args.concurrency} in flight)",
        flush=True,
    )
    trig = await trigger_many(tenant, args.workflows, args.concurrency, args.rate)
    if trig.errors:
        problems.append(f"{sum(trig.errors.values())} triggers failed: {dict(trig.errors)}")
    done, completed, failed = await wait_completed(
        tenant, baseline + len(trig.ids), args.timeout, args.quiet
    )
    wall = time.perf_counter() - wall0
    cpu1 = CpuSnapshot.take(server, workers, pg_name)
    requests1 = await scrape_requests(tenant.api)
    profiler.stop()
    if not done:
        problems.append(
            f"only {completed - baseline}/{len(trig.ids)} workflows completed "
            + (f"({failed} FAILED)" if failed else f"within {args.timeout:g}s")
        )
    executions = await fetch_executions(tenant)
    sample = phase_sample(completed_of(executions, trig.ids), args.phases)
    tasks_of = await fetch_tasks(tenant, sample)
    m = Measurement(trig, wall, cpu0, cpu1, requests0, requests1, executions, tasks_of)
    return m, problems


async def run_store(store: str, args: argparse.Namespace, res: Resources) -> StoreResult:
    tmp = res.temp_dir(prefix=f"flovyn-bench-{store}-")
    db = await prepare_database(res, store, tmp, args.postgres_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin_key = "bench-admin-" + secrets.token_hex(16)
    profiler = Profiler(args.profile, args.profile_dir, store, args.py_spy_rate, args.profile_top)
    server = start_server(res, store, tmp, port, db.url, admin_key, profiler.cprofile_out)
    print(f"\n== {store}: server pid {server.proc.pid} on {base} ({db.label})", flush=True)

    connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        api = Api(http, base)
        await wait_healthy(api, server, 60)
        tenant, token = await create_tenant(api, admin_key)
        workers = start_workers(
            res,
            SCRIPT,
            store,
            tmp,
            count=args.workers,
            server=base,
            tenant=tenant.slug,
            token=token,
            max_items=args.max_items,
            poll_timeout=args.poll_timeout,
        )
        await wait_workers_ready(workers, 60)
        listed = await listed_workers(tenant)
        print(
            f"   {len(workers)} workers registered"
            + (f" (GET /workers lists {listed})" if listed is not None else ""),
            flush=True,
        )

        if args.warmup:
            warm = await trigger_many(tenant, args.warmup, args.concurrency)
            done, _, _ = await wait_completed(tenant, len(warm.ids), 60, True)
            if not done or warm.errors:
                raise RuntimeError(
                    f"warm-up failed ({dict(warm.errors)}):\n{server.log_tail()}\n"
                    + "\n".join(w.log_tail(10) for w in workers)
                )
            print(f"   warm-up: {args.warmup} workflows completed", flush=True)
        m, problems = await measure_phase(args, tenant, server, workers, db.pg_name, profiler)

    # Stop the server now so that a cProfile run writes its file.
    for w in workers:
        res.stop(w)
    res.stop(server)

    rows, summary = store_rows(m, store, args.workflows, args.workers, db.pg_name is not None)
    print(f"\n   {store}: {args.workflows} workflows, {args.workers} workers, "
          f"max-items {args.max_items}, concurrency {args.concurrency}")  # fmt: skip
    print_table(rows)
    for problem in problems:
        print(f"   PROBLEM: {problem}")
    if problems:
        print(f"   server log tail:\n{server.log_tail(15)}")
    profiler.report()
    return StoreResult(store, summary, problems)


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput of a Flovyn server with real SDK workers (one task per workflow).",
    )
    parser.add_argument("--workflows", type=int, default=2000, help="workflows to trigger")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("FLOVYN_TEST_POSTGRES_URL") or DEFAULT_PG_URL,
        help="admin URL; a fresh flovyn_bench_<hex> database is created and dropped",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="triggers in flight")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="pace triggers at this many per second (0: as fast as possible); below the "
        "server's capacity this measures pickup latency rather than queueing",
    )
    parser.add_argument(
        "--max-items",
        type=int,
        default=100,
        help="each worker's max_concurrent_workflows and max_concurrent_tasks; a poll "
        "asks for at most three quarters of the free slots, the rest stay free for work "
        "handed back eagerly (server cap 100 per poll). Default 100, the SDK's default",
    )
    parser.add_argument("--poll-timeout", type=float, default=20.0, help="worker long-poll seconds")
    parser.add_argument("--warmup", type=int, default=20, help="workflows run before measuring")
    parser.add_argument(
        "--phases",
        type=int,
        default=200,
        help="break the latency of this many sampled workflows into phases from their "
        "task's timestamps (one GET each; 0: skip)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for all to complete"
    )
    parser.add_argument(
        "--profile",
        choices=["py-spy", "cprofile"],
        default=None,
        help="profile the server: py-spy (if installed) attaches for the measured phase "
        "and samples whichever thread holds the GIL (low overhead); cprofile runs the "
        "whole server under cProfile (main thread only, slows it down)",
    )
    parser.add_argument(
        "--profile-dir",
        default=str(Path(tempfile.gettempdir()) / "flovyn-bench-profiles"),
        help="where profiles are written (default: %(default)s)",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="functions to list")
    parser.add_argument("--py-spy-rate", type=int, default=250, help="samples per second")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    args.profile_dir = Path(args.profile_dir).resolve()
    if args.workflows < 1 or args.workers < 1 or args.concurrency < 1 or args.max_items < 1:
        parser.error("--workflows, --workers, --concurrency and --max-items must be >= 1")
    return args


def print_summary(results: list[StoreResult]) -> None:
    """The stores side by side, one line per figure."""
    keys = list(dict.fromkeys(k for r in results for k in r.summary))
    width = max(len(k) for k in [*keys, "summary"])
    print(f"\n   {'summary':<{width}}" + "".join(f"{r.store:>12}" for r in results))
    for k in keys:
        print(f"   {k:<{width}}" + "".join(f"{r.summary.get(k, '-'):>12}" for r in results))


async def amain(args: argparse.Namespace, res: Resources) -> int:
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    print(
        f"flovyn throughput: {args.workflows} workflows x (1 workflow + 1 task), "
        f"{args.workers} worker process(es), max-items {args.max_items}, poll timeout "
        f"{args.poll_timeout:g}s, trigger concurrency {args.concurrency}, warm-up "
        f"{args.warmup}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )
    results: list[StoreResult] = []
    for store in stores:
        try:
            results.append(await run_store(store, args, res))
        except Exception as exc:
            print(f"\n== {store}: FAILED: {exc}", file=sys.stderr)
            results.append(StoreResult(store, {}, [str(exc)]))
        finally:
            await res.acleanup()
    if len(results) > 1:
        print_summary(results)
    return 0 if all(r.ok for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [FLAG]:
        return worker_child(argv[1:])
    args = parse_args(argv)
    if args.profile:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    res = Resources()
    try:
        return asyncio.run(amain(args, res))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        res.cleanup()


if __name__ == "__main__":
    sys.exit(main())
