"""The replay engine: runs workflow code over the whole history of an execution.

One activation = one replay of the full history, synchronously on a
``DeterministicLoop``:

1. start the workflow coroutine and run it until nothing is ready;
2. apply the next resolution event (task done, timer fired, signal, ...) to the
   future waiting for it, run until quiescent again, and so on in sequence order.

Commands the code issues are matched, per kind and in order, against the
command events of the history (``CommandHistory``); commands beyond the history
are new and are what the activation submits. Because resolution events are
applied one at a time in the order the server recorded them, races (a task
against a timer, ``asyncio.wait(FIRST_COMPLETED)``) replay exactly as they
happened.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from .context import WorkflowContext
from .decorators import WorkflowDefinition, workflow_definition
from .errors import DeterminismViolation
from .handles import ChildWorkflowHandle, DurableHandle, PromiseHandle, TaskHandle, TimerHandle
from .history import CommandHistory, Event, describe, parse_events
from .loop import DeterministicLoop
from .resolution import apply_event
from .retry import Restart, RetryTracker
from .serde import ERROR_LIMIT, TRACE_LIMIT, to_jsonable, wire_text

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING: Any = object()


@dataclass
class ActivationResult:
    """What an activation submits: ``status`` and the new ``commands`` in issue order.

    ``status`` is ``SUSPENDED``, ``COMPLETED`` (last command ``COMPLETE_WORKFLOW``),
    ``FAILED`` (last command ``FAIL_WORKFLOW``) or ``CANCELLED`` (no terminal command).
    """

    status: str
    commands: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Operation:
    name: str
    fn: Callable[[], Any]
    future: asyncio.Future[Any]


def namespace_of(execution_id: str) -> uuid.UUID:
    """UUIDv5 namespace for ids derived from an execution id."""
    try:
        return uuid.UUID(execution_id)
    except ValueError:
        # Not a UUID (tests, foreign ids): still deterministic.
        return uuid.uuid5(uuid.NAMESPACE_URL, execution_id)


def format_error(exc: BaseException) -> tuple[str, str]:
    """``("Type: message", traceback)`` as sent in ``FAIL_WORKFLOW`` / task ``fail``."""
    return (
        wire_text(f"{type(exc).__name__}: {exc}", ERROR_LIMIT),
        wire_text("".join(traceback.format_exception(exc)), TRACE_LIMIT),
    )


class ReplayState:
    """One replay pass over a history; ``WorkflowContext`` issues commands against it."""

    def __init__(
        self,
        definition: WorkflowDefinition,
        execution_id: str,
        events: list[Event],
        *,
        input: Any,
        queue: str,
        skip: frozenset[int] = frozenset(),
    ) -> None:
        self.definition = definition
        self.execution_id = execution_id
        self.queue = queue
        self.input = input
        self.events = events
        self.loop = DeterministicLoop()  # type: ignore[abstract]  # I/O methods unused
        self.history = CommandHistory(events)
        self.namespace = namespace_of(execution_id)
        self.random = random.Random(execution_id)
        self.current_time = _EPOCH
        self.commands: list[dict[str, Any]] = []
        self.command_count = 0
        self.counters: dict[str, int] = {}
        self.tasks: dict[str, TaskHandle] = {}
        self.children: dict[str, ChildWorkflowHandle] = {}
        self.timers: dict[str, TimerHandle] = {}
        self.promises_by_name: dict[str, PromiseHandle] = {}
        self.promises_by_id: dict[str, PromiseHandle] = {}
        # resolution events for ids the code has not issued (yet)
        self.early: dict[tuple[str, str], Event] = {}
        self.signals: dict[str, deque[Any]] = {}
        self.signal_waiters: dict[str, deque[asyncio.Future[Any]]] = {}
        self.state: dict[str, Any] = {}
        self.operations: deque[_Operation] = deque()
        self.cancel_requested = False
        self.violation: DeterminismViolation | None = None
        self.fatal: BaseException | None = None
        self.main: asyncio.Task[Any] | None = None
        self.closed = False
        self.retry = RetryTracker(self, skip)

    # -- helpers used by WorkflowContext --

    def ensure_active(self) -> None:
        """Refuse use of the context outside the workflow code of this activation."""
        if self.closed:
            raise RuntimeError("the workflow context is used after its activation ended")
        if asyncio.events._get_running_loop() is not self.loop:
            raise RuntimeError(
                "WorkflowContext methods must be called from the workflow code itself "
                "(not from ctx.run functions, threads or other event loops)"
            )

    def next_index(self, kind: str) -> int:
        """1-based counter of issued commands of ``kind``."""
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return self.counters[kind]

    def next_command_number(self) -> int:
        """1-based number of the command being issued, over all kinds."""
        self.command_count += 1
        return self.command_count

    def derive_id(self, name: str) -> str:
        """UUIDv5 of the execution id and ``name``: the same on every replay."""
        return str(uuid.uuid5(self.namespace, name))

    def emit(self, command: dict[str, Any]) -> None:
        """Record a new command (beyond the history)."""
        self.commands.append(command)

    def violate(self, message: str) -> NoReturn:
        """Record and raise a determinism violation (the code may not swallow it)."""
        if self.violation is None:
            self.violation = DeterminismViolation(message)
        raise DeterminismViolation(message)

    def register_task(self, handle: TaskHandle) -> None:
        """Track a task handle and resolve it at once if its result came early."""
        self.tasks[handle.task_execution_id] = handle
        self._register("task", handle.task_execution_id)

    def register_child(self, handle: ChildWorkflowHandle) -> None:
        """Track a child workflow handle."""
        self.children[handle.child_workflow_execution_id] = handle
        self._register("child", handle.child_workflow_execution_id)

    def register_timer(self, handle: TimerHandle) -> None:
        """Track a timer handle."""
        self.timers[handle.timer_id] = handle
        self._register("timer", handle.timer_id)

    def register_promise(self, handle: PromiseHandle) -> None:
        """Track a promise handle (by name, and by server id once known)."""
        self.promises_by_name[handle.name] = handle
        if handle.promise_id:
            self.promises_by_id[handle.promise_id] = handle
        self._register("promise", handle.name)

    def _register(self, kind: str, key: str) -> None:
        if not self.retry.on_register(kind, key):
            self.apply_early(kind, key)

    def apply_early(self, kind: str, key: str) -> None:
        """Apply a resolution event that arrived before the code issued ``key``."""
        early = self.early.pop((kind, key), None)
        if early is not None:
            apply_event(self, early)

    def cancel_timer(self, handle: TimerHandle) -> None:
        """The code cancelled a pending timer: emit ``CANCEL_TIMER`` unless recorded."""
        if not self.history.take_timer_cancel(handle.timer_id):
            self.emit({"type": "CANCEL_TIMER", "timerId": handle.timer_id})

    def add_operation(self, name: str, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Queue a ``ctx.run`` operation; it is resolved when the loop is quiescent."""
        future = self.loop.create_future()
        self.operations.append(_Operation(name, fn, future))
        return future

    # -- driving --

    async def run(self) -> ActivationResult:
        """Replay the whole history and say what the activation submits."""
        try:
            if self.events and self.events[0].timestamp is not None:
                self.current_time = self.events[0].timestamp
            self.main = self.loop.create_task(self._main(), name=f"workflow {self.execution_id}")
            await self._settle()
            for event in self.events:
                if self.fatal is not None:
                    break
                if event.command_kind is not None:
                    continue  # matched when the code issues the command
                if event.timestamp is not None:
                    self.current_time = event.timestamp
                apply_event(self, event)
                await self._settle()
            return self._finish()
        finally:
            self.closed = True
            self.loop.close()
            self._mark_exceptions_retrieved()

    def _mark_exceptions_retrieved(self) -> None:
        # A failed handle the code never awaited would otherwise be reported by
        # its finalizer; the failure is in the history, there is nothing to report.
        handles: list[DurableHandle] = [
            *self.tasks.values(),
            *self.children.values(),
            *self.promises_by_name.values(),
        ]
        for handle in handles:
            if handle.done() and not handle.cancelled():
                handle.exception()

    async def _main(self) -> Any:
        return await self.definition.handler.invoke(WorkflowContext(self), self.input)

    def _run_loop(self) -> None:
        self.loop.run_until_quiescent()
        if self.violation is not None:
            raise self.violation

    async def _settle(self) -> None:
        # ctx.run operations resolve only at quiescence, in issue order, both when
        # they come from history and when they run for real, so the interleaving
        # of workflow coroutines is the same in both cases.
        self._run_loop()
        while self.operations and self.fatal is None:
            await self._resolve_operation(self.operations.popleft())
            self._run_loop()

    async def _resolve_operation(self, op: _Operation) -> None:
        if op.future.done():
            return  # cancelled before it ran: neither run nor recorded
        self.next_index("operation")
        number = self.next_command_number()
        event = self.history.next("operation")
        if event is not None:
            if event.get("operationName") != op.name:
                self.violate(
                    f"command #{number}: code ran operation '{op.name}' "
                    f"but history has {describe(event)}"
                )
            op.future.set_result(event.get("result"))
            return
        try:
            value = op.fn()
            if inspect.isawaitable(value):
                value = await value
            value = to_jsonable(value)
        except Exception as exc:
            # Not recorded, and the code does not get to react: a manual retry
            # then runs the operation again from the same replayed state.
            self.fatal = exc
            return
        self.emit({"type": "RECORD_OPERATION", "operationName": op.name, "result": value})
        op.future.set_result(value)

    def _finish(self) -> ActivationResult:
        if self.fatal is not None:
            return self._failed(self.fatal)
        main = self.main
        assert main is not None
        if not main.done():
            self._check_all_matched("is blocked")
            return ActivationResult("SUSPENDED", self.commands)
        self._check_all_matched("finished")
        if main.cancelled():
            if self.cancel_requested:
                return ActivationResult("CANCELLED", self.commands)
            return self._failed(asyncio.CancelledError("workflow code was cancelled"))
        exc = main.exception()
        if exc is not None:
            return self._failed(exc)
        try:
            output = to_jsonable(main.result())
        except Exception as err:
            return self._failed(err)
        self.commands.append({"type": "COMPLETE_WORKFLOW", "output": output})
        return ActivationResult("COMPLETED", self.commands)

    def _failed(self, exc: BaseException) -> ActivationResult:
        error, stack = format_error(exc)
        self.commands.append({"type": "FAIL_WORKFLOW", "error": error, "stackTrace": stack})
        return ActivationResult("FAILED", self.commands)

    def _check_all_matched(self, what: str) -> None:
        event = self.history.first_unmatched()
        if event is not None:
            message = (
                f"workflow code {what} but history has {describe(event)} "
                "that the code did not issue"
            )
            self.violation = DeterminismViolation(message)
            raise self.violation


async def replay_workflow(
    workflow: Any,
    execution_id: str,
    events: list[dict[str, Any]] | list[Event],
    *,
    input: Any = _MISSING,
    queue: str = "default",
) -> ActivationResult:
    """Replay ``events`` through ``workflow`` and return what the activation submits.

    ``workflow`` is a ``@workflow`` object or its definition; ``input`` defaults to
    the ``WORKFLOW_STARTED`` event's. Raises ``DeterminismViolation`` when the code
    does not match the history. Also handy to test workflows against histories.
    """
    definition = workflow_definition(workflow)
    if definition is None:
        raise TypeError(f"{workflow!r} is not decorated with @workflow")
    history = parse_events(events)
    if input is _MISSING:
        started = next((e for e in history if e.event_type == "WORKFLOW_STARTED"), None)
        input = started.get("input") if started is not None else None
    skip: frozenset[int] = frozenset()
    while True:
        state = ReplayState(definition, execution_id, history, input=input, queue=queue, skip=skip)
        try:
            return await state.run()
        except Restart as restart:
            # Each restart skips at least one more failure event, so this ends.
            skip = skip | restart.sequences
