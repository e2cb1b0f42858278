"""Schedules over REST: start a workflow or a standalone task by cron, at an interval,
or once; every run recorded."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from typing_extensions import TypedDict

from flovyn_server.models.common import Paging
from flovyn_server.models.fields import (
    Body,
    Id,
    Name,
    Queue,
    ShortText,
    StoredTime,
    StringMap,
    Time,
    text,
)

Cron = Annotated[str, text(200, min_length=1)]
Timezone = Annotated[str, text(64, min_length=1)]


class CronType(Body):
    type: Literal["cron"]
    cron: Cron = Field(
        examples=["0 9 * * 1-5"],
        description="5 fields (minute hour day month weekday), or 6 with seconds first.",
    )
    timezone: Timezone = Field("UTC", examples=["Europe/Berlin"], description="An IANA name.")
    end_at: StoredTime | None = Field(None, description="No run after this time (RFC 3339).")


class IntervalType(Body):
    type: Literal["interval"]
    every_seconds: int = Field(ge=1, le=366 * 86400, examples=[3600])
    start_at: StoredTime | None = Field(
        None, description="The first run (RFC 3339); by default one interval from now."
    )


class OnceType(Body):
    type: Literal["once"]
    run_at: StoredTime = Field(description="When it runs (RFC 3339).")


class WorkflowTarget(Body):
    type: Literal["workflow"]
    workflow_kind: Name
    queue: Queue = "default"
    input: Any = Field(default_factory=dict)
    metadata: StringMap | None = None


class TaskTarget(Body):
    type: Literal["task"]
    task_kind: Name
    queue: Queue = "default"
    input: Any = Field(default_factory=dict)
    max_retries: int = Field(3, ge=0, le=10)


ScheduleType = Annotated[CronType | IntervalType | OnceType, Field(discriminator="type")]
Target = Annotated[WorkflowTarget | TaskTarget, Field(discriminator="type")]
OverlapPolicy = Literal["skip", "allow", "cancel_previous"]
MissedRunPolicy = Literal["skip", "execute_once"]


class ScheduleBody(Body):
    """A schedule as created (POST) or replaced (PUT)."""

    name: Name = Field(examples=["nightly-report"], description="Unique in the tenant.")
    description: ShortText | None = None
    schedule_type: ScheduleType
    target: Target
    overlap_policy: OverlapPolicy = Field(
        "skip", description="When the previous run has not ended: skip, allow, cancel_previous."
    )
    missed_run_policy: MissedRunPolicy = Field(
        "skip", description="Slots missed while the server was down: skip, or run once now."
    )
    enabled: bool = True


class ListSchedules(Paging):
    pass


class ListRuns(Paging):
    pass


class Schedule(TypedDict):
    id: Id
    name: str
    description: str | None
    scheduleType: dict[str, Any]
    target: dict[str, Any]
    overlapPolicy: OverlapPolicy
    missedRunPolicy: MissedRunPolicy
    enabled: bool
    nextRunAt: Time | None
    lastRunAt: Time | None
    runCount: int
    createdAt: Time
    updatedAt: Time


class ScheduleList(TypedDict):
    schedules: list[Schedule]
    total: int
    totalIsEstimate: bool
    limit: int
    offset: int
    nextCursor: str | None


class Run(TypedDict):
    scheduledAt: Time
    startedAt: Time
    status: Literal["started", "skipped", "failed"]
    targetType: Literal["workflow", "task"]
    targetId: Id | None
    error: str | None


class RunList(TypedDict):
    runs: list[Run]
    total: int
    totalIsEstimate: bool
    limit: int
    offset: int
    nextCursor: str | None


class Triggered(TypedDict):
    """What a schedule's `trigger` started."""

    targetType: Literal["workflow", "task"]
    targetId: Id
    run: Run
