"""What the Server-Sent Event streams carry: one `data:` object per event.

Every payload has `type` (the `event:` name) and `timestamp`, and names the execution
and the task it is about. `id:` is the event's stream position (see api/streams.py).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict

from flovyn_server.domain import EventType, LogLevel
from flovyn_server.models.fields import Id, Time
from flovyn_server.models.workflows import AttemptStatus, TaskStatus, WorkflowSummary

EndStatus = Literal["COMPLETED", "FAILED", "CANCELLED"]
TaskEventType = Literal[
    "task_created",
    "task_started",
    "task_progress",
    "task_log",
    "task_completed",
    "task_failed",
    "task_retry",
    "task_cancelled",
]


class StreamHistoryEvent(TypedDict):
    """One history event on a workflow stream: `event:` is its type."""

    workflowExecutionId: Id
    type: EventType
    timestamp: Time
    sequence: int
    data: dict[str, Any]


class StreamTaskData(TypedDict):
    """What a running task reported on a workflow stream: `task_progress`, or
    `task_stream` (stream data: `streamType` token, progress, data or error)."""

    workflowExecutionId: Id | None
    taskExecutionId: Id
    type: Literal["task_progress", "task_stream"]
    timestamp: Time
    attempt: int
    progress: NotRequired[float]
    details: NotRequired[Any]
    streamType: NotRequired[Literal["token", "progress", "data", "error"]]
    data: NotRequired[Any]


class StreamTaskEvent(TypedDict):
    """A change of a task on a task stream, with the task as it was after it."""

    workflowExecutionId: Id | None
    taskExecutionId: Id
    type: TaskEventType
    timestamp: Time
    kind: str
    status: TaskStatus
    attempt: int
    attemptStatus: NotRequired[AttemptStatus]
    workerId: NotRequired[Id | None]
    error: NotRequired[str | None]
    output: NotRequired[Any]
    retryAt: NotRequired[Time]
    progress: NotRequired[float]
    details: NotRequired[Any]
    level: NotRequired[LogLevel]
    message: NotRequired[str]


class StreamFeedEvent(TypedDict):
    """The tenant feed: `workflow_created` or `workflow_status`, with the execution's
    summary as of the change (changes between two reads of the server fold into one)."""

    workflowExecutionId: Id
    type: Literal["workflow_created", "workflow_status"]
    timestamp: Time
    workflow: WorkflowSummary


class StreamEnd(TypedDict):
    """The last event of a workflow, consolidated or task stream (`event: end`): the
    execution (or the standalone task) has ended and everything was sent; do not
    reconnect."""

    workflowExecutionId: Id | None
    taskExecutionId: NotRequired[Id]
    type: Literal["end"]
    status: EndStatus
    timestamp: Time


__all__ = [
    "EndStatus",
    "StreamEnd",
    "StreamFeedEvent",
    "StreamHistoryEvent",
    "StreamTaskData",
    "StreamTaskEvent",
    "TaskEventType",
]
