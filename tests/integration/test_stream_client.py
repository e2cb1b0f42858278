"""`Client.stream_workflow` against real servers: replay, live, resume, errors, a server
restart in the middle of a stream, and two server processes on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from flovyn_server.metrics import REGISTRY
from flovyn_server.settings import Settings
from flovyn_worker import Client, FlovynApiError, StreamEvent, WorkflowContext, workflow
from tests.integration.conftest import ADMIN_KEY, Flovyn, new_tenant, settings_for
from tests.integration.helpers import assert_gapless, eventually, wait_status
from tests.serverproc import ServerProcess

KEEPALIVE_S = 0.3
WITHIN = 20.0  # every wait is bounded


@pytest.fixture
def server_settings(database_url: str, tmp_path: Path) -> Settings:
    return settings_for(database_url, tmp_path, stream_keepalive_s=KEEPALIVE_S)


@workflow(name="stream-client-signals")
async def collects_signals(ctx: WorkflowContext, count: int) -> Any:
    got = []
    for _ in range(count):
        got.append(await ctx.wait_for_signal("go"))
    return got


class Reader:
    """Iterates a stream in the background, keeping what it yields."""

    def __init__(self, events: AsyncIterator[StreamEvent]) -> None:
        self.got: list[StreamEvent] = []
        self.arrived: list[float] = []  # time.monotonic() of each event
        self.task = asyncio.create_task(self._run(events))

    async def _run(self, events: AsyncIterator[StreamEvent]) -> None:
        async for event in events:
            self.got.append(event)
            self.arrived.append(time.monotonic())

    def has(self, event_type: str, count: int) -> Callable[[], bool]:
        """A check: exactly `count` events of `event_type` have come."""
        return lambda: sum(e.event == event_type for e in self.got) == count

    async def until(self, check: Callable[[], bool], within: float = WITHIN) -> None:
        """Wait until `check()` holds; fail if the stream ends first or `within` passes."""
        deadline = time.monotonic() + within
        while not check():
            if self.task.done():
                self.task.result()  # raise what ended it
                raise AssertionError(f"the stream ended first: {self.seen()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s; got {self.seen()}")
            await asyncio.sleep(0.02)

    def seen(self) -> list[tuple[str | None, str]]:
        return [(e.id, e.event) for e in self.got]

    async def finished(self, within: float = WITHIN) -> list[StreamEvent]:
        await asyncio.wait_for(asyncio.shield(self.task), within)
        return self.got

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def signal(f: Flovyn, workflow_id: str, value: Any) -> None:
    await f.ok(
        "POST", f"P/workflow-executions/{workflow_id}/signal", {"signalName": "go", "value": value}
    )


def assert_matches_history(
    got: list[StreamEvent], history: list[dict[str, Any]], workflow_id: str, status: str
) -> None:
    """The stream is the REST history, event for event, then `end`."""
    *events, end = got
    assert [e.event for e in events] == [h["eventType"] for h in history]
    ids = [int(e.id or "") for e in events]
    assert ids == sorted(set(ids)), ids  # stream positions: growing along the stream
    assert [e.data for e in events] == [
        {
            "workflowExecutionId": workflow_id,
            "type": h["eventType"],
            "timestamp": h["timestamp"],
            "sequence": h["sequence"],
            "data": h["data"],
        }
        for h in history
    ]
    assert_gapless(history)
    assert (end.event, end.id) == ("end", events[-1].id)
    assert end.data["workflowExecutionId"] == workflow_id
    assert (end.data["type"], end.data["status"]) == ("end", status)


# --- one in-process server, both stores ----------------------------------------------------


async def test_finished_execution_streams_its_history_then_end(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([collects_signals]), f.client() as client:
        handle = await client.start_workflow(collects_signals, 2)
        await handle.signal("go", 1)
        await handle.signal("go", 2)
        assert await handle.result(timeout=WITHIN) == [1, 2]
        got = await asyncio.wait_for(_all(handle.stream()), WITHIN)
        # The same from the client, given the id.
        again = await asyncio.wait_for(_all(client.stream_workflow(handle.id)), WITHIN)
    assert_matches_history(got, await f.events(handle.id), handle.id, "COMPLETED")
    assert again[:-1] == got[:-1] and again[-1].data["status"] == "COMPLETED"


async def test_live_stream_of_a_waiting_execution(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([collects_signals]), f.client() as client:
        handle = await client.start_workflow(collects_signals, 2)
        reader = Reader(handle.stream())
        try:
            await reader.until(lambda: len(reader.got) >= 1)
            await asyncio.sleep(KEEPALIVE_S * 3)  # live: keep-alives come, the stream waits
            assert not reader.task.done()
            for n in (1, 2):
                await handle.signal("go", n)
                await reader.until(reader.has("SIGNAL_RECEIVED", n))
            got = await reader.finished()
        finally:
            await reader.stop()
    assert [e.data["data"] for e in got if e.event == "SIGNAL_RECEIVED"] == [
        {"signalName": "go", "signalValue": 1},
        {"signalName": "go", "signalValue": 2},
    ]
    assert_matches_history(got, await f.events(handle.id), handle.id, "COMPLETED")


async def test_resume_after_a_given_event(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.worker([collects_signals]), f.client() as client:
        handle = await client.start_workflow(collects_signals, 1)
        await handle.signal("go", "x")
        await handle.result(timeout=WITHIN)
        full = await asyncio.wait_for(_all(handle.stream()), WITHIN)
        for cut in range(len(full) - 1):  # after each event but the last
            rest = await asyncio.wait_for(_all(handle.stream(last_event_id=full[cut].id)), WITHIN)
            assert rest[:-1] == full[cut + 1 : -1], cut
            assert (rest[-1].event, rest[-1].id) == ("end", full[-1].id)
        # After the last event: only `end`.
        rest = await asyncio.wait_for(_all(handle.stream(last_event_id=full[-2].id)), WITHIN)
        assert [e.event for e in rest] == ["end"]


async def test_errors_raise_the_api_error(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.client() as client:
        handle = await client.start_workflow("nobody-runs-this", None)
        unknown = f"{'0' * 8}-0000-4000-8000-{'0' * 12}"
        with pytest.raises(FlovynApiError) as caught:
            await asyncio.wait_for(_all(client.stream_workflow(unknown)), WITHIN)
        assert caught.value.status == 404 and caught.value.code
        with pytest.raises(FlovynApiError) as caught:
            await asyncio.wait_for(_all(handle.stream(last_event_id="x")), WITHIN)
        assert caught.value.status == 400
    async with Client(f.url, tenant=f.slug, api_key="flovyn_sk_wrong") as stranger:
        with pytest.raises(FlovynApiError) as caught:
            await asyncio.wait_for(_all(stranger.stream_workflow(handle.id)), WITHIN)
        assert caught.value.status == 401
    _, other_key, _ = await new_tenant(f)
    async with Client(f.url, tenant=f.slug, api_key=other_key) as other:
        with pytest.raises(FlovynApiError) as caught:
            await asyncio.wait_for(_all(other.stream_workflow(handle.id)), WITHIN)
        assert caught.value.status == 403


def _open_streams() -> float:
    return REGISTRY.get_sample_value("flovyn_sse_subscribers", {"stream": "workflow"}) or 0.0


async def test_leaving_the_loop_ends_the_server_side_stream(flovyn: Flovyn) -> None:
    f = flovyn
    async with f.client() as client:
        handle = await client.start_workflow("nobody-runs-this", None)
        before = _open_streams()
        async for event in handle.stream():
            assert event.event == "WORKFLOW_STARTED"
            assert _open_streams() == before + 1
            break
        # The response is closed: the server's next keep-alive fails and it lets go.
        await eventually(lambda: _open_streams() == before, within=KEEPALIVE_S * 10)


async def _all(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [e async for e in events]


# --- a real server process, restarted in the middle of a stream (both stores) --------------


async def test_stream_survives_server_restarts(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flovyn_worker.sse")
    # No keep-alive for the test's own calls: they must not outlive a killed server.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        f = Flovyn(server.url, session)
        f.slug, f.api_key, f.worker_token = await new_tenant(f)
        async with f.worker([collects_signals], poll_timeout=2.0), f.client() as client:
            handle = await client.start_workflow(collects_signals, 3)
            reader = Reader(client.stream_workflow(handle.id))
            try:
                await signal(f, handle.id, 1)
                await reader.until(reader.has("SIGNAL_RECEIVED", 1))

                # A graceful restart: the server closes the stream without `end`...
                await asyncio.to_thread(server.restart)
                # ...and this signal lands while the client waits to reconnect.
                await signal(f, handle.id, 2)
                await reader.until(reader.has("SIGNAL_RECEIVED", 2), within=40)

                # A crash: the connection breaks; the client retries until it is back.
                server.kill()
                await asyncio.to_thread(server.start)
                await signal(f, handle.id, 3)
                got = await reader.finished(within=40)
            except BaseException:
                print(server.log_tail(60))
                raise
            finally:
                await reader.stop()
            assert await handle.result(timeout=WITHIN) == [1, 2, 3]
        history = await f.events(handle.id)
    assert_matches_history(got, history, handle.id, "COMPLETED")
    assert len({e.id for e in got[:-1]}) == len(got) - 1  # no repeats
    reconnects = [r for r in caplog.records if "reconnecting" in r.getMessage()]
    assert len(reconnects) >= 2, [r.getMessage() for r in reconnects]


# --- two server processes on one PostgreSQL database ---------------------------------------


@contextlib.asynccontextmanager
async def _two_servers(postgres_url: str, tmp_path: Path) -> AsyncIterator[list[ServerProcess]]:
    servers = [
        ServerProcess(postgres_url, tmp_path / f"server-{name}", admin_key=ADMIN_KEY)
        for name in "ab"
    ]
    try:
        for proc in servers:  # one after the other: the first one creates the schema
            await asyncio.to_thread(proc.start)
        yield servers
    finally:
        for proc in servers:
            await asyncio.to_thread(proc.stop)


async def test_stream_on_one_server_sees_changes_made_through_another(
    postgres_url: str, tmp_path: Path
) -> None:
    async with _two_servers(postgres_url, tmp_path) as (a, b), aiohttp.ClientSession() as session:
        front_a = Flovyn(a.url, session)
        front_a.slug, front_a.api_key, front_a.worker_token = await new_tenant(front_a)
        front_b = Flovyn(b.url, session, front_a.slug, front_a.api_key, front_a.worker_token)
        async with (
            front_a.worker([collects_signals], poll_timeout=5.0),
            front_a.client() as client_a,
            front_b.client() as client_b,
        ):
            feed = Reader(client_b.stream_feed())  # B's tenant feed, too
            await asyncio.sleep(0.3)  # connected: the feed starts at the present
            handle = await client_a.start_workflow(collects_signals, 3)
            reader = Reader(client_b.stream_workflow(handle.id))
            try:
                await reader.until(lambda: len(reader.got) >= 1)
                latencies = []
                for n in (1, 2, 3):
                    await asyncio.sleep(0.3)  # B's stream idles, waiting
                    sent = time.monotonic()
                    await signal(front_a, handle.id, n)
                    await reader.until(reader.has("SIGNAL_RECEIVED", n))
                    latencies.append(reader.arrived[-1] - sent)
                got = await reader.finished(within=10)
                finished_at = reader.arrived[-1]
                await feed.until(
                    lambda: any(e.data["workflow"]["status"] == "COMPLETED" for e in feed.got)
                )
            except BaseException:
                print(a.log_tail(40), b.log_tail(40), sep="\n----\n")
                raise
            finally:
                await reader.stop()
                await feed.stop()
            row = await wait_status(front_a, handle.id)
        assert row["status"] == "COMPLETED" and row["output"] == [1, 2, 3]
        assert all(seconds < 2.0 for seconds in latencies), latencies
        assert finished_at - sent < 4.0
        assert_matches_history(got, await front_a.events(handle.id), handle.id, "COMPLETED")
        assert feed.got[0].event == "workflow_created"
        assert {e.data["workflowExecutionId"] for e in feed.got} == {handle.id}
