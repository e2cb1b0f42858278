"""The REST calls on standalone tasks (tasks with no workflow): one method per
endpoint, typed answers (see ``api_executions``), and a handle that waits for a
task's result on its stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

from flovyn_server.models.tasks import TaskPage
from flovyn_server.models.workflows import AttemptList, LogLine, LogPage, Task

from .api_executions import follow_cursor
from .errors import FlovynApiError, TaskFailed
from .serde import to_jsonable
from .sse import END_EVENT, STREAM_READ_TIMEOUT, StreamEvent, read_stream
from .transport import Transport, quote_segment

ENDED = ("COMPLETED", "FAILED", "CANCELLED")


def task_path(task_id: str) -> str:
    return f"/tasks/{quote_segment(task_id)}"


class StandaloneTaskHandle:
    """A standalone task seen from the client side."""

    def __init__(self, api: TasksApi, task: Task, created: bool) -> None:
        self._api = api
        self.id = task["id"]
        self.task = task
        #: False when the idempotency key named an existing task.
        self.created = created

    async def result(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - public API
        """Wait until the task has ended and return its output; ``TaskFailed`` if it
        failed or was cancelled, ``asyncio.TimeoutError`` after ``timeout`` seconds.
        Waits on the task's stream, polling only where the stream cannot be had."""
        async with asyncio.timeout(timeout):
            task = await self._api.get_task(self.id)
            if task["status"] not in ENDED:
                await self._wait()
                task = await self._api.get_task(self.id)
            if task["status"] == "COMPLETED":
                return task["output"]
            raise TaskFailed(
                task["error"] or task["status"],
                self.id,
                kind=task["kind"],
                cancelled=task["status"] == "CANCELLED",
            )

    async def _wait(self) -> None:
        try:
            async with contextlib.aclosing(self._api.stream_task(self.id)) as events:
                async for event in events:
                    if event.event == END_EVENT:
                        return
        except FlovynApiError as exc:
            if exc.status in (401, 403, 404):
                raise
        delay = 0.05
        while (await self._api.get_task(self.id))["status"] not in ENDED:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def cancel(self) -> None:
        """Cancel it while it is PENDING (409 once it runs)."""
        await self._api.cancel_task(self.id)

    def __repr__(self) -> str:
        return f"<StandaloneTaskHandle {self.id}>"


class TasksApi:
    _transport: Transport

    async def create_task(
        self,
        kind: str,
        input: Any = None,
        *,
        queue: str | None = None,
        max_retries: int | None = None,
        timeout_ms: int | None = None,
        idempotency_key: str | None = None,
        idempotency_key_ttl: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> tuple[Task, bool]:
        """``POST .../tasks``: (the task, whether it was created; False when the
        idempotency key named an existing one)."""
        body: dict[str, Any] = {"kind": kind, "input": {} if input is None else to_jsonable(input)}
        for name, value in (
            ("queue", queue),
            ("maxRetries", max_retries),
            ("timeoutMs", timeout_ms),
            ("idempotencyKey", idempotency_key),
            ("idempotencyKeyTTL", idempotency_key_ttl),
            ("metadata", metadata or None),
        ):
            if value is not None:
                body[name] = value
        status, answer = await self._transport.request_with_status("POST", "/tasks", body)
        return cast(Task, answer), status != 200

    async def start_task(
        self, kind: str, input: Any = None, **options: Any
    ) -> StandaloneTaskHandle:
        """Create a standalone task (options as ``create_task``) and return its handle:
        ``await (await client.start_task("send-invoice", {...})).result()``."""
        task, created = await self.create_task(kind, input, **options)
        return StandaloneTaskHandle(self, task, created)

    async def task_page(
        self,
        *,
        status: str | list[str] | None = None,
        kind: str | None = None,
        queue: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        offset: int | None = None,
    ) -> TaskPage:
        """One page of ``GET .../tasks`` (standalone tasks only), newest first."""
        params: dict[str, Any] = {"status": status, "kind": kind, "queue": queue}
        params |= {"limit": limit, "cursor": cursor, "offset": offset}
        return cast(TaskPage, await self._transport.request("GET", "/tasks", params=params))

    async def list_tasks(
        self,
        *,
        status: str | list[str] | None = None,
        kind: str | None = None,
        queue: str | None = None,
        page_size: int = 100,
    ) -> AsyncGenerator[Task, None]:
        """Every standalone task the filters match, newest first, by the cursor."""

        async def fetch(cursor: str | None) -> TaskPage:
            return await self.task_page(
                status=status, kind=kind, queue=queue, limit=page_size, cursor=cursor
            )

        async for task in follow_cursor(fetch, "tasks"):
            yield task

    async def get_task(self, task_id: str) -> Task:
        """``GET .../tasks/{id}``: 404 for a workflow's task."""
        return cast(Task, await self._transport.request("GET", task_path(task_id)))

    async def cancel_task(self, task_id: str) -> None:
        """``DELETE .../tasks/{id}``: a PENDING task only (409 otherwise)."""
        await self._transport.request("DELETE", task_path(task_id))

    async def standalone_task_attempts(self, task_id: str) -> AttemptList:
        """``GET .../tasks/{id}/attempts``."""
        answer = await self._transport.request("GET", task_path(task_id) + "/attempts")
        return cast(AttemptList, answer)

    async def standalone_task_log_page(
        self,
        task_id: str,
        *,
        level: str | None = None,
        search: str | None = None,
        attempt: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> LogPage:
        """One page of ``GET .../tasks/{id}/logs``, oldest first."""
        params: dict[str, Any] = {"level": level, "search": search, "attempt": attempt}
        params |= {"limit": limit, "cursor": cursor}
        answer = await self._transport.request("GET", task_path(task_id) + "/logs", params=params)
        return cast(LogPage, answer)

    async def standalone_task_logs(
        self, task_id: str, *, level: str | None = None, search: str | None = None
    ) -> AsyncGenerator[LogLine, None]:
        """Every log line of the task the filters match, by the cursor."""

        async def fetch(cursor: str | None) -> LogPage:
            return await self.standalone_task_log_page(
                task_id, level=level, search=search, limit=1000, cursor=cursor
            )

        async for line in follow_cursor(fetch, "logs"):
            yield line

    def stream_task(
        self,
        task_id: str,
        *,
        last_event_id: str | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
        on_connection: Callable[[bool], None] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The task's events live (``GET .../stream/tasks/{id}``), as ``stream_tasks``
        has them for a workflow's, then ``end``. Reconnects as ``stream_workflow``."""
        return read_stream(
            self._transport,
            f"/stream/tasks/{quote_segment(task_id)}",
            last_event_id=last_event_id,
            read_timeout=read_timeout,
            on_connection=on_connection,
        )
