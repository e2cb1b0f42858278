"""The SSE parser (pure), and the resuming reader against a scripted little server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from flovyn_worker import FlovynApiError, StreamEvent
from flovyn_worker.sse import ServerSentEvent, SSEParser, read_stream
from flovyn_worker.transport import Transport
from tests.conftest import find_free_port

# --- the parser ----------------------------------------------------------------------------


def parse(*chunks: bytes | str) -> list[ServerSentEvent]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


STREAM = (
    "retry: 2000\n\n"
    'event: WORKFLOW_STARTED\nid: 1\ndata: {"sequence": 1}\n\n'
    ": keep-alive\n\n"
    'event: end\nid: 1\ndata: {"type": "end"}\n\n'
)
EXPECTED = [
    ServerSentEvent("WORKFLOW_STARTED", '{"sequence": 1}', "1"),
    ServerSentEvent("end", '{"type": "end"}', "1"),
]


def test_events_of_a_whole_stream() -> None:
    parser = SSEParser()
    assert parser.feed(STREAM.encode()) == EXPECTED
    assert parser.retry == 2000
    assert parser.last_event_id == "1"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_chunks_of_any_size(size: int) -> None:
    raw = STREAM.encode()
    assert parse(*(raw[i : i + size] for i in range(0, len(raw), size))) == EXPECTED


def test_a_character_split_between_chunks() -> None:
    raw = "data: é€😀\n\n".encode()
    assert parse(*(raw[i : i + 1] for i in range(len(raw)))) == [ServerSentEvent("message", "é€😀")]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_line_endings(eol: str) -> None:
    text = f"event: x{eol}data: a{eol}data: b{eol}{eol}data: c{eol}{eol}"
    expected = [ServerSentEvent("x", "a\nb"), ServerSentEvent("message", "c")]
    assert parse(text) == expected
    assert parse(*text) == expected  # one character at a time


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # A CR ending a chunk and the LF starting the next: not an empty line (a dispatch).
    assert parse("data: a\r", "\ndata: b\r", "\n\r", "\n") == [ServerSentEvent("message", "a\nb")]
    # ...but a CR then a CR is two line ends.
    assert parse("data: a\r", "\r") == [ServerSentEvent("message", "a")]


def test_multi_line_data_and_empty_data_lines() -> None:
    assert parse("data: one\ndata:\ndata\ndata:  two\n\n") == [
        ServerSentEvent("message", "one\n\n\n two")  # one space dropped, not two
    ]
    assert parse("data:\n\n") == [ServerSentEvent("message", "")]


def test_comments_unknown_fields_and_blocks_without_data() -> None:
    assert parse(": hello\n\n:\n\nfoo: bar\n\nevent: lonely\n\n") == []
    assert parse(": a comment\nevent: x\nwhatever\ndata: d\n\n") == [ServerSentEvent("x", "d")]
    # The event type does not leak into the next event.
    assert parse("event: x\n\ndata: d\n\n") == [ServerSentEvent("message", "d")]


def test_retry_hint() -> None:
    parser = SSEParser()
    assert parser.feed("retry: 1500\n\n") == []
    assert parser.retry == 1500
    parser.feed("retry: 15x\n\nretry: -1\n\nretry:\n\nretry: \uff15\n\n")  # ignored
    assert parser.retry == 1500
    parser.feed("retry:0\n")
    assert parser.retry == 0


def test_last_event_id_persists() -> None:
    parser = SSEParser()
    got = parser.feed("id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 8\n\n")
    assert [e.id for e in got] == ["7", "7", None]
    assert parser.last_event_id == "8"  # an id without data: no event, but the id counts
    assert parser.feed("id: 9\0\ndata: d\n\n") == [ServerSentEvent("message", "d", "8")]


def test_byte_order_mark_and_unfinished_event() -> None:
    parser = SSEParser()
    assert parser.feed(b"\xef\xbb\xbfdata: a\n\nid: 3\ndata: half") == [
        ServerSentEvent("message", "a")
    ]
    parser.reset()  # a new connection: the half event and its id are gone
    assert parser.last_event_id == ""
    assert parser.feed("\ufeffdata: b\n\n") == [ServerSentEvent("message", "b")]


def test_initial_last_event_id() -> None:
    parser = SSEParser("41")
    assert parser.feed("data: x\n\n") == [ServerSentEvent("message", "x", "41")]


# --- the reader, against a scripted server -------------------------------------------------

Script = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


class Scripted:
    """A server whose stream route answers the n-th connection with `script(request, n)`."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.last_ids: list[str | None] = []
        self.closed = asyncio.Event()  # a write to a stream failed: the client hung up

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.last_ids.append(request.headers.get("Last-Event-ID"))
        return await self.script(request, len(self.last_ids))


@contextlib.asynccontextmanager
async def serving(
    script: Script, port: int | None = None
) -> AsyncIterator[tuple[Scripted, Transport]]:
    scripted = Scripted(script)
    app = web.Application()
    app.router.add_get("/api/tenants/t/stream/workflows/{id}", scripted.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = port or find_free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    transport = Transport(f"http://127.0.0.1:{port}", tenant="t", default_timeout=5)
    try:
        yield scripted, transport
    finally:
        await transport.close()
        await runner.cleanup()


async def sse(request: web.Request, *blocks: str, retry: int | None = 10) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if retry is not None:
        await response.write(f"retry: {retry}\n\n".encode())
    for block in blocks:
        await response.write(block.encode())
    return response


def event(n: int, kind: str = "E") -> str:
    return f'event: {kind}\nid: {n}\ndata: {{"sequence": {n}}}\n\n'


END = 'event: end\nid: 3\ndata: {"type": "end", "status": "COMPLETED"}\n\n'


async def collect(transport: Transport, **kw: Any) -> list[StreamEvent]:
    async def run() -> list[StreamEvent]:
        return [e async for e in read_stream(transport, "/stream/workflows/w", **kw)]

    return await asyncio.wait_for(run(), 10)


async def test_reconnects_after_errors_and_early_close_without_gap() -> None:
    async def script(request: web.Request, n: int) -> web.StreamResponse:
        if n == 1:
            return web.json_response({"error": "busy", "code": "UNAVAILABLE"}, status=503)
        if n == 2:
            return await sse(request, event(1), event(2))  # closes without `end`
        return await sse(request, event(3), END)

    async with serving(script) as (server, transport):
        got = await collect(transport)
    assert [(e.id, e.event) for e in got] == [("1", "E"), ("2", "E"), ("3", "E"), ("3", "end")]
    assert got[0].data == {"sequence": 1}
    assert got[-1].data == {"type": "end", "status": "COMPLETED"}
    assert server.last_ids == [None, None, "2"]


async def test_resumes_from_the_given_id_and_after_a_silent_connection() -> None:
    async def script(request: web.Request, n: int) -> web.StreamResponse:
        if n == 1:
            response = await sse(request, event(6))
            await asyncio.sleep(5)  # silent: longer than the read timeout
            return response
        return await sse(request, event(7), END)

    async with serving(script) as (server, transport):
        got = await collect(transport, last_event_id="5", read_timeout=0.3)
    assert [e.id for e in got] == ["6", "7", "3"]
    assert server.last_ids == ["5", "6"]


async def test_waits_for_a_server_that_is_not_up_yet() -> None:
    port = find_free_port()
    transport = Transport(f"http://127.0.0.1:{port}", tenant="t", default_timeout=5)
    reading = asyncio.create_task(collect(transport))
    await asyncio.sleep(0.3)  # connection refused, and again
    assert not reading.done()

    async def script(request: web.Request, n: int) -> web.StreamResponse:
        return await sse(request, event(3), END)

    async with serving(script, port) as (server, _):
        got = await reading
    await transport.close()
    assert [e.event for e in got] == ["E", "end"]
    assert server.last_ids == [None]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_other_errors_raise(status: int) -> None:
    async def script(request: web.Request, n: int) -> web.StreamResponse:
        return web.json_response({"error": "no such thing", "code": "NOPE"}, status=status)

    async with serving(script) as (server, transport):
        with pytest.raises(FlovynApiError) as caught:
            await collect(transport)
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        status,
        "NOPE",
        "no such thing",
    )
    assert len(server.last_ids) == 1


async def test_a_page_that_is_not_a_stream_raises() -> None:
    async def script(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    async with serving(script) as (_, transport):
        with pytest.raises(FlovynApiError, match="text/html"):
            await collect(transport)


async def _keep_alive_until_hang_up(scripted: Scripted, request: web.Request) -> web.StreamResponse:
    response = await sse(request, event(1), event(2))
    try:
        for _ in range(200):
            await asyncio.sleep(0.02)
            await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, RuntimeError):
        scripted.closed.set()
    return response


@pytest.mark.parametrize("how", ["aclosing", "break", "cancel"])
async def test_leaving_the_loop_closes_the_response(how: str) -> None:
    holder: list[Scripted] = []

    async def script(request: web.Request, n: int) -> web.StreamResponse:
        return await _keep_alive_until_hang_up(holder[0], request)

    async with serving(script) as (server, transport):
        holder.append(server)
        if how == "aclosing":
            async with contextlib.aclosing(read_stream(transport, "/stream/workflows/w")) as events:
                async for _ in events:
                    break
        elif how == "break":
            async for _ in read_stream(transport, "/stream/workflows/w"):
                break  # CPython finalises the generator now; the loop runs its aclose()
        else:

            async def forever() -> None:
                async for _ in read_stream(transport, "/stream/workflows/w"):
                    pass

            reading = asyncio.create_task(forever())
            await asyncio.sleep(0.2)
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        await asyncio.wait_for(server.closed.wait(), 3)
        assert len(server.last_ids) == 1
