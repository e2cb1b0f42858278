"""Enums, errors and small value helpers shared by the engine and the API."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, overload


class WorkflowStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"


TERMINAL_WORKFLOW = frozenset(
    {WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED}
)
# Stored statuses a worker may still act on; CANCELLING is shown, never stored.
OPEN_WORKFLOW = (WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.WAITING)


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK = {LogLevel.DEBUG: 10, LogLevel.INFO: 20, LogLevel.WARN: 30, LogLevel.ERROR: 40}


class EventType(StrEnum):
    WORKFLOW_STARTED = "WORKFLOW_STARTED"
    WORKFLOW_COMPLETED = "WORKFLOW_COMPLETED"
    WORKFLOW_EXECUTION_FAILED = "WORKFLOW_EXECUTION_FAILED"
    OPERATION_COMPLETED = "OPERATION_COMPLETED"
    STATE_SET = "STATE_SET"
    STATE_CLEARED = "STATE_CLEARED"
    TASK_SCHEDULED = "TASK_SCHEDULED"
    TASK_COMPLETED = "TASK_COMPLETED"
    TASK_FAILED = "TASK_FAILED"
    TASK_CANCELLED = "TASK_CANCELLED"
    TIMER_STARTED = "TIMER_STARTED"
    TIMER_FIRED = "TIMER_FIRED"
    TIMER_CANCELLED = "TIMER_CANCELLED"
    PROMISE_CREATED = "PROMISE_CREATED"
    PROMISE_RESOLVED = "PROMISE_RESOLVED"
    PROMISE_REJECTED = "PROMISE_REJECTED"
    PROMISE_TIMEOUT = "PROMISE_TIMEOUT"
    SIGNAL_RECEIVED = "SIGNAL_RECEIVED"
    CHILD_WORKFLOW_INITIATED = "CHILD_WORKFLOW_INITIATED"
    CHILD_WORKFLOW_COMPLETED = "CHILD_WORKFLOW_COMPLETED"
    CHILD_WORKFLOW_FAILED = "CHILD_WORKFLOW_FAILED"
    CHILD_WORKFLOW_CANCELLED = "CHILD_WORKFLOW_CANCELLED"
    CANCELLATION_REQUESTED = "CANCELLATION_REQUESTED"
    WORKFLOW_CANCELLED = "WORKFLOW_CANCELLED"
    RETRY_REQUESTED = "RETRY_REQUESTED"


class DomainError(Exception):
    """A rule said no: what went wrong, in words and as a machine `code` clients can
    match on. It carries no HTTP status; the API maps each kind to one."""

    default_code = "ERROR"

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, *, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.code = code or self.default_code


class InvalidInput(DomainError):
    """The request is malformed, mistyped or out of range."""

    default_code = "BAD_REQUEST"


class Unauthenticated(DomainError):
    """No credentials, or unknown ones."""

    default_code = "UNAUTHORIZED"


class Forbidden(DomainError):
    """Known credentials that may not do this."""

    default_code = "FORBIDDEN"


class NotFound(DomainError):
    """No such resource for this tenant."""

    default_code = "NOT_FOUND"


class Conflict(DomainError):
    """The resource's state does not allow the action."""

    default_code = "CONFLICT"


def not_found(what: str) -> NotFound:
    return NotFound(f"{what} not found")


def now_ms() -> int:
    return int(time.time() * 1000)


@overload
def iso(ms: int) -> str: ...
@overload
def iso(ms: None) -> None: ...
def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as an RFC 3339 UTC string with millisecond precision."""
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def epoch_ms(value: datetime) -> int:
    """A time as epoch milliseconds; one without a zone is UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL_SECONDS = 30 * 86400


def parse_ttl_ms(value: str | None, default: str = "24h") -> int:
    """`30s`, `5m`, `2h`, `7d` to milliseconds; at most 30 days."""
    text = (value or default).strip()
    unit = text[-1:]
    if unit not in _TTL_UNITS or not text[:-1].isdigit():
        raise InvalidInput(f"bad TTL {text!r}: use a number with s, m, h or d (e.g. 24h)")
    seconds = int(text[:-1]) * _TTL_UNITS[unit]
    if seconds <= 0 or seconds > MAX_TTL_SECONDS:
        raise InvalidInput(f"TTL {text!r} must be more than 0 and at most 30d")
    return seconds * 1000
