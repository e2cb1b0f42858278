"""Server-Sent Event streams of workflow histories.

Each event is one history event: `event:` its type, `id:` its sequence, `data:` one
JSON object `{workflowExecutionId, type, timestamp, sequence, data}`. The stream
replays the history from the start (or after `Last-Event-ID`), goes on live, and ends
once the execution is COMPLETED, FAILED or CANCELLED and every event has been sent,
with a last `end` event (`{workflowExecutionId, type: "end", status, timestamp}`) so
that a client knows not to reconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from flovyn_server import metrics
from flovyn_server.api.common import STREAMS, P, engine, tenant
from flovyn_server.api.routing import Router
from flovyn_server.domain import InvalidInput, iso, now_ms
from flovyn_server.jsonio import dumps
from flovyn_server.models.fields import INT32_MAX
from flovyn_server.models.workflows import EndStatus, HistoryEvent, StreamEnd, StreamHistoryEvent
from flovyn_server.streams.hub import Subscription

router = Router("Streams")


class Stream(EventSourceResponse):
    """aiohttp-sse's response with the keep-alive comment the API documents, which
    also ends the subscription when a keep-alive finds the client gone (aiohttp does
    not cancel a handler whose client hung up, and a quiet execution would otherwise
    hold it until its next event)."""

    def __init__(self, *, gone: Callable[[], None], ping_interval: float) -> None:
        super().__init__(ping_interval=ping_interval, send_timeout=30)
        self._gone = gone

    async def _ping(self) -> None:
        message = f": keep-alive{self._sep}{self._sep}".encode()
        try:
            while True:
                await asyncio.sleep(self._ping_interval)
                try:
                    async with asyncio.timeout(self._send_timeout):
                        await self.write(message)
                except TimeoutError:
                    self._abort_transport()
                    return
                except (ConnectionResetError, RuntimeError):
                    return
        finally:
            self._gone()


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID", "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or int(raw) > INT32_MAX:
        raise InvalidInput(f"Last-Event-ID {raw[:40]!r} is not an event id of this stream")
    return int(raw)


@router.get(
    P + "/stream/workflows/{id}",
    answers={200: StreamHistoryEvent | StreamEnd},
    content_type="text/event-stream",
)
async def stream_workflow(request: web.Request, id: str) -> web.StreamResponse:
    """A live stream of the execution's history (Server-Sent Events).

    Every event of the history as it is appended: replayed from the first, or from
    after `Last-Event-ID`, then live. `event:` is the event type, `id:` its sequence,
    `data:` `{workflowExecutionId, type, timestamp, sequence, data}`. Once the execution
    is COMPLETED, FAILED or CANCELLED and everything is sent, a last `end` event
    (`data: {workflowExecutionId, type: "end", status, timestamp}`) and the stream
    closes. A `: keep-alive` comment goes out every 15 s by default
    (`FLOVYN_STREAM_KEEPALIVE_S`). A browser's EventSource, which cannot send headers,
    may pass the API key as `?access_token=`.
    """
    eng = engine(request)
    t = tenant(request)
    after = _last_event_id(request)
    await eng.workflows.row(t, id)  # 404 before any event
    hub = request.app[STREAMS]
    sub = hub.subscribe(t.id, id, after)  # before the first read: nothing is missed
    response = Stream(gone=lambda: hub.end(sub), ping_interval=eng.settings.stream_keepalive_s)
    try:
        await response.prepare(request)
        async with response:  # stops the keep-alives when the stream ends
            await response.write(f"retry: {eng.settings.stream_retry_ms}\n\n".encode())
            await _relay(request, response, sub, after)
    except ConnectionResetError:
        pass  # the client went away
    finally:
        hub.unsubscribe(sub)
    return response


async def _relay(request: web.Request, response: Stream, sub: Subscription, sent: int) -> None:
    """Send the backlog, then each update the hub hands over, until the end."""
    workflows, t = engine(request).workflows, tenant(request)
    request.app[STREAMS].refresh(sub.tenant_id)  # the first read: backlog and status
    while True:
        update = await sub.queue.get()
        if update is None:  # shutting down, or dropped for reading too slowly
            return
        events = [e for e in update.events if e["sequence"] > sent]
        if events and events[0]["sequence"] > sent + 1:
            # The hub read from its own position; what lies between is in the history.
            gap = events[0]["sequence"] - sent - 1
            events = (await workflows.events(t, sub.execution_id, sent, gap))["events"] + events
        for event in events:
            await _send(response, sub.execution_id, event)
            sent = event["sequence"]
        if (
            update.terminal
            and (await workflows.row(t, sub.execution_id))["current_sequence"] <= sent
        ):
            end: StreamEnd = {
                "workflowExecutionId": sub.execution_id,
                "type": "end",
                "status": cast(EndStatus, update.status),  # terminal: checked above
                "timestamp": iso(now_ms()),
            }
            await response.send(dumps(end), id=str(sent), event="end")
            return


async def _send(response: Stream, execution_id: str, event: HistoryEvent) -> None:
    payload: StreamHistoryEvent = {
        "workflowExecutionId": execution_id,
        "type": event["eventType"],
        "timestamp": event["timestamp"],
        "sequence": event["sequence"],
        "data": event["data"],
    }
    await response.send(dumps(payload), id=str(event["sequence"]), event=event["eventType"])
    metrics.labelled(metrics.SSE_EVENTS, "workflow").inc()
