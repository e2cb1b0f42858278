"""``Client``: the one typed client of the REST API and its streams. It starts
workflows, waits for their results and follows them live; the methods it inherits
(``api_executions``, ``api_admin``) cover every other endpoint. The CLI, the dashboard
and the tests use it too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from flovyn_server.models.workflows import CancelAnswer, HistoryEvent, SignalAnswer, Workflow

from .api_admin import AdminApi, DiscoveryApi
from .api_automation import AutomationApi
from .api_executions import ExecutionsApi
from .api_tasks import TasksApi
from .decorators import workflow_kind
from .errors import FlovynApiError, WorkflowCancelled, WorkflowFailed
from .serde import convert_output, to_jsonable
from .sse import END_EVENT, STREAM_READ_TIMEOUT, StreamEvent, read_stream
from .transport import Transport, quote_segment

log = logging.getLogger("flovyn_worker.client")

TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


class WorkflowHandle:
    """A workflow execution seen from the client side."""

    def __init__(
        self,
        client: Client,
        workflow_execution_id: str,
        *,
        output_type: type[BaseModel] | None = None,
        created: bool | None = None,
    ) -> None:
        self._client = client
        self.id = workflow_execution_id
        self.output_type = output_type
        #: True if ``start_workflow`` created the execution, False on an idempotency
        #: hit, None for handles from ``get_handle``.
        self.created = created

    async def describe(self) -> Workflow:
        """The execution as ``GET .../workflow-executions/{id}`` returns it."""
        return await self._client.get_workflow(self.id)

    async def result(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - public API
        """Wait until the execution is terminal and return its output.

        Waits on the execution's stream (its ``end`` event); where the stream cannot be
        had (a proxy that does not pass Server-Sent Events), it polls instead. Raises
        ``WorkflowFailed`` (with ``.error``) or ``WorkflowCancelled``, and
        ``asyncio.TimeoutError`` when ``timeout`` seconds pass first.
        """
        async with asyncio.timeout(timeout):
            execution = await self.describe()
            if execution["status"] not in TERMINAL_STATUSES:
                await self._wait_for_end(execution["currentSequence"])
                execution = await self.describe()
            status = execution["status"]
            if status == "COMPLETED":
                return convert_output(execution["output"], self.output_type)
            if status == "FAILED":
                raise WorkflowFailed(execution["error"], self.id)
            raise WorkflowCancelled(self.id)

    async def _wait_for_end(self, seen: int) -> None:
        try:
            # After the events already seen: only the end matters here.
            async with contextlib.aclosing(self.stream(last_event_id=str(seen))) as events:
                async for event in events:
                    if event.event == END_EVENT:
                        return
        except FlovynApiError as exc:
            if exc.status in (401, 403):
                raise
            log.info("stream of %s unavailable (%s): polling its status", self.id, exc)
        delay = 0.05
        while (await self.describe())["status"] not in TERMINAL_STATUSES:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def signal(self, name: str, value: Any = None) -> SignalAnswer:
        """Send signal ``name`` with ``value``; returns ``{signalEventSequence}``."""
        return await self._client.signal_workflow(self.id, name, value)

    async def cancel(
        self, reason: str | None = None, cascade_to_children: bool = True
    ) -> CancelAnswer:
        """Request cancellation; returns ``{status, cancelledChildren}``."""
        return await self._client.cancel_workflow(
            self.id, reason=reason, cascade_to_children=cascade_to_children
        )

    async def events(self) -> list[HistoryEvent]:
        """The whole event history, in sequence order (fetched page by page)."""
        return await self._client.all_workflow_events(self.id)

    def stream(
        self,
        *,
        last_event_id: str | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
        on_connection: Callable[[bool], None] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The history live, then ``end``: see ``Client.stream_workflow``."""
        return self._client.stream_workflow(
            self.id,
            last_event_id=last_event_id,
            read_timeout=read_timeout,
            on_connection=on_connection,
        )

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id}>"


class Client(ExecutionsApi, TasksApi, AutomationApi, AdminApi, DiscoveryApi):
    """Async REST client: ``async with Client(url, tenant=..., api_key=...) as c``.

    ``tenant`` may be None for the calls outside a tenant (``create_tenant``, and the
    others given a ``slug``) with the admin key. Error answers raise
    ``FlovynApiError`` (``status``, ``code``, ``message``); a server that cannot be
    reached raises aiohttp's ``ClientConnectionError``.
    """

    def __init__(
        self,
        server_url: str,
        *,
        tenant: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._transport = Transport(
            server_url, tenant=tenant, token=api_key, default_timeout=timeout
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._transport.close()

    async def _trigger(
        self,
        workflow: Any,
        input: Any,
        *,
        idempotency_key: str | None,
        queue: str | None,
        metadata: dict[str, str] | None,
        signal: dict[str, Any] | None = None,
    ) -> WorkflowHandle:
        kind, definition = workflow_kind(workflow)
        answer, created = await self.trigger_workflow(
            kind,
            input,
            queue=queue,
            idempotency_key=idempotency_key,
            metadata=metadata,
            signal=signal,
        )
        return WorkflowHandle(
            self,
            str(answer["workflowExecutionId"]),
            output_type=definition.handler.output_type if definition else None,
            created=created,
        )

    async def start_workflow(
        self,
        workflow: Any,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        queue: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> WorkflowHandle:
        """Trigger a workflow (a ``@workflow`` object or a kind) and return its handle.

        With ``idempotency_key``, a second start within the key's TTL returns the
        existing execution (``handle.created`` is then False).
        """
        return await self._trigger(
            workflow, input, idempotency_key=idempotency_key, queue=queue, metadata=metadata
        )

    def get_handle(self, workflow_execution_id: str) -> WorkflowHandle:
        """Handle of an existing execution."""
        return WorkflowHandle(self, workflow_execution_id)

    async def signal_with_start(
        self,
        workflow: Any,
        input: Any = None,
        *,
        idempotency_key: str,
        signal_name: str,
        signal_value: Any = None,
        queue: str | None = None,
    ) -> WorkflowHandle:
        """Signal the execution that ``idempotency_key`` names while it is running, or
        start a new one and signal it: one request, one transaction on the server."""
        signal = {"signalName": signal_name, "value": to_jsonable(signal_value)}
        return await self._trigger(
            workflow,
            input,
            idempotency_key=idempotency_key,
            queue=queue,
            metadata=None,
            signal=signal,
        )

    def stream_workflow(
        self,
        workflow_execution_id: str,
        *,
        last_event_id: str | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
        on_connection: Callable[[bool], None] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Follow an execution's history live (``GET .../stream/workflows/{id}``).

        ``async for event in client.stream_workflow(id)`` yields every history event in
        sequence order, from the first one (or the one after ``last_event_id``), as it
        is appended, with what its tasks report as they run (``task_progress``,
        ``task_stream``), then a last ``end`` event once the execution is COMPLETED,
        FAILED or CANCELLED, and stops.

        A dropped connection, a server that restarts (it closes its streams without
        ``end``) and transient errors (network errors, 5xx, 429) are survived: the
        stream reconnects, after the server's ``retry:`` hint and then with backoff,
        from the last event it yielded, so nothing is missed or repeated. Other errors
        raise ``FlovynApiError`` (401, 403, 404 for an unknown execution, 400).

        There is no overall timeout: wrap the loop in ``asyncio.timeout`` for one. A
        connection silent for ``read_timeout`` seconds counts as dead (a half-open TCP
        connection never errors) and is replaced: the default, 45 s, is three of the
        server's keep-alive intervals (15 s unless ``FLOVYN_STREAM_KEEPALIVE_S`` says
        otherwise; keep it above that); None waits on a silent connection forever.
        Leaving the loop closes the HTTP response once the generator is finalised (at
        once on CPython when nothing else refers to it);
        ``async with contextlib.aclosing(client.stream_workflow(id)) as events:`` closes
        it deterministically, and so does cancelling the task that iterates.
        """
        return read_stream(
            self._transport,
            f"/stream/workflows/{quote_segment(workflow_execution_id)}",
            last_event_id=last_event_id,
            read_timeout=read_timeout,
            on_connection=on_connection,
        )

    def stream_consolidated(
        self,
        workflow_execution_id: str,
        *,
        last_event_id: str | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
        on_connection: Callable[[bool], None] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """``stream_workflow`` over the execution and all its descendants (children,
        grandchildren, ...): each event's ``data["workflowExecutionId"]`` says whose it
        is; ``end`` comes after the root's end (``GET .../stream/workflows/{id}/
        consolidated``). Reconnection and timeouts as ``stream_workflow``."""
        return read_stream(
            self._transport,
            f"/stream/workflows/{quote_segment(workflow_execution_id)}/consolidated",
            last_event_id=last_event_id,
            read_timeout=read_timeout,
            on_connection=on_connection,
        )

    def stream_tasks(
        self,
        workflow_execution_id: str,
        *,
        last_event_id: str | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
        on_connection: Callable[[bool], None] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The execution's tasks live (``GET .../workflow-executions/{id}/tasks/stream``):
        ``task_created``, ``task_started``, ``task_progress``, ``task_log``,
        ``task_completed``, ``task_failed``, ``task_retry``, ``task_cancelled``, each
        with the task as it was after the change, then ``end`` once the execution has
        ended. Reconnection and timeouts as ``stream_workflow``."""
        return read_stream(
            self._transport,
            f"/workflow-executions/{quote_segment(workflow_execution_id)}/tasks/stream",
            last_event_id=last_event_id,
            read_timeout=read_timeout,
            on_connection=on_connection,
        )

    def stream_feed(
        self,
        *,
        last_event_id: str | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
        on_connection: Callable[[bool], None] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The tenant's executions as they change (``GET .../stream/workflows``):
        ``workflow_created`` and ``workflow_status``, each with the execution's summary
        in ``data["workflow"]``. Starts now (or after ``last_event_id``) and never
        ends: leave the loop or cancel it. Reconnection and timeouts as
        ``stream_workflow``."""
        return read_stream(
            self._transport,
            "/stream/workflows",
            last_event_id=last_event_id,
            read_timeout=read_timeout,
            on_connection=on_connection,
        )
