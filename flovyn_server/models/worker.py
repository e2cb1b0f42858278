"""The worker protocol: registration, polls, submits and their commands, task results."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import BeforeValidator, Field, SkipValidation
from typing_extensions import TypedDict

from flovyn_server.domain import LogLevel, WorkflowStatus
from flovyn_server.models.fields import (
    INT32_MAX,
    MAX_LIST,
    AttemptNumber,
    Body,
    DurationMs,
    ErrorText,
    Id,
    IdempotencyKey,
    Int32,
    Level,
    LongText,
    Name,
    PositiveDurationMs,
    Queue,
    StoredTime,
    StringMap,
    TextOrJson,
    Ttl,
    Uuid,
)
from flovyn_server.models.workflows import HistoryEvent

# -- registration ----------------------------------------------------------------------


class RetryPolicy(Body):
    """Backoff between attempts; a field left out (or null) takes its default."""

    max_attempts: int | None = Field(default=None, ge=1, le=101)
    initial_interval_ms: DurationMs | None = None
    backoff_coefficient: float | None = Field(default=None, ge=1.0, le=100.0)
    max_interval_ms: DurationMs | None = None


class WorkflowCapability(Body):
    kind: Name
    name: Name | None = None
    description: LongText | None = None
    tags: Annotated[list[Name], Field(max_length=100)] = []
    timeout_seconds: int | None = Field(None, ge=1, le=INT32_MAX)
    cancellable: bool = True
    version: Name | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None


class TaskCapability(Body):
    kind: Name
    name: Name | None = None
    description: LongText | None = None
    tags: Annotated[list[Name], Field(max_length=100)] = []
    retry_policy: RetryPolicy | None = None
    timeout_ms: PositiveDurationMs | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None


def _kind_only(value: Any) -> Any:
    """A capability may be given as its kind alone."""
    return {"kind": value} if isinstance(value, str) else value


class Register(Body):
    name: Name = "worker"
    version: Name | None = None
    host_name: Name | None = None
    process_id: int | None = Field(None, ge=0, le=INT32_MAX)
    queues: Annotated[list[Queue], Field(min_length=1, max_length=100)] = ["default"]
    workflows: Annotated[
        list[Annotated[WorkflowCapability, BeforeValidator(_kind_only)]],
        Field(max_length=MAX_LIST),
    ] = []
    tasks: Annotated[
        list[Annotated[TaskCapability, BeforeValidator(_kind_only)]], Field(max_length=MAX_LIST)
    ] = []


class WorkerRef(Body):
    worker_id: Name


class Poll(Body):
    """Held open until work arrives or `timeoutMs` passes (at most the server's
    maximum, 60 s by default)."""

    worker_id: Name
    queue: Queue = "default"
    kinds: Annotated[list[Name], Field(max_length=MAX_LIST)] = []
    max_items: int = Field(1, ge=1, le=100)
    timeout_ms: int = Field(20_000, ge=0, le=3_600_000)


class EagerOffer(Body):
    """Free slots for work of these kinds on this queue (eager dispatch)."""

    queue: Queue = "default"
    kinds: Annotated[list[Name], Field(max_length=MAX_LIST)] = []
    slots: int = Field(1, ge=0, le=100)


# -- commands of a submit ----------------------------------------------------------------


class ScheduleTask(Body):
    type: Literal["SCHEDULE_TASK"]
    task_execution_id: Uuid
    kind: Name
    input: Any = None
    max_retries: int = Field(3, ge=0, le=100)
    queue: Queue | None = None
    timeout_ms: PositiveDurationMs | None = None
    retry_policy: RetryPolicy | None = None
    metadata: StringMap | None = None


class StartTimer(Body):
    type: Literal["START_TIMER"]
    timer_id: Name
    duration_ms: DurationMs


class CancelTimer(Body):
    type: Literal["CANCEL_TIMER"]
    timer_id: Name


class CreatePromise(Body):
    type: Literal["CREATE_PROMISE"]
    promise_name: Name
    timeout_ms: DurationMs | None = None
    idempotency_key: IdempotencyKey | None = None
    idempotency_key_ttl: Ttl = Field("24h", alias="idempotencyKeyTTL")


class ScheduleChildWorkflow(Body):
    type: Literal["SCHEDULE_CHILD_WORKFLOW"]
    child_execution_name: Name
    child_workflow_execution_id: Uuid
    kind: Name
    input: Any = None
    queue: Queue | None = None


class RecordOperation(Body):
    type: Literal["RECORD_OPERATION"]
    operation_name: Name
    result: Any = None


class SetState(Body):
    type: Literal["SET_STATE"]
    key: Name
    value: Any = None


class ClearState(Body):
    type: Literal["CLEAR_STATE"]
    key: Name


class CompleteWorkflow(Body):
    type: Literal["COMPLETE_WORKFLOW"]
    output: Any = None


class FailWorkflow(Body):
    type: Literal["FAIL_WORKFLOW"]
    error: ErrorText = "workflow failed"
    stack_trace: LongText | None = None


Command = Annotated[
    ScheduleTask
    | StartTimer
    | CancelTimer
    | CreatePromise
    | ScheduleChildWorkflow
    | RecordOperation
    | SetState
    | ClearState
    | CompleteWorkflow
    | FailWorkflow,
    Field(discriminator="type"),
]

SubmitStatus = Literal["SUSPENDED", "COMPLETED", "FAILED", "CANCELLED"]


class Submit(Body):
    """The commands of one activation, applied in order in one transaction. COMPLETED
    needs a last COMPLETE_WORKFLOW command, FAILED a last FAIL_WORKFLOW."""

    worker_id: Name
    activation_id: Int32
    status: SubmitStatus
    commands: Annotated[list[Command], Field(max_length=MAX_LIST)] = []
    eager_tasks: EagerOffer | None = None


class FailActivation(Body):
    worker_id: Name
    activation_id: Int32
    error: ErrorText = "activation failed"
    error_type: Name = "ActivationError"


# -- task results ----------------------------------------------------------------------


class AttemptRef(Body):
    worker_id: Name | None = None
    attempt: AttemptNumber
    # A hint: the workflow the result writes to, so that its writes share a commit lane.
    workflow_execution_id: Uuid | None = None


class CompleteTask(AttemptRef):
    output: Any = None
    eager_activation: EagerOffer | None = None


class FailTask(AttemptRef):
    error: ErrorText
    retryable: bool = True
    timed_out: bool = False
    stack_trace: LongText | None = None


class Progress(AttemptRef):
    progress: float = Field(ge=0.0, le=1.0)
    details: TextOrJson = None


StreamType = Literal["token", "progress", "data", "error"]


class StreamData(AttemptRef):
    """What a running task streams to watchers (an LLM's tokens, a partial result):
    carried by the workflow stream as `task_stream`, kept for the stream retention."""

    stream_type: StreamType
    data: Any = None


class SubmitOperation(Body):
    type: Literal["submit"]
    id: Uuid
    body: Submit


class CompleteOperation(Body):
    type: Literal["complete"]
    id: Uuid
    body: CompleteTask


class FailOperation(Body):
    type: Literal["fail"]
    id: Uuid
    body: FailTask


BatchOperation = Annotated[
    SubmitOperation | CompleteOperation | FailOperation, Field(discriminator="type")
]


class Batch(Body):
    """Each operation is checked and answered on its own: a bad one gets its own 400
    in `results` and the others still run."""

    operations: Annotated[list[SkipValidation[BatchOperation]], Field(min_length=1, max_length=100)]


class LogEntry(Body):
    task_execution_id: Uuid
    attempt: AttemptNumber = 1
    level: Level = LogLevel.INFO
    message: LongText
    timestamp: StoredTime | None = None


class AppendLogs(Body):
    entries: Annotated[list[LogEntry], Field(max_length=1000)]


# -- answers -----------------------------------------------------------------------------


class Registered(TypedDict):
    workerId: Id
    heartbeatIntervalMs: int
    livenessTimeoutMs: int


class WorkerStatusAnswer(TypedDict):
    status: Literal["ONLINE", "OFFLINE"]


class Activation(TypedDict):
    workflowExecutionId: Id
    activationId: int
    kind: str
    queue: str
    input: Any
    retryAttempts: int
    parentWorkflowExecutionId: Id | None
    events: list[HistoryEvent]


class ActivationList(TypedDict):
    activations: list[Activation]


class TaskItem(TypedDict):
    """A task as a worker runs it: its attempt number is the one to answer with."""

    taskExecutionId: Id
    kind: str
    input: Any
    attempt: int
    workflowExecutionId: Id | None
    queue: str
    timeoutMs: int | None


class TaskItemList(TypedDict):
    tasks: list[TaskItem]


class SubmitAnswer(TypedDict):
    status: WorkflowStatus
    currentSequence: int
    tasks: NotRequired[list[TaskItem]]


class CompleteAnswer(TypedDict):
    status: Literal["COMPLETED"]
    activation: NotRequired[Activation | None]


class FailAnswer(TypedDict):
    status: Literal["PENDING", "FAILED", "CANCELLED"]
    retryAt: NotRequired[str | None]


class FailActivationAnswer(TypedDict):
    status: Literal["FAILED"]


class CancelledAnswer(TypedDict):
    """Whether the task's cancellation was requested: the task should stop."""

    cancelled: bool


class BatchResult(TypedDict):
    status: int
    body: dict[str, Any]


class BatchAnswer(TypedDict):
    results: list[BatchResult]


class LogsAccepted(TypedDict):
    accepted: int
