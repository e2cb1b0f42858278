"""Standalone tasks over REST: a task with no workflow, run by any worker of its kind."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field
from typing_extensions import TypedDict

from flovyn_server.models.common import Paging
from flovyn_server.models.fields import (
    Body,
    IdempotencyKey,
    Name,
    PositiveDurationMs,
    Queue,
    StringMap,
    Ttl,
)
from flovyn_server.models.workflows import Task, upper_list

TaskStatus = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]


class CreateTask(Body):
    kind: Name = Field(examples=["send-invoice"], description="A task kind a worker registered.")
    input: Any = Field(default_factory=dict, description="The task's input: any JSON value.")
    queue: Queue = Field("default", description="The queue whose workers run it.")
    max_retries: int = Field(3, ge=0, le=10, description="Attempts after the first.")
    timeout_ms: PositiveDurationMs | None = Field(None, description="An attempt's deadline.")
    idempotency_key: IdempotencyKey | None = Field(
        None,
        description="A second create with this key within its TTL answers the first task "
        "(200) unless that one failed or was cancelled.",
    )
    idempotency_key_ttl: Ttl = Field(
        "24h", alias="idempotencyKeyTTL", description="How long the key holds: 30s to 30d."
    )
    metadata: StringMap | None = Field(None, description="Strings kept with the task.")


class ListTasks(Paging):
    status: Annotated[
        list[TaskStatus],
        BeforeValidator(upper_list),
        Field(max_length=5, description="Repeatable, or a comma list; any case."),
    ] = []
    queue: Queue | None = Field(None, description="Only this queue.")
    kind: Name | None = Field(
        None,
        validation_alias=AliasChoices("kind", "task_type", "taskType"),
        description="Only this task kind (also `task_type`).",
    )


class TaskPage(TypedDict):
    tasks: list[Task]
    total: int
    totalIsEstimate: bool
    limit: int
    offset: int
    nextCursor: str | None
