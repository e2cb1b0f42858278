"""``Client``: start workflows, signal them, settle promises, wait for results, and
follow their histories live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from .decorators import workflow_kind
from .errors import WorkflowCancelled, WorkflowFailed
from .serde import convert_output, to_jsonable
from .sse import STREAM_READ_TIMEOUT, StreamEvent, read_stream
from .transport import Transport, quote_segment

TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})

_EVENTS_PAGE = 1000


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

    @property
    def _path(self) -> str:
        return f"/workflow-executions/{quote_segment(self.id)}"

    async def describe(self) -> dict[str, Any]:
        """The execution as ``GET .../workflow-executions/{id}`` returns it."""
        answer: dict[str, Any] = await self._client._transport.request("GET", self._path)
        return answer

    async def result(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - public API
        """Wait until the execution is terminal and return its output.

        Raises ``WorkflowFailed`` (with ``.error``) or ``WorkflowCancelled``, and
        ``asyncio.TimeoutError`` when ``timeout`` seconds pass first.
        """
        async with asyncio.timeout(timeout):
            delay = 0.02
            while True:
                execution = await self.describe()
                status = execution.get("status")
                if status == "COMPLETED":
                    return convert_output(execution.get("output"), self.output_type)
                if status == "FAILED":
                    raise WorkflowFailed(execution.get("error"), self.id)
                if status == "CANCELLED":
                    raise WorkflowCancelled(self.id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def signal(self, name: str, value: Any = None) -> dict[str, Any]:
        """Send signal ``name`` with ``value``; returns ``{signalEventSequence}``."""
        body = {"signalName": name, "value": to_jsonable(value)}
        answer: dict[str, Any] = await self._client._transport.request(
            "POST", f"{self._path}/signal", body
        )
        return answer

    async def cancel(
        self, reason: str | None = None, cascade_to_children: bool = True
    ) -> dict[str, Any]:
        """Request cancellation; returns ``{status, cancelledChildren}``."""
        body: dict[str, Any] = {"cascadeToChildren": cascade_to_children}
        if reason is not None:
            body["reason"] = reason
        answer: dict[str, Any] = await self._client._transport.request(
            "POST", f"{self._path}/cancel", body
        )
        return answer

    async def events(self) -> list[dict[str, Any]]:
        """The whole event history, in sequence order (fetched page by page)."""
        events: list[dict[str, Any]] = []
        last = 0
        while True:
            params = {"since_sequence": last, "limit": _EVENTS_PAGE}
            answer = await self._client._transport.request(
                "GET", f"{self._path}/events", params=params
            )
            # since_sequence may be inclusive or exclusive: keep only new ones.
            page = [e for e in (answer or {}).get("events", []) if e["sequence"] > last]
            if not page:
                return events
            events.extend(page)
            last = page[-1]["sequence"]

    def stream(
        self,
        *,
        last_event_id: str | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The history live, then ``end``: see ``Client.stream_workflow``."""
        return self._client.stream_workflow(
            self.id, last_event_id=last_event_id, read_timeout=read_timeout
        )

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id}>"


class Client:
    """Async REST client of one tenant: ``async with Client(url, tenant=...) as c``."""

    def __init__(
        self,
        server_url: str,
        *,
        tenant: str,
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
        body: dict[str, Any] = {"input": {} if input is None else to_jsonable(input)}
        if queue is not None:
            body["queue"] = queue
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        if metadata:
            body["metadata"] = metadata
        if signal is not None:
            body["signal"] = signal
        status, answer = await self._transport.request_with_status(
            "POST", f"/workflows/{quote_segment(kind)}/trigger", body
        )
        return WorkflowHandle(
            self,
            str(answer["workflowExecutionId"]),
            output_type=definition.handler.output_type if definition else None,
            created=status != 200,  # 200 = idempotency hit, 201 = created
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
        )

    async def list_workflows(
        self,
        *,
        status: str | list[str] | None = None,
        kind: str | None = None,
        queue: str | None = None,
        parent_id: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        page_size: int = 100,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every execution the filters match, newest first (``GET .../workflow-
        executions``), page after page by the list's cursor: ``async for wf in
        client.list_workflows(status="FAILED")``. Executions created during the walk
        are not in it; each one there when it began is yielded once. ``status`` may be
        several; times are RFC 3339 (exclusive)."""
        params: dict[str, Any] = {"limit": page_size}
        if status is not None:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        for name, value in (
            ("kind", kind),
            ("queue", queue),
            ("parentId", parent_id),
            ("createdAfter", created_after),
            ("createdBefore", created_before),
        ):
            if value is not None:
                params[name] = value
        while True:
            answer = await self._transport.request("GET", "/workflow-executions", params=params)
            for item in answer["workflows"]:
                yield item
            if not answer.get("nextCursor"):
                return
            params["cursor"] = answer["nextCursor"]

    def stream_consolidated(
        self,
        workflow_execution_id: str,
        *,
        last_event_id: str | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
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
        )

    def stream_tasks(
        self,
        workflow_execution_id: str,
        *,
        last_event_id: str | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
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
        )

    def stream_feed(
        self,
        *,
        last_event_id: str | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
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
        )

    async def resolve_promise(self, identifier: str, value: Any = None) -> dict[str, Any]:
        """Resolve a promise by id, ``key:<idempotencyKey>`` or ``<executionId>:<name>``."""
        answer: dict[str, Any] = await self._transport.request(
            "POST",
            f"/promises/{quote_segment(identifier, safe=':')}/resolve",
            {"value": to_jsonable(value)},
        )
        return answer

    async def reject_promise(self, identifier: str, error: Any) -> dict[str, Any]:
        """Reject a promise (same identifiers as ``resolve_promise``)."""
        answer: dict[str, Any] = await self._transport.request(
            "POST",
            f"/promises/{quote_segment(identifier, safe=':')}/reject",
            {"error": to_jsonable(error)},
        )
        return answer
