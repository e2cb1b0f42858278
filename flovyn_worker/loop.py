"""A tiny deterministic asyncio event loop that runs workflow code during replay.

It has a ready queue and nothing else: no clock, no I/O, no threads. Workflow
code runs on it synchronously (nested inside the worker's real loop) until no
callback is ready, so ``asyncio.gather``, ``asyncio.wait``, ``asyncio.shield``,
tasks and futures behave exactly as usual while every wake-up comes from the
replay engine in history order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from contextvars import Context
from typing import Any, NoReturn

from .errors import UnsupportedInWorkflow

log = logging.getLogger("flovyn_worker.replay")

_USE_CTX = (
    "is not available in workflow code: it is replayed and must not depend on "
    "wall-clock time or I/O; use ctx.sleep(...) for delays and ctx.schedule(...) "
    "or ctx.run(...) for side effects"
)

# asyncio reports these through the exception handler when an activation's
# leftover futures are garbage collected; they are expected, not errors.
_EXPECTED = ("Task was destroyed but it is pending", "exception was never retrieved")


class _OrderedTask(asyncio.Task[Any]):
    """A task whose hash is its creation order.

    ``asyncio.wait`` returns sets; with the default identity hash their
    iteration order would depend on memory addresses and differ between replays.
    """

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        loop: DeterministicLoop,
        name: str | None,
        context: Context | None,
    ) -> None:
        self._order = loop.next_order()  # before __init__, which hashes the task
        super().__init__(coro, loop=loop, name=name, context=context)

    def __hash__(self) -> int:
        return self._order


class _OrderedFuture(asyncio.Future[Any]):
    """A future whose hash is its creation order (see ``_OrderedTask``)."""

    def __init__(self, *, loop: DeterministicLoop) -> None:
        self._order = loop.next_order()
        super().__init__(loop=loop)

    def __hash__(self) -> int:
        return self._order


class DeterministicLoop(asyncio.AbstractEventLoop):
    """Event loop whose only source of progress is ``call_soon``.

    ``run_until_quiescent()`` runs ready callbacks until none is left; timers and
    I/O raise ``UnsupportedInWorkflow``.
    """

    def __init__(self) -> None:
        self._ready: deque[asyncio.Handle] = deque()
        self._tasks: list[asyncio.Task[Any]] = []
        self._running = False
        self._closed = False
        self._order = 0

    def next_order(self) -> int:
        """A counter for deterministic hashes of futures created in this activation."""
        self._order += 1
        return self._order

    # -- what Future, Task, gather, wait and shield need --

    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> asyncio.Handle:
        """Queue ``callback`` to run in this loop's next turn."""
        if self._closed:
            raise RuntimeError("the workflow activation is over")
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def create_future(self) -> asyncio.Future[Any]:
        """A future bound to this loop."""
        return _OrderedFuture(loop=self)

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Task[Any]:
        """Wrap ``coro`` in a task that this loop steps."""
        task = _OrderedTask(coro, loop=self, name=name, context=context)
        self._tasks.append(task)
        return task

    def get_debug(self) -> bool:
        """Debug mode is off: it would record wall-clock source tracebacks."""
        return False

    def is_running(self) -> bool:
        """True while ``run_until_quiescent`` is stepping workflow code."""
        return self._running

    def is_closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    def time(self) -> float:
        """A constant: workflow code has no clock (use ``ctx.current_time()``)."""
        return 0.0

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Log errors asyncio could not deliver anywhere; ignore the expected ones.

        The expected ones arrive from finalizers at garbage-collection time, where
        formatting a traceback (which parses source in 3.11) is not safe to do.
        """
        message = str(context.get("message", ""))
        if any(expected in message for expected in _EXPECTED):
            return
        log.warning("workflow loop: %s", message, exc_info=context.get("exception"))

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Same as ``call_exception_handler``."""
        self.call_exception_handler(context)

    # -- what workflow code must not use --

    def _unsupported(self, what: str) -> NoReturn:
        raise UnsupportedInWorkflow(f"{what} {_USE_CTX}")

    def call_later(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        """Not supported: use ``ctx.sleep``."""
        self._unsupported("loop.call_later (asyncio.sleep, asyncio.wait_for, asyncio.timeout)")

    def call_at(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        """Not supported: use ``ctx.sleep``."""
        self._unsupported("loop.call_at (asyncio.sleep, asyncio.wait_for, asyncio.timeout)")

    def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        """Not supported: threads are not deterministic."""
        self._unsupported("loop.call_soon_threadsafe")

    def run_in_executor(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        """Not supported: use ``ctx.run`` or a task."""
        self._unsupported("loop.run_in_executor")

    # -- driving --

    def run_until_quiescent(self) -> None:
        """Run ready callbacks until none is left, with this loop as the running loop.

        Called synchronously from inside the worker's real loop, so the real
        running loop is saved and put back afterwards.
        """
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        self._running = True
        try:
            while self._ready:
                handle = self._ready.popleft()
                if not handle.cancelled():
                    handle._run()
        finally:
            self._running = False
            asyncio.events._set_running_loop(previous)

    def close(self) -> None:
        """End the activation: close the coroutines of tasks still suspended.

        Closing them now (rather than when the garbage collector gets to them)
        runs their ``finally`` blocks while nothing else is happening; errors
        raised there are of no use to anyone and are dropped.
        """
        if self._closed:
            return
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        try:
            for task in self._tasks:
                if task.done():
                    if not task.cancelled():
                        task.exception()  # mark retrieved: nobody else will look
                else:
                    coro = task.get_coro()
                    try:
                        if coro is not None and hasattr(coro, "close"):
                            coro.close()
                    except Exception as exc:
                        log.debug("ignored error while closing workflow coroutine: %r", exc)
        finally:
            asyncio.events._set_running_loop(previous)
            self._closed = True
            self._ready.clear()
            self._tasks.clear()
