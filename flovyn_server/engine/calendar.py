"""When a schedule runs next: cron in an IANA timezone, a fixed interval, or once.

Cron expressions are read by croniter on wall-clock times of the schedule's zone,
and each wall-clock time is then placed on the real clock:

- a time that a daylight-saving change skips (02:30 on the night clocks go forward)
  runs at the first valid time after the gap (03:00);
- a time that a change repeats (02:30 twice on the night they go back) runs once, at
  its first occurrence: the next run is looked for after that wall-clock time, so the
  hour's second pass is not run again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from flovyn_server.domain import InvalidInput

_STEP = timedelta(minutes=1)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin or UTC",
            {"field": "scheduleType.timezone"},
        ) from None


def check_cron(expression: str) -> bool:
    """Whether the expression has seconds first (6 fields); InvalidInput if malformed."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise InvalidInput(
            f"cron {expression!r} has {len(fields)} fields: use 5 (minute hour day month "
            "weekday) or 6 (second first)",
            {"field": "scheduleType.cron"},
        )
    seconds = len(fields) == 6
    if not croniter.is_valid(expression, second_at_beginning=seconds):
        raise InvalidInput(
            f"cron {expression!r} is not valid: each field is a number, a range (1-5), a "
            "list (1,3), a step (*/15) or *",
            {"field": "scheduleType.cron"},
        )
    return seconds


def _place(wall: datetime, tz: ZoneInfo) -> datetime:
    """A wall-clock time of `tz` on the real clock (see the module)."""
    for _ in range(24 * 60):  # a gap is at most a few hours
        aware = wall.replace(tzinfo=tz, fold=0)
        if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
            return aware
        wall = (wall + _STEP).replace(second=0, microsecond=0)
    raise ValueError(f"no valid time after {wall} in {tz}")


def next_cron(expression: str, timezone: str, after: datetime) -> datetime:
    """The first run strictly after `after` (aware)."""
    tz = zone(timezone)
    seconds = check_cron(expression)
    wall = after.astimezone(tz).replace(tzinfo=None)
    itr = croniter(expression, wall, second_at_beginning=seconds)
    while True:
        candidate = _place(itr.get_next(datetime), tz)
        if candidate > after:
            return candidate


def to_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def next_run(spec: dict[str, Any], after_ms: int, anchor_ms: int) -> int | None:
    """The next run of a schedule strictly after `after_ms` (None: it runs no more).
    `anchor_ms` is where an interval counts from when it has no `startAt`."""
    kind = spec["type"]
    if kind == "cron":
        found = to_ms(next_cron(spec["cron"], spec.get("timezone") or "UTC", from_ms(after_ms)))
        end = spec.get("endAt")
        return None if end is not None and found > to_ms(datetime.fromisoformat(end)) else found
    if kind == "interval":
        every = int(spec["everySeconds"]) * 1000
        start = spec.get("startAt")
        first = to_ms(datetime.fromisoformat(start)) if start else anchor_ms + every
        if after_ms < first:
            return first
        return first + ((after_ms - first) // every + 1) * every
    run_at = to_ms(datetime.fromisoformat(spec["runAt"]))
    return run_at if run_at > after_ms else None
