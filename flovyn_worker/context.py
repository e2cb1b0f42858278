"""``WorkflowContext``: the only door from workflow code to the outside world."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .decorators import RetryPolicy, task_kind, workflow_kind
from .handles import ChildWorkflowHandle, PromiseHandle, TaskHandle, TimerHandle
from .history import describe
from .resolution import deliver_signals
from .serde import to_jsonable, to_millis

if TYPE_CHECKING:
    from .replay import ReplayState


class WorkflowContext:
    """Passed to workflow code; every effect and every source of non-determinism
    goes through it so that a replay of the history reproduces the same run.

    The ``*_async`` methods issue their command at once and return an awaitable
    handle (an ``asyncio.Future``), for fan-out with ``asyncio.gather`` and races
    with ``asyncio.wait``; the plain methods issue and await in one go.
    """

    def __init__(self, state: ReplayState) -> None:
        self._s = state

    @property
    def workflow_execution_id(self) -> str:
        """Id of the execution being run."""
        return self._s.execution_id

    @property
    def cancellation_requested(self) -> bool:
        """True once the history has a ``CANCELLATION_REQUESTED`` applied."""
        return self._s.cancel_requested

    # -- tasks --

    async def schedule(
        self,
        task: Any,
        input: Any = None,
        *,
        queue: str | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,  # noqa: ASYNC109 - the task's own timeout
    ) -> Any:
        """Schedule a task (a ``@task`` object or a kind) and wait for its output.

        Raises ``TaskFailed`` when the task fails for good. The queue defaults to
        the workflow's; retry policy and timeout to the ``@task`` declaration's.
        """
        return await self.schedule_async(
            task, input, queue=queue, retry_policy=retry_policy, timeout=timeout
        )

    def schedule_async(
        self,
        task: Any,
        input: Any = None,
        *,
        queue: str | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
    ) -> TaskHandle:
        """Schedule a task now and return its handle (await it for the output)."""
        s = self._s
        s.ensure_active()
        kind, definition = task_kind(task)
        policy = retry_policy or (definition.retry_policy if definition else None)
        if timeout is None and definition is not None:
            timeout = definition.timeout
        timeout_ms = to_millis(timeout)
        command: dict[str, Any] = {
            "type": "SCHEDULE_TASK",
            "taskExecutionId": "",
            "kind": kind,
            "input": to_jsonable(input),
            "queue": queue or s.queue,
        }
        if policy is not None:
            command["maxRetries"] = policy.max_retries
            command["retryPolicy"] = policy.to_wire()
        if timeout_ms is not None:
            command["timeoutMs"] = timeout_ms
        n = s.next_index("task")
        number = s.next_command_number()
        recorded = s.history.next("task")
        if recorded is not None:
            if recorded.get("kind") != kind:
                s.violate(
                    f"command #{number}: code scheduled task '{kind}' "
                    f"but history has {describe(recorded)}"
                )
            command["taskExecutionId"] = str(recorded.get("taskExecutionId"))
        else:
            command["taskExecutionId"] = s.derive_id(f"task-{n}")
            s.emit(command)
        handle = TaskHandle(
            s.loop,
            task_execution_id=command["taskExecutionId"],
            kind=kind,
            id_base=f"task-{n}",
            command=command,
            output_type=definition.handler.output_type if definition else None,
        )
        s.register_task(handle)
        return handle

    # -- child workflows --

    async def schedule_workflow(
        self,
        workflow: Any,
        input: Any = None,
        *,
        name: str | None = None,
        queue: str | None = None,
    ) -> Any:
        """Start a child workflow and wait for its output (``ChildWorkflowFailed`` if
        it fails). ``name`` defaults to ``"{kind}-{n}"``."""
        return await self.schedule_workflow_async(workflow, input, name=name, queue=queue)

    def schedule_workflow_async(
        self,
        workflow: Any,
        input: Any = None,
        *,
        name: str | None = None,
        queue: str | None = None,
    ) -> ChildWorkflowHandle:
        """Start a child workflow now and return its handle."""
        s = self._s
        s.ensure_active()
        kind, definition = workflow_kind(workflow)
        n = s.next_index("child")
        number = s.next_command_number()
        name = name or f"{kind}-{n}"
        command: dict[str, Any] = {
            "type": "SCHEDULE_CHILD_WORKFLOW",
            "childExecutionName": name,
            "childWorkflowExecutionId": "",
            "kind": kind,
            "input": to_jsonable(input),
            "queue": queue or s.queue,
        }
        recorded = s.history.next("child")
        if recorded is not None:
            if (recorded.get("childWorkflowKind"), recorded.get("childExecutionName")) != (
                kind,
                name,
            ):
                s.violate(
                    f"command #{number}: code started child workflow '{kind}' named "
                    f"'{name}' but history has {describe(recorded)}"
                )
            command["childWorkflowExecutionId"] = str(recorded.get("childWorkflowExecutionId"))
        else:
            command["childWorkflowExecutionId"] = s.derive_id(f"child-{n}")
            s.emit(command)
        handle = ChildWorkflowHandle(
            s.loop,
            child_workflow_execution_id=command["childWorkflowExecutionId"],
            kind=kind,
            name=name,
            id_base=f"child-{n}",
            command=command,
            output_type=definition.handler.output_type if definition else None,
        )
        s.register_child(handle)
        return handle

    # -- timers --

    async def sleep(self, duration: timedelta | float) -> None:
        """Durable sleep (``timedelta`` or seconds): survives worker and server restarts."""
        await self.sleep_async(duration)

    def sleep_async(self, duration: timedelta | float) -> TimerHandle:
        """Start a durable timer now and return its handle (cancel it to ``CANCEL_TIMER``)."""
        s = self._s
        s.ensure_active()
        duration_ms = to_millis(duration) or 0
        n = s.next_index("timer")
        number = s.next_command_number()
        timer_id = s.derive_id(f"timer-{n}")
        recorded = s.history.next("timer")
        if recorded is not None:
            if recorded.get("timerId") != timer_id:
                s.violate(
                    f"command #{number}: code started timer '{timer_id}' ({duration_ms} ms) "
                    f"but history has {describe(recorded)}"
                )
        else:
            s.emit({"type": "START_TIMER", "timerId": timer_id, "durationMs": duration_ms})
        handle = TimerHandle(
            s.loop, timer_id=timer_id, duration_ms=duration_ms, on_cancel=s.cancel_timer
        )
        s.register_timer(handle)
        return handle

    # -- promises --

    async def promise(
        self,
        name: str,
        *,
        timeout: timedelta | float | None = None,  # noqa: ASYNC109 - the promise's deadline
        idempotency_key: str | None = None,
    ) -> Any:
        """Create a durable promise named ``name`` and wait until it is settled from
        outside (by its id, ``<executionId>:<name>``, or ``key:<idempotency_key>`` when a
        key is given). Raises ``PromiseRejected`` or ``PromiseTimeout``."""
        return await self.promise_async(name, timeout=timeout, idempotency_key=idempotency_key)

    def promise_async(
        self,
        name: str,
        *,
        timeout: timedelta | float | None = None,
        idempotency_key: str | None = None,
    ) -> PromiseHandle:
        """Create a durable promise now and return its handle."""
        s = self._s
        s.ensure_active()
        s.next_index("promise")
        number = s.next_command_number()
        command: dict[str, Any] = {"type": "CREATE_PROMISE", "promiseName": name}
        timeout_ms = to_millis(timeout)
        if timeout_ms is not None:
            command["timeoutMs"] = timeout_ms
        if idempotency_key is not None:
            command["idempotencyKey"] = idempotency_key
        recorded = s.history.next("promise")
        promise_id: str | None = None
        if recorded is not None:
            if recorded.get("promiseName") != name:
                s.violate(
                    f"command #{number}: code created promise '{name}' "
                    f"but history has {describe(recorded)}"
                )
            promise_id = recorded.get("promiseId")
        else:
            s.emit(command)
        handle = PromiseHandle(s.loop, name=name, promise_id=promise_id)
        s.register_promise(handle)
        return handle

    # -- signals --

    async def wait_for_signal(self, name: str) -> Any:
        """Take the next signal named ``name`` (including ones that arrived earlier)."""
        return await self.wait_for_signal_async(name)

    def wait_for_signal_async(self, name: str) -> asyncio.Future[Any]:
        """Future of the next signal named ``name``; cancel it to stop waiting without
        consuming a signal."""
        s = self._s
        s.ensure_active()
        waiter = s.loop.create_future()
        s.signal_waiters.setdefault(name, deque()).append(waiter)
        deliver_signals(s, name)
        return waiter

    # -- recorded operations --

    async def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (sync or async, no arguments) once and record its JSON result.

        On replay the recorded result is returned and ``fn`` is not called. If ``fn``
        raises, the workflow fails with that error and nothing is recorded, so a
        manual retry runs it again.
        """
        self._s.ensure_active()
        return await self._s.add_operation(name, fn)

    # -- workflow state --

    def get(self, key: str, default: Any = None) -> Any:
        """Value of a state key set by this workflow (a copy), or ``default``."""
        self._s.ensure_active()
        if key not in self._s.state:
            return default
        return to_jsonable(self._s.state[key])

    def set(self, key: str, value: Any) -> None:
        """Set a state key (visible in ``GET .../state``)."""
        value = to_jsonable(value)
        self._mutate("STATE_SET", key, {"type": "SET_STATE", "key": key, "value": value})
        self._s.state[key] = value

    def clear(self, key: str) -> None:
        """Remove a state key."""
        self._mutate("STATE_CLEARED", key, {"type": "CLEAR_STATE", "key": key})
        self._s.state.pop(key, None)

    def clear_all(self) -> None:
        """Remove every state key (one ``CLEAR_STATE`` each, in insertion order)."""
        for key in list(self._s.state):
            self.clear(key)

    def state_keys(self) -> list[str]:
        """Keys currently set, in insertion order."""
        self._s.ensure_active()
        return list(self._s.state)

    def _mutate(self, event_type: str, key: str, command: dict[str, Any]) -> None:
        s = self._s
        s.ensure_active()
        s.next_index("state")
        number = s.next_command_number()
        recorded = s.history.next("state")
        if recorded is None:
            s.emit(command)
        elif recorded.event_type != event_type or recorded.get("key") != key:
            verb = "set" if event_type == "STATE_SET" else "cleared"
            s.violate(
                f"command #{number}: code {verb} state '{key}' but history has {describe(recorded)}"
            )

    # -- deterministic replacements --

    def current_time(self) -> datetime:
        """UTC time of the latest history event applied so far (stable on replay)."""
        return self._s.current_time

    def random_uuid(self) -> uuid.UUID:
        """A UUID that is the same on every replay (UUIDv5 of the execution and a counter)."""
        s = self._s
        return uuid.uuid5(s.namespace, f"uuid-{s.next_index('uuid')}")

    def random(self) -> random.Random:
        """A ``random.Random`` seeded from the execution id (same numbers on replay)."""
        return self._s.random
