"""Workflow executions over REST: trigger, lists, reads, and the operator's actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AliasChoices, BeforeValidator, Field
from typing_extensions import TypedDict

from flovyn_server.domain import EventType, LogLevel, WorkflowStatus
from flovyn_server.models.common import CURSOR_DESCRIPTION, MAX_OFFSET, Cursor, Paging
from flovyn_server.models.fields import (
    INT32_MAX,
    AttemptNumber,
    Body,
    Id,
    IdempotencyKey,
    Level,
    Name,
    Query,
    Queue,
    ShortText,
    StringMap,
    TextOrJson,
    Time,
    Ttl,
    Uuid,
)

# -- requests ------------------------------------------------------------------------


class StartSignal(Body):
    """Signal-with-start: the signal sent to the execution the key names (or a new one)."""

    signal_name: Name
    value: Any = None


class TriggerWorkflow(Body):
    input: Any = Field(
        default_factory=dict,
        examples=[{"orderId": "o-1", "amount": 10}],
        description="The workflow's input: any JSON value.",
    )
    queue: Queue = Field("default", description="The queue whose workers run it.")
    priority_seconds: int = Field(
        0,
        ge=-86_400,
        le=86_400,
        description="Moves it earlier (positive) or later in its queue's claim order.",
    )
    version: Name | None = None
    idempotency_key: IdempotencyKey | None = Field(
        None,
        examples=["order-o-1"],
        description="A second trigger with this key within its TTL answers the first "
        "execution (200) unless that one failed.",
    )
    idempotency_key_ttl: Ttl = Field(
        "24h", alias="idempotencyKeyTTL", description="How long the key holds: 30s to 30d."
    )
    metadata: StringMap | None = Field(None, description="Strings kept with the execution.")
    signal: StartSignal | None = Field(None, description="Signal-with-start: needs idempotencyKey.")


def upper_list(value: Any) -> Any:
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


class ListWorkflows(Paging):
    status: Annotated[
        list[WorkflowStatus],
        BeforeValidator(upper_list),
        Field(
            max_length=20,
            description="Repeatable, or a comma list; any case. CANCELLING matches executions "
            "whose cancellation is not finished.",
        ),
    ] = []
    kind: Name | None = Field(None, description="Only this workflow kind.")
    queue: Queue | None = Field(None, description="Only this queue.")
    parent_id: Uuid | None = Field(None, description="Only the children of this execution.")
    created_after: datetime | None = Field(None, description="RFC 3339; exclusive.")
    created_before: datetime | None = Field(None, description="RFC 3339; exclusive.")
    limit: int = Field(20, ge=1, le=1000, description="Items per page.")


class EventsQuery(Query):
    since_sequence: int = Field(
        0,
        ge=0,
        le=INT32_MAX,
        validation_alias=AliasChoices("since_sequence", "sinceSequence"),
        serialization_alias="since_sequence",
        description="Events after this sequence (exclusive); also `sinceSequence`.",
    )
    limit: int = Field(1000, ge=1, le=10_000, description="Events at most.")


class LogsQuery(Query):
    """`level` is a minimum: WARN gives WARN and ERROR."""

    level: Level | None = Field(None, description="A minimum, any case: WARN gives WARN and ERROR.")
    search: ShortText | None = Field(None, description="A substring, any case.")
    attempt: AttemptNumber | None = Field(None, description="Only this attempt.")
    limit: int = Field(100, ge=1, le=1000, description="Lines per page.")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Lines to skip (slow when deep).")
    cursor: Cursor | None = Field(None, description=CURSOR_DESCRIPTION)


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
    workflowExecutionId: Id
    status: WorkflowStatus
    kind: str
    createdAt: Time
    idempotencyKeyUsed: bool
    idempotencyKeyNew: bool
    links: Links
    signalEventSequence: NotRequired[int | None]


class WorkflowSummary(TypedDict):
    id: Id
    kind: str
    queue: str
    status: WorkflowStatus
    error: str | None
    parentWorkflowExecutionId: Id | None
    workerId: Id | None
    retryAttempts: int
    currentSequence: int
    createdAt: Time
    startedAt: Time | None
    completedAt: Time | None
    updatedAt: Time


class CountWorkflows(Query):
    kind: Name | None = Field(None, description="Only this workflow kind.")
    queue: Queue | None = Field(None, description="Only this queue.")


class WorkflowCounts(TypedDict):
    """Executions per status (CANCELLING: cancellation requested, not finished), and
    the statuses whose count is an estimate (past 1,000 executions)."""

    counts: dict[str, int]  # by status, every status listed
    total: int
    estimated: list[WorkflowStatus]


class WorkflowList(TypedDict):
    workflows: list[WorkflowSummary]
    total: int
    totalIsEstimate: bool
    limit: int
    offset: int
    nextCursor: str | None


class Workflow(TypedDict):
    id: Id
    tenantId: Id
    kind: str
    queue: str
    status: WorkflowStatus
    input: Any
    output: Any
    error: str | None
    currentSequence: int
    workflowVersion: str | None
    parentWorkflowExecutionId: Id | None
    childExecutionName: str | None
    workerId: Id | None
    retryAttempts: int
    metadata: dict[str, str]
    createdAt: Time
    startedAt: Time | None
    completedAt: Time | None
    updatedAt: Time


class HistoryEvent(TypedDict):
    sequence: int
    eventType: EventType
    timestamp: Time
    data: dict[str, Any]


class EventList(TypedDict):
    events: list[HistoryEvent]


TaskStatus = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
AttemptStatus = Literal["RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"]


class Task(TypedDict):
    id: Id
    kind: str
    status: TaskStatus
    queue: str
    workflowExecutionId: Id | None
    executionCount: int
    maxRetries: int
    progress: float | None
    progressDetails: str | None
    input: Any
    output: Any
    error: str | None
    workerId: Id | None
    createdAt: Time
    startedAt: Time | None
    completedAt: Time | None
    retryAt: Time | None
    timeoutMs: int | None
    metadata: dict[str, str]


class TaskList(TypedDict):
    tasks: list[Task]


class Attempt(TypedDict):
    attempt: int
    startedAt: Time
    finishedAt: Time | None
    durationMs: int | None
    status: AttemptStatus
    output: Any
    error: str | None
    workerId: Id | None


class AttemptList(TypedDict):
    attempts: list[Attempt]


class LogLine(TypedDict):
    id: Id
    level: LogLevel
    message: str
    timestamp: Time
    attempt: int


class LogPage(TypedDict):
    taskExecutionId: Id
    logs: list[LogLine]
    total: int
    totalIsEstimate: bool
    limit: int
    offset: int
    nextCursor: str | None


class StateAnswer(TypedDict):
    state: dict[str, Any]


class Child(TypedDict):
    childWorkflowExecutionId: Id
    childExecutionName: str | None
    kind: str
    status: WorkflowStatus
    createdAt: Time
    completedAt: Time | None


class ChildList(TypedDict):
    children: list[Child]


class CancelAnswer(TypedDict):
    status: Literal["CANCELLED", "CANCELLING", "ALREADY_TERMINAL"]
    cancelledChildren: list[str]


class RetryAnswer(TypedDict):
    workflowExecutionId: Id
    status: Literal["PENDING"]
    retryAttempt: int
    message: str
    success: bool


class SignalAnswer(TypedDict):
    signalEventSequence: int | None


class PromiseAnswer(TypedDict):
    promiseId: Id
    resolved: bool
    alreadyResolved: NotRequired[bool]
