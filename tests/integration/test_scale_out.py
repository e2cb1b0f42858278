"""Two server processes on one PostgreSQL database: work spreads, timers fire once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from flovyn_worker import Worker, WorkflowContext, workflow
from tests.integration.conftest import Flovyn, new_tenant
from tests.integration.helpers import (
    ONE_TIMER_HISTORY,
    assert_gapless,
    event_types,
    execution,
    wait_for,
)
from tests.serverproc import ServerProcess

WORKFLOWS = 100


@workflow(name="scale-sleep")
async def nap(ctx: WorkflowContext, n: int) -> int:
    await ctx.sleep(1.0)
    return n


async def _submits(front: Flovyn) -> float:
    """Accepted activation submits this server process has answered (its own metrics)."""
    async with front.session.get(front.url + "/_/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if (
            line.startswith("flovyn_http_requests_total{")
            and "/worker/workflows/{id}/submit" in line
            and 'status="200"' in line
        )
        or line.startswith('flovyn_batched_operations_total{status="200",type="submit"}')
    )


@contextlib.asynccontextmanager
async def _servers(postgres_url: str, tmp_path: Path) -> AsyncIterator[list[ServerProcess]]:
    servers = [ServerProcess(postgres_url, tmp_path / f"server-{i}") for i in (1, 2)]
    try:
        # one after the other: the first one creates the schema
        for server in servers:
            await asyncio.to_thread(server.start)
        yield servers
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)


async def test_two_servers_fire_every_timer_once(postgres_url: str, tmp_path: Path) -> None:
    async with _servers(postgres_url, tmp_path) as servers, aiohttp.ClientSession() as session:
        fronts = [Flovyn(s.url, session) for s in servers]
        slug, key, token = await new_tenant(fronts[0])
        for front in fronts:
            front.slug, front.api_key, front.worker_token = slug, key, token
        workers = [
            Worker(
                front.url,
                tenant=slug,
                token=token,
                workflows=[nap],
                poll_timeout=2.0,
                max_concurrent_workflows=10,
                name=f"worker-{i}",
            )
            for i, front in enumerate(fronts)
        ]
        async with workers[0], workers[1]:
            clients = [front.client() for front in fronts]
            try:
                handles = await asyncio.gather(
                    *(clients[n % 2].start_workflow(nap, n) for n in range(WORKFLOWS))
                )
            finally:
                for client in clients:
                    await client.close()
            ids = [h.id for h in handles]
            assert len(set(ids)) == WORKFLOWS

            async def all_completed() -> bool:
                listed = await fronts[1].ok(
                    "GET",
                    "P/workflow-executions",
                    params={"kind": "scale-sleep", "status": "COMPLETED", "limit": 1},
                )
                return bool(listed["total"] == WORKFLOWS)

            await wait_for(all_completed, within=90, what=f"{WORKFLOWS} workflows to complete")
        # each process served its worker's activations
        submits = [await _submits(front) for front in fronts]
        assert all(n > 0 for n in submits), submits
        assert sum(submits) >= 2 * WORKFLOWS, submits

        for n, workflow_id in enumerate(ids):
            front = fronts[n % 2]
            row = await execution(front, workflow_id)
            assert row["status"] == "COMPLETED" and row["output"] == n
            events = await front.events(workflow_id)
            assert event_types(events) == ONE_TIMER_HISTORY, (workflow_id, events)
            assert_gapless(events)
            assert events[2]["data"]["timerId"] == events[1]["data"]["timerId"]
        listed = await fronts[0].ok("GET", "P/workers")
        assert {w["name"] for w in listed["workers"]} == {"worker-0", "worker-1"}


@workflow(name="scale-echo")
async def echo(ctx: WorkflowContext, value: str) -> str:
    return value


async def test_trigger_on_one_server_wakes_a_poll_held_by_the_other(
    postgres_url: str, tmp_path: Path
) -> None:
    """LISTEN/NOTIFY: a long-poll held open by server 2 is answered when server 1 commits
    new work, long before the poll's own timeout."""
    async with _servers(postgres_url, tmp_path) as servers, aiohttp.ClientSession() as session:
        first, second = (Flovyn(s.url, session) for s in servers)
        first.slug, first.api_key, first.worker_token = await new_tenant(first)
        second.slug, second.api_key, second.worker_token = (
            first.slug,
            first.api_key,
            first.worker_token,
        )
        async with second.worker([echo], poll_timeout=30.0), first.client() as client:
            for value in ("one", "two", "three"):
                await asyncio.sleep(0.5)  # the worker's poll is held open on server 2
                started = time.monotonic()
                handle = await client.start_workflow(echo, value)
                assert await handle.result(timeout=10) == value
                assert time.monotonic() - started < 3.0
