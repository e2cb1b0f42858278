"""The workflow stream (Server-Sent Events) on both stores: replay, live, resume, end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from flovyn_server.settings import Settings
from flovyn_worker import WorkflowContext, workflow
from tests.integration.conftest import Flovyn, new_tenant, settings_for
from tests.integration.helpers import assert_error, trigger, wait_status

KEEPALIVE_S = 0.3


@pytest.fixture
def server_settings(database_url: str, tmp_path: Path) -> Settings:
    return settings_for(database_url, tmp_path, stream_keepalive_s=KEEPALIVE_S)


@dataclass
class Message:
    event: str | None
    id: str | None
    data: dict[str, Any] | None
    comment: str | None = None
    retry: int | None = None


async def messages(resp: aiohttp.ClientResponse) -> AsyncIterator[Message]:
    """The SSE messages of a response, comments and retry hints included, as sent."""
    fields: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            yield Message(None, None, None, comment=line[1:].strip())
            continue
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if "retry" in fields and len(fields) == 1:
            yield Message(None, None, None, retry=int(fields["retry"]))
        elif fields:
            data = json.loads(fields["data"]) if "data" in fields else None
            yield Message(fields.get("event"), fields.get("id"), data)
        fields = {}


async def read_stream(
    f: Flovyn, workflow_id: str, *, last_id: str | None = None, count: int | None = None
) -> list[Message]:
    """Events (no comments) of the stream until it ends, or the first `count`."""
    headers = {"Authorization": f"Bearer {f.api_key}"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    url = f"{f.url}/api/tenants/{f.slug}/stream/workflows/{workflow_id}"
    got: list[Message] = []
    async with f.session.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for message in messages(resp):
            if message.event is not None:
                got.append(message)
                if count is not None and len(got) == count:
                    break
    return got


def assert_positions(events: list[Message]) -> None:
    """Ids are stream positions: numbers that grow along the stream."""
    ids = [int(m.id or "") for m in events]
    assert ids == sorted(set(ids)), ids


@workflow(name="stream-signals")
async def waits_for_two_signals(ctx: WorkflowContext, _: Any) -> Any:
    first = await ctx.wait_for_signal("go")
    second = await ctx.wait_for_signal("go")
    return [first, second]


async def test_replay_then_end(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([waits_for_two_signals]), f.client() as client:
        handle = await client.start_workflow(waits_for_two_signals, None)
        await handle.signal("go", 1)
        await handle.signal("go", 2)
        await handle.result(timeout=20)
    history = await f.events(handle.id)
    got = await asyncio.wait_for(read_stream(f, handle.id), 10)
    *events, end = got
    assert [m.event for m in events] == [e["eventType"] for e in history]
    assert_positions(events)
    for message, event in zip(events, history, strict=True):
        assert message.data == {
            "workflowExecutionId": handle.id,
            "type": event["eventType"],
            "timestamp": event["timestamp"],
            "sequence": event["sequence"],
            "data": event["data"],
        }
    assert end.event == "end" and end.data is not None
    assert (end.data["type"], end.data["status"]) == ("end", "COMPLETED")
    assert end.id == events[-1].id


async def test_live_then_resume_without_gap_or_repeat(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([waits_for_two_signals]), f.client() as client:
        handle = await client.start_workflow(waits_for_two_signals, None)
        first = asyncio.create_task(read_stream(f, handle.id))
        await asyncio.sleep(0.3)
        assert not first.done()  # it waits, live
        await handle.signal("go", "a")
        # A second client reads part of it and hangs up...
        partial = await asyncio.wait_for(read_stream(f, handle.id, count=2), 10)
        await handle.signal("go", "b")
        await handle.result(timeout=20)
        full = await asyncio.wait_for(first, 10)
    # ...and resumes from its last id: exactly the rest, as one full read has it.
    rest = await asyncio.wait_for(read_stream(f, handle.id, last_id=partial[-1].id), 10)
    assert [m.id for m in partial + rest] == [m.id for m in full]
    assert [m.data for m in partial + rest][:-1] == [m.data for m in full][:-1]
    assert full[-1].event == "end"
    history = await f.events(handle.id)
    assert [m.data and m.data["sequence"] for m in full[:-1]] == [e["sequence"] for e in history]
    assert_positions(full[:-1])


async def test_keep_alive_and_retry_hint(flovyn: Flovyn) -> None:
    f = flovyn
    ref = await trigger(f, "nobody-runs-this")
    url = f"{f.url}/api/tenants/{f.slug}/stream/workflows/{ref}"
    seen: list[Message] = []
    async with f.session.get(url, headers={"Authorization": f"Bearer {f.api_key}"}) as resp:

        async def collect() -> None:
            async for message in messages(resp):
                seen.append(message)
                if sum(m.comment == "keep-alive" for m in seen) == 2:
                    return

        await asyncio.wait_for(collect(), KEEPALIVE_S * 10)
    assert seen[0].retry is not None and seen[0].retry > 0
    assert seen[1].event == "WORKFLOW_STARTED"
    assert [m.comment for m in seen[2:]] == ["keep-alive", "keep-alive"]


async def test_credentials_and_unknown_ids(flovyn: Flovyn) -> None:
    f = flovyn
    ref = await trigger(f, "nobody-runs-this")
    url = f"{f.url}/api/tenants/{f.slug}/stream/workflows/{ref}"
    async with f.session.get(url) as resp:
        assert_error(resp.status, await resp.json(), 401)
    other_slug, other_key, _ = await new_tenant(f)
    async with f.session.get(url, headers={"Authorization": f"Bearer {other_key}"}) as resp:
        assert_error(resp.status, await resp.json(), 403)
    foreign = f"{f.url}/api/tenants/{other_slug}/stream/workflows/{ref}"
    async with f.session.get(foreign, headers={"Authorization": f"Bearer {other_key}"}) as resp:
        assert_error(resp.status, await resp.json(), 404)
    unknown = f"{f.url}/api/tenants/{f.slug}/stream/workflows/{'0' * 8}-0000-4000-8000-{'0' * 12}"
    async with f.session.get(unknown, headers={"Authorization": f"Bearer {f.api_key}"}) as resp:
        assert_error(resp.status, await resp.json(), 404)
    async with f.session.get(url, headers={"Authorization": f"Bearer {f.api_key}",
                                           "Last-Event-ID": "x"}) as resp:  # fmt: skip
        assert_error(resp.status, await resp.json(), 400)
    # A browser's EventSource passes the key in the query string instead.
    async with f.session.get(url, params={"access_token": f.api_key}) as resp:
        assert resp.status == 200
        first = await anext(aiter(messages(resp)))
        assert first.retry is not None
    async with f.session.get(url, params={"access_token": "flovyn_sk_wrong"}) as resp:
        assert_error(resp.status, await resp.json(), 401)


async def test_a_cancelled_execution_ends_its_stream(flovyn: Flovyn) -> None:
    f = flovyn
    ref = await trigger(f, "nobody-runs-this")
    reading = asyncio.create_task(read_stream(f, ref))
    await asyncio.sleep(0.2)
    await f.ok("POST", f"P/workflow-executions/{ref}/cancel", {})
    await wait_status(f, ref, "CANCELLED")
    got = await asyncio.wait_for(reading, 10)
    assert [m.event for m in got] == [
        "WORKFLOW_STARTED", "CANCELLATION_REQUESTED", "WORKFLOW_CANCELLED", "end",
    ]  # fmt: skip


async def test_stream_metrics(flovyn: Flovyn) -> None:
    """Open streams are counted, and their events; their duration is no request latency."""
    f = flovyn
    ref = await trigger(f, "nobody-runs-this")
    reading = asyncio.create_task(read_stream(f, ref))

    async def metrics_text() -> str:
        async with f.session.get(f"{f.url}/_/metrics") as resp:
            return await resp.text()

    async def gauge() -> float:
        for line in (await metrics_text()).splitlines():
            if line.startswith('flovyn_sse_subscribers{stream="workflow"}'):
                return float(line.split()[-1])
        return 0.0

    for _ in range(50):
        if await gauge() >= 1:
            break
        await asyncio.sleep(0.05)
    assert await gauge() >= 1
    await f.ok("POST", f"P/workflow-executions/{ref}/cancel", {})
    await asyncio.wait_for(reading, 10)
    text = await metrics_text()
    assert 'flovyn_sse_events_sent_total{stream="workflow"}' in text
    route = "/api/tenants/{slug}/stream/workflows/{id}"
    assert f'flovyn_http_requests_total{{method="GET",route="{route}",status="200"}}' in text
    assert f'flovyn_http_request_duration_seconds_count{{method="GET",route="{route}"}}' not in text
