"""When schedules run next: cron in real timezones across daylight-saving changes,
intervals and once; bad cron and unknown timezones are refused with a clear message."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from flovyn_server.domain import InvalidInput
from flovyn_server.engine.calendar import next_cron, next_run, to_ms

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def walk(expression: str, zone: str, start: datetime, n: int) -> list[str]:
    out, at = [], start
    for _ in range(n):
        at = next_cron(expression, zone, at)
        out.append(at.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M%z"))
    return out


def test_a_skipped_time_runs_at_the_next_valid_time() -> None:
    # Berlin skips 02:00-02:59 on 2026-03-29; New York on 2026-03-08.
    assert walk("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 27, tzinfo=UTC), 3) == [
        "03-27 02:30+0100", "03-28 02:30+0100", "03-29 03:00+0200",
    ]  # fmt: skip
    assert walk("30 2 * * *", "America/New_York", datetime(2026, 3, 7, 12, tzinfo=UTC), 3) == [
        "03-08 03:00-0400", "03-09 02:30-0400", "03-10 02:30-0400",
    ]  # fmt: skip
    # Every 15 minutes: the skipped hour's slots are one run at 03:00.
    assert walk("*/15 * * * *", "Europe/Berlin", datetime(2026, 3, 29, 0, 40, tzinfo=UTC), 4) == [
        "03-29 01:45+0100", "03-29 03:00+0200", "03-29 03:15+0200", "03-29 03:30+0200",
    ]  # fmt: skip


def test_a_repeated_time_runs_once() -> None:
    # Berlin repeats 02:00-02:59 on 2026-10-25; New York 01:00-01:59 on 2026-11-01.
    assert walk("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 2) == [
        "10-25 02:30+0200", "10-26 02:30+0100",
    ]  # fmt: skip
    assert walk("30 1 * * *", "America/New_York", datetime(2026, 10, 31, 12, tzinfo=UTC), 2) == [
        "11-01 01:30-0400", "11-02 01:30-0500",
    ]  # fmt: skip
    runs = walk("*/30 * * * *", "Europe/Berlin", datetime(2026, 10, 24, 23, 40, tzinfo=UTC), 4)
    assert runs == ["10-25 02:00+0200", "10-25 02:30+0200", "10-25 03:00+0100", "10-25 03:30+0100"]


def test_six_fields_have_seconds_first() -> None:
    at = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert next_cron("*/10 * * * * *", "UTC", at) == datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("* * *", "UTC", "has 3 fields"),
        ("61 * * * *", "UTC", "is not valid"),
        ("* * * * * * *", "UTC", "has 7 fields"),
        ("0 9 * * 1-5", "Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
    ],
)
def test_bad_cron_and_timezones_say_what_is_wrong(expression: str, zone: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        next_cron(expression, zone, datetime(2026, 1, 1, tzinfo=UTC))
    assert message in caught.value.message


def test_interval_once_and_end() -> None:
    start = to_ms(datetime(2026, 1, 1, tzinfo=UTC))
    spec = {"type": "interval", "everySeconds": 60}
    assert next_run(spec, start, start) == start + 60_000  # one interval after the anchor
    assert next_run(spec, start + 60_000, start) == start + 120_000  # strictly after
    assert next_run(spec, start + 61_000, start) == start + 120_000
    with_start = {"type": "interval", "everySeconds": 60, "startAt": "2026-01-01T00:00:30+00:00"}
    assert next_run(with_start, start, start) == start + 30_000
    once = {"type": "once", "runAt": "2026-01-01T00:10:00+00:00"}
    assert next_run(once, start, start) == start + 600_000
    assert next_run(once, start + 600_000, start) is None
    cron = {
        "type": "cron",
        "cron": "0 * * * *",
        "timezone": "UTC",
        "endAt": "2026-01-01T02:00:00+00:00",
    }
    assert next_run(cron, start, start) == start + 3_600_000
    assert next_run(cron, start + 7_200_000, start) is None
