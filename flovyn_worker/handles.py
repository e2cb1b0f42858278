"""Awaitable handles returned by ``WorkflowContext``: asyncio futures with an identity.

Being real ``asyncio.Future`` objects (bound to the replay loop) is what lets
``asyncio.gather(*handles)`` fan out and ``asyncio.wait(...)`` race them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel


class DurableHandle(asyncio.Future[Any]):
    """Base class of the handles of durable operations started by workflow code."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop) -> None:
        # Hash by creation order, not address: sets of handles (asyncio.wait's
        # results) then iterate in the same order on every replay.
        next_order = getattr(loop, "next_order", None)
        self._order: int = next_order() if next_order is not None else id(self)
        super().__init__(loop=loop)

    def __hash__(self) -> int:
        return self._order

    def _cancel_from_history(self) -> bool:
        """Cancel because the history says so (no command is emitted)."""
        return super().cancel()


class TaskHandle(DurableHandle):
    """A scheduled task; resolves to its output or raises ``TaskFailed``.

    Cancelling the handle only stops waiting for it: the task itself keeps
    running on the server (there is no cancel-task command).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        task_execution_id: str,
        kind: str,
        id_base: str,
        command: dict[str, Any],
        output_type: type[BaseModel] | None = None,
    ) -> None:
        super().__init__(loop=loop)
        self.task_execution_id = task_execution_id
        self.kind = kind
        self.id_base = id_base
        self.command = command
        self.output_type = output_type

    def __repr__(self) -> str:
        return f"<TaskHandle {self.kind} {self.task_execution_id} {self._state}>"


class ChildWorkflowHandle(DurableHandle):
    """A child workflow; resolves to its output or raises ``ChildWorkflowFailed``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        child_workflow_execution_id: str,
        kind: str,
        name: str,
        id_base: str,
        command: dict[str, Any],
        output_type: type[BaseModel] | None = None,
    ) -> None:
        super().__init__(loop=loop)
        self.child_workflow_execution_id = child_workflow_execution_id
        self.kind = kind
        self.name = name
        self.id_base = id_base
        self.command = command
        self.output_type = output_type

    def __repr__(self) -> str:
        return f"<ChildWorkflowHandle {self.kind} {self.name} {self._state}>"


class TimerHandle(DurableHandle):
    """A durable sleep; resolves to None when the timer fires.

    Cancelling a pending timer handle (directly, through ``asyncio.wait``'s
    loser, or by workflow cancellation) emits ``CANCEL_TIMER``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        timer_id: str,
        duration_ms: int,
        on_cancel: Callable[[TimerHandle], None],
    ) -> None:
        super().__init__(loop=loop)
        self.timer_id = timer_id
        self.duration_ms = duration_ms
        self._on_cancel = on_cancel

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the timer: emits ``CANCEL_TIMER`` unless it already fired."""
        if self.done():
            return False
        self._on_cancel(self)
        return super().cancel(msg)

    def __repr__(self) -> str:
        return f"<TimerHandle {self.timer_id} {self.duration_ms}ms {self._state}>"


class PromiseHandle(DurableHandle):
    """A durable promise; resolves to the value, or raises ``PromiseRejected`` /
    ``PromiseTimeout``."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, name: str, promise_id: str | None
    ) -> None:
        super().__init__(loop=loop)
        self.name = name
        self.promise_id = promise_id

    def __repr__(self) -> str:
        return f"<PromiseHandle {self.name} {self._state}>"
