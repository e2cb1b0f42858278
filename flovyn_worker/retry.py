"""Getting past a failure after a manual retry (``RETRY_REQUESTED``).

History of a retried execution: ``... TASK_FAILED(t) ... WORKFLOW_EXECUTION_FAILED
RETRY_REQUESTED ...``. Replaying it as is would fail the workflow again at the
same place. So, at a recorded ``WORKFLOW_EXECUTION_FAILED``, the replay looks at
the exception the code failed with: task / child failures it was handed (found
through ``__cause__``, ``__context__`` and exception groups) are its culprits.
The replay then starts over with those failure events skipped, so their handles
stay pending, and at ``RETRY_REQUESTED`` each of them is scheduled again under a
new id (``task-{n}-r{retryAttempt}``). Failures the code caught and handled are
not culprits and stay as they were; completed steps resolve from history and
are not run again.

Failures recorded after ``WORKFLOW_EXECUTION_FAILED`` and before the
``RETRY_REQUESTED`` that follows (e.g. the second task of an ``asyncio.gather``
failing after the first one had already failed the workflow) reached no code:
they are culprits too, skipped and scheduled again at the retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .handles import ChildWorkflowHandle, DurableHandle, TaskHandle
from .history import Event, describe

if TYPE_CHECKING:
    from .replay import ReplayState


class Restart(Exception):
    """Culprit failure events found: replay again with them skipped."""

    def __init__(self, sequences: set[int]) -> None:
        super().__init__(sequences)
        self.sequences = sequences


_FAILURES = ("TASK_FAILED", "CHILD_WORKFLOW_FAILED")


def late_failures(events: list[Event]) -> frozenset[int]:
    """Sequences of task / child failures that arrived while the execution was FAILED
    and that a later ``RETRY_REQUESTED`` asks to get past."""
    late: set[int] = set()
    pending: list[int] = []
    failed = False
    for event in events:
        if event.event_type == "WORKFLOW_EXECUTION_FAILED":
            failed = True
        elif event.event_type == "RETRY_REQUESTED":
            late.update(pending)
            pending.clear()
            failed = False
        elif failed and event.event_type in _FAILURES:
            pending.append(event.sequence)
    return frozenset(late)


class RetryTracker:
    """Per replay pass: which failures to skip, and which handles to re-issue."""

    def __init__(self, state: ReplayState, skip: frozenset[int]) -> None:
        self._s = state
        self.skip = skip | late_failures(state.events)
        self._retries_seen = 0
        # failure exceptions handed to the code: identity -> (exception, sequence)
        self._handed: dict[int, tuple[BaseException, int]] = {}
        self._awaiting: list[tuple[str, str]] = []
        self._deferred: dict[tuple[str, str], int] = {}
        retries = [e.sequence for e in state.events if e.event_type == "RETRY_REQUESTED"]
        self._last_retry = max(retries, default=0)

    def hand_failure(self, handle: DurableHandle, exc: BaseException, event: Event) -> None:
        """Fail ``handle`` with ``exc``, remembering the event it stands for."""
        self._handed[id(exc)] = (exc, event.sequence)
        handle.set_exception(exc)

    def skips(self, kind: str, handle_id: str, event: Event) -> bool:
        """True if this failure event is a culprit: keep the handle pending instead."""
        if event.sequence not in self.skip:
            return False
        self._awaiting.append((kind, handle_id))
        return True

    def on_workflow_failed(self, event: Event) -> None:
        """At a recorded ``WORKFLOW_EXECUTION_FAILED``: restart if culprits are found."""
        main = self._s.main
        if event.sequence > self._last_retry or main is None or not main.done():
            return
        exc = None if main.cancelled() else main.exception()
        if exc is None:
            return  # e.g. the code was fixed and no longer fails here
        culprits = self._culprits(exc) - self.skip
        if culprits:
            raise Restart(culprits)

    def on_retry_requested(self, event: Event) -> None:
        """Re-issue the handles whose failures were skipped in the epoch just ended."""
        self._retries_seen += 1
        attempt = int(event.get("retryAttempt") or self._retries_seen)
        pending, self._awaiting = self._awaiting, []
        for kind, old_id in pending:
            self.reissue(kind, old_id, attempt)

    def on_register(self, kind: str, handle_id: str) -> bool:
        """A handle was issued; True if it had a re-issue waiting (now done)."""
        attempt = self._deferred.pop((kind, handle_id), None)
        if attempt is None:
            return False
        self.reissue(kind, handle_id, attempt)
        return True

    def _culprits(self, exc: BaseException) -> set[int]:
        found: set[int] = set()
        seen: set[int] = set()
        stack: list[BaseException] = [exc]
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            handed = self._handed.get(id(current))
            if handed is not None and handed[0] is current:
                found.add(handed[1])
            stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
            if isinstance(current, BaseExceptionGroup):
                stack.extend(current.exceptions)
        return found

    def reissue(self, kind: str, old_id: str, attempt: int) -> None:
        """Schedule a failed task / child again under ``{id base}-r{attempt}``."""
        s = self._s
        handle: TaskHandle | ChildWorkflowHandle | None = (
            s.tasks.get(old_id) if kind == "task" else s.children.get(old_id)
        )
        if handle is None:
            self._deferred[(kind, old_id)] = attempt  # issued later in this replay
            return
        if handle.done():
            return
        new_id = s.derive_id(f"{handle.id_base}-r{attempt}")
        id_field = "taskExecutionId" if kind == "task" else "childWorkflowExecutionId"
        kind_field = "kind" if kind == "task" else "childWorkflowKind"
        command = {**handle.command, id_field: new_id}
        recorded = s.history.take(kind, id_field, new_id)
        if recorded is None:
            s.emit(command)
        elif recorded.get(kind_field) != handle.kind:
            s.violate(f"retry of {kind} '{handle.kind}' but history has {describe(recorded)}")
        handle.command = command
        if isinstance(handle, TaskHandle):
            handle.task_execution_id = new_id
            s.tasks[new_id] = handle
        else:
            handle.child_workflow_execution_id = new_id
            s.children[new_id] = handle
        s.apply_early(kind, new_id)
