"""Exceptions raised by the Flovyn worker SDK and its client."""

from __future__ import annotations

from typing import Any


class FlovynError(Exception):
    """Base class of every error raised by ``flovyn_worker``."""


class TaskFailed(FlovynError):
    """A scheduled task failed for good (retries exhausted, not retryable, or cancelled).

    ``str(exc)`` is the task's error as the server recorded it.
    """

    def __init__(
        self,
        error: str,
        task_execution_id: str | None = None,
        *,
        kind: str | None = None,
        cancelled: bool = False,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.task_execution_id = task_execution_id
        self.kind = kind
        self.cancelled = cancelled


class ChildWorkflowFailed(FlovynError):
    """A child workflow ended ``FAILED`` (or ``CANCELLED``, then ``cancelled`` is true)."""

    def __init__(
        self,
        error: str,
        child_workflow_execution_id: str | None = None,
        *,
        name: str | None = None,
        cancelled: bool = False,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.child_workflow_execution_id = child_workflow_execution_id
        self.name = name
        self.cancelled = cancelled


class PromiseRejected(FlovynError):
    """A durable promise was rejected from outside; ``error`` is the rejection value."""

    def __init__(self, error: Any, promise_name: str | None = None) -> None:
        super().__init__(error if isinstance(error, str) else repr(error))
        self.error = error
        self.promise_name = promise_name


class PromiseTimeout(FlovynError):
    """A durable promise was not settled before its timeout."""

    def __init__(self, promise_name: str | None = None) -> None:
        super().__init__(f"promise '{promise_name}' timed out")
        self.promise_name = promise_name


class DeterminismViolation(FlovynError):
    """The workflow code no longer matches the recorded history of the execution."""


class UnsupportedInWorkflow(FlovynError, RuntimeError):
    """Workflow code used an asyncio feature that cannot be replayed deterministically."""


class WorkflowFailed(FlovynError):
    """Client side: the workflow execution ended ``FAILED``; ``error`` is its error."""

    def __init__(self, error: Any, workflow_execution_id: str | None = None) -> None:
        super().__init__(error if isinstance(error, str) else repr(error))
        self.error = error
        self.workflow_execution_id = workflow_execution_id


class WorkflowCancelled(FlovynError):
    """Client side: the workflow execution ended ``CANCELLED``."""

    def __init__(self, workflow_execution_id: str | None = None) -> None:
        super().__init__(f"workflow execution {workflow_execution_id} was cancelled")
        self.workflow_execution_id = workflow_execution_id


class FlovynApiError(FlovynError):
    """The server answered with a non-2xx status (REST error shape ``{error, code}``)."""

    def __init__(self, status: int, code: str | None, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}" if code else f"{status}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
