#!/usr/bin/env python3
"""Workflow streams under load: many live subscribers while workflows run.

For each store this starts ``flovyn server``, triggers N workflows (the benchmark's
one-task workflow), opens one stream (``GET P/stream/workflows/{id}``) per workflow
and F tenant feeds (``GET P/stream/workflows``), and once all are open starts W
worker processes: the streams are all held while the N workflows run. Every workflow
stream must end with its ``end`` event, and every feed must show every workflow
COMPLETED. It prints:

  * delivery latency: the event's own timestamp (server clock) to its receipt by the
    client, p50 / p99 / max, for events appended after the stream was opened (events
    replayed on connect would measure the connect, not the delivery); for the feed,
    the timestamp is the execution's last change;
  * the peak resident memory (RSS) of the server while the streams are open;
  * streams that did not end, or ended with a gap or a repeat in their history.

    python3 benchmarks/streams.py                     # 1000 workflows and streams, 10 feeds
    python3 benchmarks/streams.py --store sqlite --workflows 200 --feeds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench.client import Api, Tenant, create_tenant, trigger_many, wait_healthy
from bench.measure import percentile
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


@dataclass
class StreamRecord:
    opened_ms: float = 0.0
    ids: list[int] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    ended: bool = False
    error: str | None = None


def epoch_ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


class StreamRefused(Exception):
    pass


READ_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, StreamRefused)


async def sse(tenant: Tenant, path: str) -> AsyncIterator[tuple[dict[str, str], Any, float]]:
    """Open the stream at `path` (under the tenant) and yield each event: its fields, its
    data decoded, and when it arrived (epoch ms). StreamRefused for an answer not 200."""
    url = f"{tenant.api.base}/api/tenants/{tenant.slug}{path}"
    headers = {"Authorization": f"Bearer {tenant.key}"}
    async with tenant.api.http.get(url, headers=headers) as resp:
        if resp.status != 200:
            raise StreamRefused(f"HTTP {resp.status}")
        yield {"event": "open"}, None, time.time() * 1000
        fields: dict[str, str] = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "data" in fields:
                yield fields, json.loads(fields["data"]), time.time() * 1000
            fields = {}


async def follow(tenant: Tenant, workflow_id: str, record: StreamRecord) -> None:
    """Read one stream to its end, timing each event appended after it was opened."""
    try:
        async for fields, data, received in sse(tenant, f"/stream/workflows/{workflow_id}"):
            if fields["event"] == "open":
                record.opened_ms = received
            elif fields.get("event") == "end":
                record.ended = True
                return
            else:
                record.ids.append(int(fields["id"]))
                record.sequences.append(data["sequence"])
                sent = epoch_ms(data["timestamp"])
                if sent >= record.opened_ms:
                    record.latencies_ms.append(received - sent)
    except READ_ERRORS as exc:
        record.error = str(exc) if isinstance(exc, StreamRefused) else type(exc).__name__


@dataclass
class FeedRecord:
    opened: bool = False
    completed: set[str] = field(default_factory=set)
    latencies_ms: list[float] = field(default_factory=list)
    error: str | None = None


async def follow_feed(tenant: Tenant, wanted: set[str], record: FeedRecord) -> None:
    """Read the tenant feed until every wanted execution was seen COMPLETED."""
    opened_ms = 0.0
    try:
        async for fields, data, received in sse(tenant, "/stream/workflows"):
            if fields["event"] == "open":
                record.opened, opened_ms = True, received
                continue
            summary = data["workflow"]
            sent = epoch_ms(summary["updatedAt"])
            if sent >= opened_ms:
                record.latencies_ms.append(received - sent)
            if summary["status"] == "COMPLETED":
                record.completed.add(summary["id"])
                if record.completed >= wanted:
                    return
    except READ_ERRORS as exc:
        record.error = str(exc) if isinstance(exc, StreamRefused) else type(exc).__name__


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def run_store(store: str, args: argparse.Namespace, res: Resources) -> list[str]:
    tmp = res.temp_dir(prefix=f"flovyn-streams-{store}-")
    db = await prepare_database(res, store, tmp, args.postgres_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin_key = "bench-admin-" + secrets.token_hex(16)
    server = start_server(res, store, tmp, port, db.url, admin_key, None)
    print(f"\n== {store}: server pid {server.proc.pid} on {base} ({db.label})", flush=True)
    connector = aiohttp.TCPConnector(limit=args.workflows + 64)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        api = Api(http, base)
        await wait_healthy(api, server, 60)
        tenant, token = await create_tenant(api, admin_key)
        # All workflows wait for the workers, which start once every stream is open: so
        # every stream is held while the workflows run.
        trig = await trigger_many(tenant, args.workflows, 32)
        if trig.errors:
            raise RuntimeError(f"triggers failed: {dict(trig.errors)}")
        rss0 = rss_kib(server.proc.pid)
        peak = rss0
        records = [StreamRecord() for _ in trig.ids]
        readers = [
            asyncio.create_task(follow(tenant, wf, record))
            for wf, record in zip(trig.ids, records, strict=True)
        ]
        feeds = [FeedRecord() for _ in range(args.feeds)]
        readers += [asyncio.create_task(follow_feed(tenant, set(trig.ids), f)) for f in feeds]
        loop = asyncio.get_running_loop()
        until = loop.time() + 60

        def opened() -> int:
            return sum(bool(r.ids) for r in records) + sum(f.opened for f in feeds)

        while opened() < len(records) + len(feeds) and loop.time() < until:
            if all(t.done() for t in readers):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # the feeds' first reads: they start at the present
        print(
            f"   {sum(bool(r.ids) for r in records)} workflow streams and "
            f"{sum(f.opened for f in feeds)} feeds open; starting {args.workers} worker(s)",
            flush=True,
        )
        workers = start_workers(
            res, SCRIPT, store, tmp, count=args.workers, server=base, tenant=tenant.slug,
            token=token, max_items=args.max_items, poll_timeout=20.0,
        )  # fmt: skip
        await wait_workers_ready(workers, 60)
        started = loop.time()
        deadline = started + args.timeout
        while not all(r.done() for r in readers) and loop.time() < deadline:
            peak = max(peak, rss_kib(server.proc.pid))
            await asyncio.sleep(0.2)
        ran = loop.time() - started
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    latencies = [ms for r in records for ms in r.latencies_ms]
    unfinished = sum(not r.ended for r in records)
    broken = sum(
        r.ids != sorted(set(r.ids)) or r.sequences != list(range(1, len(r.ids) + 1))
        for r in records
    )
    errors = [r.error for r in records if r.error] + [f.error for f in feeds if f.error]
    feed_latencies = [ms for f in feeds for ms in f.latencies_ms]
    short_feeds = sum(len(f.completed) < len(records) for f in feeds)
    print(f"   workflows ran in            {ran:.1f} s ({len(records) / ran:.0f}/s)")
    print(f"   events timed                {len(latencies)}")
    if latencies:
        print(
            f"   delivery latency ms         p50 {percentile(latencies, 50):.0f}   "
            f"p99 {percentile(latencies, 99):.0f}   max {max(latencies):.0f}"
        )
    if feed_latencies:
        print(
            f"   feed latency ms ({len(feeds)} feeds) p50 {percentile(feed_latencies, 50):.0f}   "
            f"p99 {percentile(feed_latencies, 99):.0f}   max {max(feed_latencies):.0f}"
        )
    print(f"   server RSS                  {rss0 // 1024} MB idle, {peak // 1024} MB peak")
    print(f"   streams without end         {unfinished}   with a gap or repeat: {broken}")
    print(f"   feeds missing a completion  {short_feeds}")
    problems = []
    if unfinished or broken or errors or short_feeds:
        problems.append(
            f"{unfinished} unfinished, {broken} broken, {short_feeds} short feeds, "
            f"errors {errors[:5]}"
        )
    return problems


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--workflows", type=int, default=1000, help="workflows, one stream each")
    p.add_argument("--feeds", type=int, default=10, help="tenant-feed subscribers")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument(
        "--max-items",
        type=int,
        default=100,
        help="workflows and tasks each worker runs at once (lower: a lighter load)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for all to end")
    p.add_argument("--postgres-url", default=os.environ.get("FLOVYN_BENCH_PG_URL", DEFAULT_PG_URL))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, parse_args, run_store)


if __name__ == "__main__":
    sys.exit(main())
