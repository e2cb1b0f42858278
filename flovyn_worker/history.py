"""The recorded history of an execution, split the way replay consumes it.

Command events (what earlier activations of the code asked for) are matched by
per-kind counters as the code issues commands again; every other event is a
resolution event, applied one at a time in sequence order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# eventType -> the counter kind that matches it
COMMAND_KINDS: dict[str, str] = {
    "TASK_SCHEDULED": "task",
    "TIMER_STARTED": "timer",
    "PROMISE_CREATED": "promise",
    "CHILD_WORKFLOW_INITIATED": "child",
    "OPERATION_COMPLETED": "operation",
    "STATE_SET": "state",
    "STATE_CLEARED": "state",
}


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 string (or datetime) to an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    """One workflow event: ``{sequence, eventType, timestamp, data}``."""

    sequence: int
    event_type: str
    timestamp: datetime | None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        """Build from the wire shape."""
        return cls(
            sequence=int(raw["sequence"]),
            event_type=str(raw["eventType"]),
            timestamp=parse_timestamp(raw.get("timestamp")),
            data=dict(raw.get("data") or {}),
        )

    @property
    def command_kind(self) -> str | None:
        """The counter kind of a command event, None for a resolution event."""
        return COMMAND_KINDS.get(self.event_type)

    def get(self, key: str, default: Any = None) -> Any:
        """A field of ``data``."""
        return self.data.get(key, default)


def parse_events(raw_events: list[dict[str, Any]] | list[Event]) -> list[Event]:
    """Events in sequence order, whatever order they came in."""
    events = [e if isinstance(e, Event) else Event.from_json(e) for e in raw_events]
    return sorted(events, key=lambda e: e.sequence)


class CommandHistory:
    """The command events of a history, consumed as the code issues commands."""

    def __init__(self, events: list[Event]) -> None:
        self._queues: dict[str, deque[Event]] = {}
        # TIMER_CANCELLED is matched by timer id, not by counter: the server also
        # appends it by itself when it cancels an execution's pending timers.
        self._timer_cancels: dict[str, Event] = {}
        for event in events:
            kind = event.command_kind
            if kind is not None:
                self._queues.setdefault(kind, deque()).append(event)
            elif event.event_type == "TIMER_CANCELLED":
                self._timer_cancels.setdefault(str(event.get("timerId")), event)

    def next(self, kind: str) -> Event | None:
        """The next unmatched command event of ``kind``, consumed; None past the end."""
        queue = self._queues.get(kind)
        return queue.popleft() if queue else None

    def take(self, kind: str, id_field: str, id_value: str) -> Event | None:
        """Consume the command event of ``kind`` whose ``id_field`` is ``id_value``.

        Used for commands re-issued after a manual retry: their events are not
        part of the code's own counter sequence.
        """
        queue = self._queues.get(kind)
        if not queue:
            return None
        for event in queue:
            if event.get(id_field) == id_value:
                queue.remove(event)
                return event
        return None

    def take_timer_cancel(self, timer_id: str) -> bool:
        """True (and consumed) if the history already records this timer's cancel."""
        return self._timer_cancels.pop(timer_id, None) is not None

    def first_unmatched(self) -> Event | None:
        """The earliest command event the code has not issued (a violation at the end)."""
        heads = [queue[0] for queue in self._queues.values() if queue]
        return min(heads, key=lambda e: e.sequence) if heads else None


def describe(event: Event) -> str:
    """Short human description of a command event for violation messages."""
    name_field = {
        "TASK_SCHEDULED": "kind",
        "TIMER_STARTED": "timerId",
        "PROMISE_CREATED": "promiseName",
        "CHILD_WORKFLOW_INITIATED": "childWorkflowKind",
        "OPERATION_COMPLETED": "operationName",
        "STATE_SET": "key",
        "STATE_CLEARED": "key",
    }.get(event.event_type)
    if name_field is None:
        return f"{event.event_type} (sequence {event.sequence})"
    extra = ""
    if event.event_type == "CHILD_WORKFLOW_INITIATED":
        extra = f" named '{event.get('childExecutionName')}'"
    return f"{event.event_type} of '{event.get(name_field)}'{extra} (sequence {event.sequence})"
