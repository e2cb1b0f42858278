"""Workflow executions over REST: trigger, lists, reads, and the operator's actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AliasChoices, BeforeValidator, Field
from typing_extensions import TypedDict

from flovyn_server.domain import EventType, LogLevel, WorkflowStatus
from flovyn_server.models.common import MAX_OFFSET, Paging
from flovyn_server.models.fields import (
    INT32_MAX,
    AttemptNumber,
    Body,
    IdempotencyKey,
    Name,
    Query,
    Queue,
    ShortText,
    StringMap,
    TextOrJson,
    Ttl,
    Uuid,
)

# -- requests ------------------------------------------------------------------------


class StartSignal(Body):
    """Signal-with-start: the signal sent to the execution the key names (or a new one)."""

    signal_name: Name
    value: Any = None


class TriggerWorkflow(Body):
    input: Any = Field(default_factory=dict, examples=[{"orderId": "o-1", "amount": 10}])
    queue: Queue = "default"
    priority_seconds: int = Field(0, ge=-86_400, le=86_400)
    version: Name | None = None
    idempotency_key: IdempotencyKey | None = Field(None, examples=["order-o-1"])
    idempotency_key_ttl: Ttl = Field("24h", alias="idempotencyKeyTTL")
    metadata: StringMap | None = None
    signal: StartSignal | None = None


def _upper_list(value: Any) -> Any:
    """`status=a,b&status=c` as one list of upper-case names."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [
            p.strip().upper()
            for v in value
            if isinstance(v, str)
            for p in v.split(",")
            if p.strip()
        ]
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class ListWorkflows(Paging):
    status: Annotated[list[WorkflowStatus], BeforeValidator(_upper_list), Field(max_length=20)] = []
    kind: Name | None = None
    queue: Queue | None = None
    parent_id: Uuid | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = Field(20, ge=1, le=1000)


class EventsQuery(Query):
    since_sequence: int = Field(
        0,
        ge=0,
        le=INT32_MAX,
        validation_alias=AliasChoices("since_sequence", "sinceSequence"),
        serialization_alias="since_sequence",
    )
    limit: int = Field(1000, ge=1, le=10_000)


class LogsQuery(Query):
    """`level` is a minimum: WARN gives WARN and ERROR."""

    level: Annotated[LogLevel, BeforeValidator(_upper)] | None = None
    search: ShortText | None = None
    attempt: AttemptNumber | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class CancelWorkflow(Body):
    reason: ShortText | None = None
    cascade_to_children: bool = True


class RetryWorkflow(Body):
    note: ShortText | None = None


class SignalWorkflow(Body):
    signal_name: Name = Field(examples=["approved"])
    value: Any = None


class ResolvePromise(Body):
    value: Any = None


class RejectPromise(Body):
    error: TextOrJson = Field(examples=["declined by the approver"])


# -- answers -------------------------------------------------------------------------


class Links(TypedDict):
    self: str
    events: str


class TriggerAnswer(TypedDict):
    workflowExecutionId: str
    status: WorkflowStatus
    kind: str
    createdAt: str
    idempotencyKeyUsed: bool
    idempotencyKeyNew: bool
    links: Links
    signalEventSequence: NotRequired[int | None]


class WorkflowSummary(TypedDict):
    id: str
    kind: str
    queue: str
    status: WorkflowStatus
    error: str | None
    parentWorkflowExecutionId: str | None
    workerId: str | None
    retryAttempts: int
    currentSequence: int
    createdAt: str
    startedAt: str | None
    completedAt: str | None
    updatedAt: str


class WorkflowList(TypedDict):
    workflows: list[WorkflowSummary]
    total: int
    limit: int
    offset: int


class Workflow(TypedDict):
    id: str
    tenantId: str
    kind: str
    queue: str
    status: WorkflowStatus
    input: Any
    output: Any
    error: str | None
    currentSequence: int
    workflowVersion: str | None
    parentWorkflowExecutionId: str | None
    childExecutionName: str | None
    workerId: str | None
    retryAttempts: int
    metadata: dict[str, str]
    createdAt: str
    startedAt: str | None
    completedAt: str | None
    updatedAt: str


class HistoryEvent(TypedDict):
    sequence: int
    eventType: EventType
    timestamp: str
    data: dict[str, Any]


class EventList(TypedDict):
    events: list[HistoryEvent]


TaskStatus = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
AttemptStatus = Literal["RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"]


class Task(TypedDict):
    id: str
    kind: str
    status: TaskStatus
    queue: str
    workflowExecutionId: str | None
    executionCount: int
    maxRetries: int
    progress: float | None
    progressDetails: str | None
    input: Any
    output: Any
    error: str | None
    workerId: str | None
    createdAt: str
    startedAt: str | None
    completedAt: str | None
    retryAt: str | None
    timeoutMs: int | None
    metadata: dict[str, str]


class TaskList(TypedDict):
    tasks: list[Task]


class Attempt(TypedDict):
    attempt: int
    startedAt: str
    finishedAt: str | None
    durationMs: int | None
    status: AttemptStatus
    output: Any
    error: str | None
    workerId: str | None


class AttemptList(TypedDict):
    attempts: list[Attempt]


class LogLine(TypedDict):
    id: str
    level: LogLevel
    message: str
    timestamp: str
    attempt: int


class LogPage(TypedDict):
    taskExecutionId: str
    logs: list[LogLine]
    total: int
    limit: int
    offset: int


class StateAnswer(TypedDict):
    state: dict[str, Any]


class Child(TypedDict):
    childWorkflowExecutionId: str
    childExecutionName: str | None
    kind: str
    status: WorkflowStatus
    createdAt: str
    completedAt: str | None


class ChildList(TypedDict):
    children: list[Child]


class CancelAnswer(TypedDict):
    status: Literal["CANCELLED", "CANCELLING", "ALREADY_TERMINAL"]
    cancelledChildren: list[str]


class RetryAnswer(TypedDict):
    workflowExecutionId: str
    status: Literal["PENDING"]
    retryAttempt: int
    message: str
    success: bool


class SignalAnswer(TypedDict):
    signalEventSequence: int | None


class PromiseAnswer(TypedDict):
    promiseId: str
    resolved: bool
    alreadyResolved: NotRequired[bool]
