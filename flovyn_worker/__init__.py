"""Flovyn worker SDK: write durable workflows and tasks, run them, and drive them.

Workflows are ``async`` functions (or classes with ``async def run``) decorated
with ``@workflow``; they receive a ``WorkflowContext`` and are replayed from the
execution's history on every activation, so they must be deterministic. Tasks,
decorated with ``@task``, do the side-effecting work and receive a
``TaskContext``. A ``Worker`` runs both against a Flovyn server; a ``Client``
starts executions, waits for their results and streams their histories live.
"""

from ._version import __version__
from .api_tasks import StandaloneTaskHandle
from .client import Client, WorkflowHandle
from .context import WorkflowContext
from .decorators import RetryPolicy, TaskDefinition, WorkflowDefinition, task, workflow
from .errors import (
    ChildWorkflowFailed,
    DeterminismViolation,
    FlovynApiError,
    FlovynError,
    PromiseRejected,
    PromiseTimeout,
    TaskFailed,
    UnsupportedInWorkflow,
    WorkflowCancelled,
    WorkflowFailed,
)
from .handles import ChildWorkflowHandle, PromiseHandle, TaskHandle, TimerHandle
from .replay import ActivationResult, replay_workflow
from .sse import StreamEvent
from .task_context import TaskContext
from .worker import Worker

__all__ = [
    "ActivationResult",
    "ChildWorkflowFailed",
    "ChildWorkflowHandle",
    "Client",
    "DeterminismViolation",
    "FlovynApiError",
    "FlovynError",
    "PromiseHandle",
    "PromiseRejected",
    "PromiseTimeout",
    "RetryPolicy",
    "StandaloneTaskHandle",
    "StreamEvent",
    "TaskContext",
    "TaskDefinition",
    "TaskFailed",
    "TaskHandle",
    "TimerHandle",
    "UnsupportedInWorkflow",
    "Worker",
    "WorkflowCancelled",
    "WorkflowContext",
    "WorkflowDefinition",
    "WorkflowFailed",
    "WorkflowHandle",
    "__version__",
    "replay_workflow",
    "task",
    "workflow",
]
