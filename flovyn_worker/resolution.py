"""Applying resolution events (task done, timer fired, signal, ...) to handles."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from .errors import ChildWorkflowFailed, PromiseRejected, PromiseTimeout, TaskFailed
from .handles import DurableHandle
from .history import Event
from .serde import convert_output

if TYPE_CHECKING:
    from .replay import ReplayState


def apply_event(s: ReplayState, event: Event) -> None:
    """Apply one resolution event to the replay state (no workflow code runs here)."""
    kind = event.event_type
    if kind.startswith("TASK_"):
        _apply_task(s, event)
    elif kind.startswith("CHILD_WORKFLOW_"):
        _apply_child(s, event)
    elif kind in ("TIMER_FIRED", "TIMER_CANCELLED"):
        _apply_timer(s, event)
    elif kind.startswith("PROMISE_"):
        _apply_promise(s, event)
    elif kind == "SIGNAL_RECEIVED":
        name = str(event.get("signalName"))
        s.signals.setdefault(name, deque()).append(event.get("signalValue"))
        deliver_signals(s, name)
    elif kind == "CANCELLATION_REQUESTED":
        s.cancel_requested = True
        if s.main is not None and not s.main.done():
            # The code sees CancelledError at its current await and may clean up.
            s.main.cancel(event.get("reason"))
    elif kind == "WORKFLOW_EXECUTION_FAILED":
        s.retry.on_workflow_failed(event)
    elif kind == "RETRY_REQUESTED":
        s.retry.on_retry_requested(event)
    # WORKFLOW_STARTED / _COMPLETED / _CANCELLED and unknown types: nothing to do


def deliver_signals(s: ReplayState, name: str) -> None:
    """Hand queued signals of ``name`` to live waiters, oldest first."""
    queue = s.signals.get(name)
    waiters = s.signal_waiters.get(name)
    while queue and waiters:
        waiter = waiters.popleft()
        if not waiter.done():  # a waiter cancelled by the code takes nothing
            waiter.set_result(queue.popleft())


def _succeed(handle: DurableHandle, value: Any, output_type: Any) -> None:
    try:
        handle.set_result(convert_output(value, output_type))
    except Exception as exc:  # the output does not validate into the declared model
        handle.set_exception(exc)


def _apply_task(s: ReplayState, event: Event) -> None:
    task_id = str(event.get("taskExecutionId"))
    if event.event_type == "TASK_FAILED" and s.retry.skips("task", task_id, event):
        return
    handle = s.tasks.get(task_id)
    if handle is None:
        s.early[("task", task_id)] = event
        return
    if handle.done():
        return
    if event.event_type == "TASK_COMPLETED":
        _succeed(handle, event.get("output"), handle.output_type)
    elif event.event_type == "TASK_FAILED":
        error = str(event.get("error") or "task failed")
        s.retry.hand_failure(handle, TaskFailed(error, task_id, kind=handle.kind), event)
    elif event.event_type == "TASK_CANCELLED":
        error = f"task '{handle.kind}' was cancelled"
        handle.set_exception(TaskFailed(error, task_id, kind=handle.kind, cancelled=True))


def _apply_child(s: ReplayState, event: Event) -> None:
    child_id = str(event.get("childWorkflowExecutionId"))
    if event.event_type == "CHILD_WORKFLOW_FAILED" and s.retry.skips("child", child_id, event):
        return
    handle = s.children.get(child_id)
    if handle is None:
        s.early[("child", child_id)] = event
        return
    if handle.done():
        return
    if event.event_type == "CHILD_WORKFLOW_COMPLETED":
        _succeed(handle, event.get("output"), handle.output_type)
    elif event.event_type == "CHILD_WORKFLOW_FAILED":
        error = str(event.get("error") or "child workflow failed")
        exc = ChildWorkflowFailed(error, child_id, name=handle.name)
        s.retry.hand_failure(handle, exc, event)
    elif event.event_type == "CHILD_WORKFLOW_CANCELLED":
        error = f"child workflow '{handle.name}' was cancelled"
        handle.set_exception(ChildWorkflowFailed(error, child_id, name=handle.name, cancelled=True))


def _apply_timer(s: ReplayState, event: Event) -> None:
    timer_id = str(event.get("timerId"))
    handle = s.timers.get(timer_id)
    if handle is None:
        s.early[("timer", timer_id)] = event
    elif not handle.done():
        if event.event_type == "TIMER_FIRED":
            handle.set_result(None)
        else:  # cancelled by the server itself (e.g. the execution is being cancelled)
            handle._cancel_from_history()


def _apply_promise(s: ReplayState, event: Event) -> None:
    name = str(event.get("promiseName"))
    handle = s.promises_by_id.get(str(event.get("promiseId"))) or s.promises_by_name.get(name)
    if handle is None:
        s.early[("promise", name)] = event
        return
    if handle.done():
        return
    if event.event_type == "PROMISE_RESOLVED":
        handle.set_result(event.get("value"))
    elif event.event_type == "PROMISE_REJECTED":
        handle.set_exception(PromiseRejected(event.get("error"), name))
    elif event.event_type == "PROMISE_TIMEOUT":
        handle.set_exception(PromiseTimeout(name))
