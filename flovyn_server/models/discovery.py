"""Connected workers and the workflow and task kinds they registered."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import BeforeValidator
from typing_extensions import TypedDict

from flovyn_server.models.common import Paging
from flovyn_server.models.fields import Id, Time, upper

WorkerType = Literal["WORKFLOW", "TASK", "UNIFIED"]
WorkerStatus = Literal["ONLINE", "OFFLINE"]


class ListWorkers(Paging):
    type: Annotated[WorkerType, BeforeValidator(upper)] | None = None
    status: Annotated[WorkerStatus, BeforeValidator(upper)] | None = None


class WorkerInfo(TypedDict):
    id: Id
    name: str
    type: WorkerType
    status: WorkerStatus
    version: str | None
    hostName: str | None
    processId: int | None
    queues: list[str]
    lastHeartbeatAt: Time
    registeredAt: Time


class WorkerList(TypedDict):
    workers: list[WorkerInfo]
    total: int
    totalIsEstimate: bool
    limit: int
    offset: int
    nextCursor: str | None


class WorkerDetail(TypedDict):
    worker: WorkerInfo
    workflowCapabilities: list[str]
    taskCapabilities: list[str]


class Definition(TypedDict):
    """A workflow or task kind as workers registered it; it stays listed (UNAVAILABLE)
    after its last worker goes."""

    kind: str
    name: str
    description: str | None
    tags: list[str]
    availabilityStatus: Literal["AVAILABLE", "UNAVAILABLE"]
    workerCount: int
    inputSchema: dict[str, Any] | None
    outputSchema: dict[str, Any] | None
    firstSeenAt: Time
    lastRegisteredAt: Time
    # workflow kinds
    timeoutSeconds: NotRequired[int | None]
    cancellable: NotRequired[bool]
    latestVersion: NotRequired[str | None]
    # task kinds
    retryPolicy: NotRequired[dict[str, Any] | None]
    timeoutMs: NotRequired[int | None]
    # one definition: executions of the kind by status
    executionCounts: NotRequired[dict[str, int]]


class DefinitionList(TypedDict):
    definitions: list[Definition]


class Health(TypedDict):
    status: Literal["UP", "DOWN"]
    version: str
    storage: Literal["sqlite", "postgres"]
    plugins: list[str]
