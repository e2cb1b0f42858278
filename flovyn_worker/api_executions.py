"""The REST calls on workflow executions: one method per endpoint, typed answers.

``Client`` inherits these. Each method sends one request and returns the server's
JSON as the answer type the server declares (``flovyn_server.models``): a plain dict
at run time, typed for mypy, so ``-o json`` output and the typed view are the same
object. Lists come twice: ``*_page`` for one page (``limit``, ``cursor`` or
``offset``), and an async iterator that follows ``nextCursor`` to the end.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, cast

from flovyn_server.models.workflows import (
    AttemptList,
    CancelAnswer,
    ChildList,
    EventList,
    HistoryEvent,
    LogLine,
    LogPage,
    RetryAnswer,
    SignalAnswer,
    StateAnswer,
    TaskList,
    TriggerAnswer,
    Workflow,
    WorkflowCounts,
    WorkflowList,
    WorkflowSummary,
)

from .serde import to_jsonable
from .transport import Transport, quote_segment

_EVENTS_PAGE = 1000


def execution_path(workflow_execution_id: str) -> str:
    return f"/workflow-executions/{quote_segment(workflow_execution_id)}"


def _filters(
    status: str | list[str] | None,
    kind: str | None,
    queue: str | None,
    parent_id: str | None,
    created_after: str | None,
    created_before: str | None,
) -> dict[str, Any]:
    return {
        "status": status,
        "kind": kind,
        "queue": queue,
        "parent_id": parent_id,
        "created_after": created_after,
        "created_before": created_before,
    }


async def follow_cursor(
    fetch: Callable[[str | None], Awaitable[Any]], items: str
) -> AsyncGenerator[Any, None]:
    """The `items` of every page `fetch(cursor)` gives, following `nextCursor`."""
    cursor = None
    while True:
        page = await fetch(cursor)
        for item in page[items]:
            yield item
        cursor = page["nextCursor"]
        if not cursor:
            return


class ExecutionsApi:
    _transport: Transport

    async def trigger_workflow(
        self,
        kind: str,
        input: Any = None,
        *,
        queue: str | None = None,
        idempotency_key: str | None = None,
        idempotency_key_ttl: str | None = None,
        priority_seconds: int | None = None,
        version: str | None = None,
        metadata: dict[str, str] | None = None,
        signal: dict[str, Any] | None = None,
    ) -> tuple[TriggerAnswer, bool]:
        """``POST .../workflows/{kind}/trigger``: (the answer, whether it created the
        execution; False on an idempotency hit)."""
        body: dict[str, Any] = {"input": {} if input is None else to_jsonable(input)}
        for name, value in (
            ("queue", queue),
            ("idempotencyKey", idempotency_key),
            ("idempotencyKeyTTL", idempotency_key_ttl),
            ("prioritySeconds", priority_seconds),
            ("version", version),
            ("metadata", metadata or None),
            ("signal", signal),
        ):
            if value is not None:
                body[name] = value
        status, answer = await self._transport.request_with_status(
            "POST", f"/workflows/{quote_segment(kind)}/trigger", body
        )
        return cast(TriggerAnswer, answer), status != 200  # 200 = idempotency hit

    async def workflow_page(
        self,
        *,
        status: str | list[str] | None = None,
        kind: str | None = None,
        queue: str | None = None,
        parent_id: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        offset: int | None = None,
    ) -> WorkflowList:
        """One page of ``GET .../workflow-executions``, newest first. ``status`` may be
        several; times are RFC 3339 (exclusive)."""
        params = {
            "status": status,
            "kind": kind,
            "queue": queue,
            "parentId": parent_id,
            "createdAfter": created_after,
            "createdBefore": created_before,
            "limit": limit,
            "cursor": cursor,
            "offset": offset,
        }
        answer = await self._transport.request("GET", "/workflow-executions", params=params)
        return cast(WorkflowList, answer)

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
    ) -> AsyncGenerator[WorkflowSummary, None]:
        """Every execution the filters match, newest first, page after page by the
        list's cursor: ``async for wf in client.list_workflows(status="FAILED")``.
        Executions created during the walk are not in it; each one there when it began
        is yielded once."""
        filters = _filters(status, kind, queue, parent_id, created_after, created_before)

        async def fetch(cursor: str | None) -> WorkflowList:
            return await self.workflow_page(**filters, limit=page_size, cursor=cursor)

        async for item in follow_cursor(fetch, "workflows"):
            yield item

    async def workflow_counts(
        self, *, kind: str | None = None, queue: str | None = None
    ) -> WorkflowCounts:
        """``GET .../workflow-executions/counts``: executions per status."""
        answer = await self._transport.request(
            "GET", "/workflow-executions/counts", params={"kind": kind, "queue": queue}
        )
        return cast(WorkflowCounts, answer)

    async def get_workflow(self, workflow_execution_id: str) -> Workflow:
        """``GET .../workflow-executions/{id}``."""
        answer = await self._transport.request("GET", execution_path(workflow_execution_id))
        return cast(Workflow, answer)

    async def workflow_events(
        self, workflow_execution_id: str, *, since_sequence: int = 0, limit: int | None = None
    ) -> EventList:
        """``GET .../events``: the events after ``since_sequence``, in sequence order."""
        answer = await self._transport.request(
            "GET",
            execution_path(workflow_execution_id) + "/events",
            params={"since_sequence": since_sequence, "limit": limit},
        )
        return cast(EventList, answer)

    async def all_workflow_events(
        self, workflow_execution_id: str, *, since_sequence: int = 0
    ) -> list[HistoryEvent]:
        """The whole history after ``since_sequence``, fetched page by page."""
        events: list[HistoryEvent] = []
        last = since_sequence
        while True:
            page = await self.workflow_events(
                workflow_execution_id, since_sequence=last, limit=_EVENTS_PAGE
            )
            fresh = [e for e in page["events"] if e["sequence"] > last]
            if not fresh:
                return events
            events += fresh
            last = fresh[-1]["sequence"]

    async def cancel_workflow(
        self,
        workflow_execution_id: str,
        *,
        reason: str | None = None,
        cascade_to_children: bool = True,
    ) -> CancelAnswer:
        """``POST .../cancel``."""
        body: dict[str, Any] = {"cascadeToChildren": cascade_to_children}
        if reason is not None:
            body["reason"] = reason
        answer = await self._transport.request(
            "POST", execution_path(workflow_execution_id) + "/cancel", body
        )
        return cast(CancelAnswer, answer)

    async def retry_workflow(
        self, workflow_execution_id: str, *, note: str | None = None
    ) -> RetryAnswer:
        """``POST .../retry``: run a FAILED execution again (409 otherwise)."""
        body = {} if note is None else {"note": note}
        answer = await self._transport.request(
            "POST", execution_path(workflow_execution_id) + "/retry", body
        )
        return cast(RetryAnswer, answer)

    async def signal_workflow(
        self, workflow_execution_id: str, name: str, value: Any = None
    ) -> SignalAnswer:
        """``POST .../signal``."""
        answer = await self._transport.request(
            "POST",
            execution_path(workflow_execution_id) + "/signal",
            {"signalName": name, "value": to_jsonable(value)},
        )
        return cast(SignalAnswer, answer)

    async def workflow_tasks(self, workflow_execution_id: str) -> TaskList:
        """``GET .../tasks``, in scheduling order."""
        answer = await self._transport.request(
            "GET", execution_path(workflow_execution_id) + "/tasks"
        )
        return cast(TaskList, answer)

    async def workflow_children(self, workflow_execution_id: str) -> ChildList:
        """``GET .../children``."""
        answer = await self._transport.request(
            "GET", execution_path(workflow_execution_id) + "/children"
        )
        return cast(ChildList, answer)

    async def workflow_state(self, workflow_execution_id: str) -> StateAnswer:
        """``GET .../state``."""
        answer = await self._transport.request(
            "GET", execution_path(workflow_execution_id) + "/state"
        )
        return cast(StateAnswer, answer)

    async def task_attempts(self, workflow_execution_id: str, task_id: str) -> AttemptList:
        """``GET .../tasks/{taskId}/attempts``."""
        answer = await self._transport.request(
            "GET",
            f"{execution_path(workflow_execution_id)}/tasks/{quote_segment(task_id)}/attempts",
        )
        return cast(AttemptList, answer)

    async def task_log_page(
        self,
        workflow_execution_id: str,
        task_id: str,
        *,
        level: str | None = None,
        search: str | None = None,
        attempt: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        offset: int | None = None,
    ) -> LogPage:
        """One page of ``GET .../tasks/{taskId}/logs``, oldest first; ``level`` is a
        minimum (WARN gives WARN and ERROR)."""
        params = {"level": level, "search": search, "attempt": attempt}
        params |= {"limit": limit, "cursor": cursor, "offset": offset}
        answer = await self._transport.request(
            "GET",
            f"{execution_path(workflow_execution_id)}/tasks/{quote_segment(task_id)}/logs",
            params=params,
        )
        return cast(LogPage, answer)

    async def task_logs(
        self,
        workflow_execution_id: str,
        task_id: str,
        *,
        level: str | None = None,
        search: str | None = None,
        attempt: int | None = None,
        page_size: int = 1000,
    ) -> AsyncGenerator[LogLine, None]:
        """Every log line of a task the filters match, oldest first, by the cursor."""

        async def fetch(cursor: str | None) -> LogPage:
            return await self.task_log_page(
                workflow_execution_id,
                task_id,
                level=level,
                search=search,
                attempt=attempt,
                limit=page_size,
                cursor=cursor,
            )

        async for line in follow_cursor(fetch, "logs"):
            yield line
