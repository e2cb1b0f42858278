"""The server as an operator runs it: generated admin key, clean SIGTERM, task timeouts,
typed (pydantic) inputs and outputs end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from pydantic import BaseModel

from flovyn_worker import (
    Client,
    RetryPolicy,
    TaskContext,
    Worker,
    WorkflowContext,
    task,
    workflow,
)
from tests.integration.conftest import Flovyn
from tests.serverproc import ServerProcess


async def _post(session: aiohttp.ClientSession, url: str, key: str, body: dict) -> dict:
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status == 201, await r.text()
        data: dict = await r.json()
        return data


async def _tenant(url: str, admin_key: str) -> tuple[str, str, str]:
    async with aiohttp.ClientSession() as s:
        await _post(s, f"{url}/api/tenants", admin_key, {"name": "ops", "slug": "ops"})
        key = await _post(s, f"{url}/api/tenants/ops/api-keys", admin_key, {"displayName": "k"})
        token = await _post(
            s, f"{url}/api/tenants/ops/worker-tokens", admin_key, {"displayName": "w"}
        )
    return "ops", key["key"], token["token"]


def test_admin_key_is_generated_into_the_data_dir(database_url: str, tmp_path: Path) -> None:
    server = ServerProcess(database_url, tmp_path / "data", admin_key="")
    with server:
        key_file = tmp_path / "data" / "admin.key"
        assert key_file.exists()
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        key = key_file.read_text().strip()
        assert str(key_file) in server.log_text()  # the log says where it is
        assert f"API docs: {server.url}/api/docs" in server.log_text()
        slug, _api_key, _token = asyncio.run(_tenant(server.url, key))
        assert slug == "ops"
        server.restart()  # the same key is read back, not replaced
        assert key_file.read_text().strip() == key


@task(name="lifecycle-step")
async def step(ctx: TaskContext, n: int) -> int:
    await asyncio.sleep(0.05)
    return n + 1


@workflow(name="lifecycle-chain")
async def chain(ctx: WorkflowContext, n: int) -> int:
    for _ in range(5):
        n = await ctx.schedule(step, n)
    return n


def test_sigterm_stops_cleanly_and_work_resumes(database_url: str, tmp_path: Path) -> None:
    """SIGTERM mid-flight: exit code 0, no traceback, and after a restart every
    workflow completes with a whole history."""
    server = ServerProcess(database_url, tmp_path / "data")

    async def scenario() -> None:
        slug, key, token = await _tenant(server.url, server.admin_key)
        worker = Worker(
            server.url, tenant=slug, token=token, workflows=[chain], tasks=[step], poll_timeout=2.0
        )
        async with worker, Client(server.url, tenant=slug, api_key=key) as client:
            handles = [await client.start_workflow(chain, i) for i in range(20)]
            await asyncio.sleep(0.3)  # some steps done, most in flight
            code = await asyncio.to_thread(server.stop)
            assert code == 0, server.log_tail()
            assert "Traceback" not in server.log_text()
            await asyncio.to_thread(server.start)
            results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
            assert results == [i + 5 for i in range(20)]
            for h in handles:
                types = [e["eventType"] for e in await h.events()]
                assert types == ["WORKFLOW_STARTED"] + ["TASK_SCHEDULED", "TASK_COMPLETED"] * 5 + [
                    "WORKFLOW_COMPLETED"
                ]

    with server:
        asyncio.run(scenario())


RUNS: list[int] = []


@task(
    name="lifecycle-slow-once",
    timeout=0.5,
    retry_policy=RetryPolicy(max_attempts=2, initial_interval=0.1),
)
async def slow_once(ctx: TaskContext, _: None) -> str:
    RUNS.append(ctx.attempt)
    if ctx.attempt == 1:
        await asyncio.sleep(5)  # past the 0.5 s timeout
    return f"attempt {ctx.attempt}"


@workflow(name="lifecycle-timeout")
async def timed(ctx: WorkflowContext, _: None) -> str:
    return await ctx.schedule(slow_once, None)


async def test_task_timeout_is_an_attempt_timeout_and_retried(flovyn: Flovyn) -> None:
    RUNS.clear()
    async with flovyn.worker([timed], [slow_once]), flovyn.client() as client:
        handle = await client.start_workflow(timed, None)
        assert await handle.result(timeout=20) == "attempt 2"
    (task_row,) = await flovyn.tasks(handle.id)
    assert task_row["timeoutMs"] == 500
    data = await flovyn.ok(
        "GET", f"P/workflow-executions/{handle.id}/tasks/{task_row['id']}/attempts"
    )
    assert [a["status"] for a in data["attempts"]] == ["TIMEOUT", "COMPLETED"]
    assert data["attempts"][0]["durationMs"] < 3000  # stopped at the timeout, not after 5 s
    assert RUNS == [1, 2]


class Order(BaseModel):
    order_id: str
    amount: int


class Receipt(BaseModel):
    order_id: str
    charged: int


@task(name="lifecycle-charge")
async def charge(ctx: TaskContext, order: Order) -> Receipt:
    assert isinstance(order, Order)
    return Receipt(order_id=order.order_id, charged=order.amount * 2)


@workflow(name="lifecycle-typed")
async def typed(ctx: WorkflowContext, order: Order) -> Receipt:
    receipt = await ctx.schedule(charge, order)
    assert isinstance(receipt, Receipt)
    return receipt


async def test_pydantic_models_round_trip(flovyn: Flovyn) -> None:
    async with flovyn.worker([typed], [charge]), flovyn.client() as client:
        handle = await client.start_workflow(typed, Order(order_id="A-1", amount=21))
        result = await handle.result(timeout=20)
    assert result == Receipt(order_id="A-1", charged=42)
    row = await flovyn.ok("GET", f"P/workflow-executions/{handle.id}")
    assert row["input"] == {"order_id": "A-1", "amount": 21}
    assert row["output"] == {"order_id": "A-1", "charged": 42}
