"""Server-Sent Event streams: workflow, consolidated, task and tenant feed.

`event:` is the event name, `data:` one JSON object, `id:` the event's stream position
(see "Stream positions" in store/base.py): a number that grows along every stream (on
the tenant feed, `<position>-<execution id>`, since one change may mark many
executions). A client that reconnects with `Last-Event-ID` gets exactly what it
missed. Workflow, consolidated and task streams replay from the first event without
it, and end once the execution is COMPLETED, FAILED or CANCELLED and all it wrote was
sent, with a last `end` event (`{workflowExecutionId, type: "end", status,
timestamp}`) so that a client knows not to reconnect. The feed starts at the present
without it, and says where with a first `id:` line and no event (a client that
reconnects before its first event then misses nothing); it never ends.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import cast

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from flovyn_server import metrics
from flovyn_server.api.common import STREAMS, P, engine, tenant
from flovyn_server.api.openapi import LAST_EVENT_ID
from flovyn_server.api.routing import EVENT_STREAM, Router
from flovyn_server.domain import InvalidInput, iso, now_ms
from flovyn_server.engine.stream_reads import Item
from flovyn_server.jsonio import dumps
from flovyn_server.models.streams import (
    EndStatus,
    StreamEnd,
    StreamFeedEvent,
    StreamHistoryEvent,
    StreamTaskData,
    StreamTaskEvent,
)
from flovyn_server.streams.hub import Kind
from flovyn_server.streams.relay import Relay

router = Router("Streams")
_LAST_EVENT_ID = re.compile(LAST_EVENT_ID)
_NO_TIE = (Kind.WORKFLOW, Kind.CONSOLIDATED, Kind.TASKS, Kind.TASK)


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


def _last_event_id(request: web.Request, kind: Kind) -> tuple[int, str] | None:
    raw = request.headers.get("Last-Event-ID", "").strip()
    if not raw:
        return None
    match = _LAST_EVENT_ID.match(raw) if len(raw) <= 80 else None
    pos, _, tie = raw.partition("-")
    if match is None or int(pos) >= 1 << 63 or (tie and kind in _NO_TIE):
        raise InvalidInput(f"Last-Event-ID {raw[:40]!r} is not an event id of this stream")
    return int(pos), tie


async def _serve(
    request: web.Request, kind: Kind, scope: str, execution_id: str | None
) -> web.StreamResponse:
    """Run one stream: subscribe, relay, end (see the module). `execution_id` is the
    execution (for `Kind.TASK`, the standalone task) whose end ends the stream."""
    eng = engine(request)
    t = tenant(request)
    after = _last_event_id(request, kind)
    if kind is Kind.TASK:
        await eng.standalone.row(t, scope)  # 404 before any event
    elif execution_id is not None:
        await eng.workflows.row(t, execution_id)
    hub = request.app[STREAMS]
    sub = hub.subscribe(t.id, kind, scope)  # before the first read: nothing is missed
    response = Stream(gone=lambda: hub.end(sub), ping_interval=eng.settings.stream_keepalive_s)

    async def send(item: Item) -> None:
        await response.send(dumps(item.payload), id=item.id, event=item.name)
        metrics.labelled(metrics.SSE_EVENTS, kind.value).inc()

    async def mark(position: str) -> None:
        await response.write(f"id: {position}\n\n".encode())

    relay = Relay(eng.store, sub, send, ends_with=execution_id, mark=mark)
    try:
        await response.prepare(request)
        async with response:  # stops the keep-alives when the stream ends
            await response.write(f"retry: {eng.settings.stream_retry_ms}\n\n".encode())
            status = await relay.run(after)
            if status is not None and execution_id is not None:
                end: StreamEnd = {
                    "workflowExecutionId": None if kind is Kind.TASK else execution_id,
                    "type": "end",
                    "status": cast(EndStatus, status),  # terminal: the relay checked
                    "timestamp": iso(now_ms()),
                }
                if kind is Kind.TASK:
                    end["taskExecutionId"] = execution_id
                await response.send(dumps(end), id=relay.last_id, event="end")
    except ConnectionResetError:
        pass  # the client went away
    finally:
        hub.unsubscribe(sub)
    return response


@router.get(
    P + "/stream/workflows/{id}",
    answers={200: StreamHistoryEvent | StreamTaskData | StreamEnd},
    content_type=EVENT_STREAM,
)
async def stream_workflow(request: web.Request, id: str) -> web.StreamResponse:
    """A live stream of the execution's history (Server-Sent Events).

    Every event of the history as it is appended (`event:` its type, `data:`
    `{workflowExecutionId, type, timestamp, sequence, data}`), and what its tasks
    report as they run: `task_progress` (`{taskExecutionId, attempt, progress,
    details}`) and `task_stream` (stream data: `{taskExecutionId, attempt, streamType,
    data}`). Replayed from the first, or from after `Last-Event-ID`, then live; a last
    `end` event once the execution has ended. `id:` is the event's position. A
    `: keep-alive` comment goes out every 15 s by default (`FLOVYN_STREAM_KEEPALIVE_S`).
    A browser's EventSource, which cannot send headers, may pass the API key as
    `?access_token=`.
    """
    return await _serve(request, Kind.WORKFLOW, id, id)


@router.get(
    P + "/stream/workflows/{id}/consolidated",
    answers={200: StreamHistoryEvent | StreamTaskData | StreamEnd},
    content_type=EVENT_STREAM,
)
async def stream_consolidated(request: web.Request, id: str) -> web.StreamResponse:
    """The workflow stream of the execution and all its descendants (children,
    grandchildren, ...), in one order; each event names its `workflowExecutionId`.
    Ends after the root's end. Otherwise as `GET .../stream/workflows/{id}`."""
    return await _serve(request, Kind.CONSOLIDATED, id, id)


@router.get(
    P + "/stream/tasks/{taskId}",
    answers={200: StreamTaskEvent | StreamEnd},
    content_type=EVENT_STREAM,
)
async def stream_standalone_task(request: web.Request, taskId: str) -> web.StreamResponse:
    """A live stream of one standalone task (Server-Sent Events): the events of
    `GET .../workflow-executions/{id}/tasks/stream` for this task (with
    `workflowExecutionId` null), replayed from the first or from after
    `Last-Event-ID`, then a last `end` event (`{taskExecutionId, type: "end", status}`)
    once it is COMPLETED, FAILED or CANCELLED. 404 for a workflow's task."""
    return await _serve(request, Kind.TASK, taskId, taskId)


@router.get(
    P + "/workflow-executions/{id}/tasks/stream",
    answers={200: StreamTaskEvent | StreamEnd},
    content_type=EVENT_STREAM,
)
async def stream_tasks(request: web.Request, id: str) -> web.StreamResponse:
    """A live stream of the execution's tasks (Server-Sent Events).

    `task_created`, `task_started`, `task_progress`, `task_log`, `task_completed`,
    `task_failed`, `task_retry` and `task_cancelled`, each with the task as it was after
    the change: `{workflowExecutionId, taskExecutionId, type, timestamp, kind, status,
    attempt}`, and by event `workerId`, `error`, `output`, `retryAt`, `progress`, or the
    log line's `level` and `message`. Replayed from the first, or from after
    `Last-Event-ID`, then live; a last `end` event once the execution has ended.
    """
    return await _serve(request, Kind.TASKS, id, id)


@router.get(
    P + "/stream/workflows",
    answers={200: StreamFeedEvent},
    content_type=EVENT_STREAM,
)
async def stream_feed(request: web.Request) -> web.StreamResponse:
    """The tenant's executions as they change, for dashboards (Server-Sent Events).

    `workflow_created` for an execution the client has not seen yet, then
    `workflow_status` on each change of its status, each with the execution's summary
    (`{workflowExecutionId, type, timestamp, workflow}`). The summary is the execution
    as of the read: changes that follow each other quickly may fold into one event.
    Starts at the present (a first `id:` line, with no event, says where: reconnect
    with it); with `Last-Event-ID`, from after that event. Never ends.
    """
    t = tenant(request)
    return await _serve(request, Kind.FEED, t.id, None)
