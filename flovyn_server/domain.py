"""Enums, errors and small value helpers shared by the engine and the API."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


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


class ApiError(Exception):
    """An error with an HTTP status and a machine code; the API turns it into JSON."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found")


def bad_request(message: str, details: dict[str, Any] | None = None) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message, details)


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as an RFC 3339 UTC string with millisecond precision."""
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def parse_iso_ms(value: str) -> int:
    """RFC 3339 string to epoch milliseconds; raises ApiError on bad input."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad_request(f"not an RFC 3339 time: {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL_SECONDS = 30 * 86400


def parse_ttl_ms(value: str | None, default: str = "24h") -> int:
    """`30s`, `5m`, `2h`, `7d` to milliseconds; at most 30 days."""
    text = (value or default).strip()
    unit = text[-1:]
    if unit not in _TTL_UNITS or not text[:-1].isdigit():
        raise bad_request(f"bad TTL {text!r}: use a number with s, m, h or d (e.g. 24h)")
    seconds = int(text[:-1]) * _TTL_UNITS[unit]
    if seconds <= 0 or seconds > MAX_TTL_SECONDS:
        raise bad_request(f"TTL {text!r} must be more than 0 and at most 30d")
    return seconds * 1000
