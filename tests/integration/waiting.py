"""Polling helpers for integration tests: wait for a status, an event, any condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tests.integration.conftest import Flovyn

T = TypeVar("T")

POLL_S = 0.05


async def wait_for(
    check: Callable[[], Awaitable[T | None]], *, within: float = 20.0, what: str = "condition"
) -> T:
    """Call `check` until it returns something other than None (or False); return that."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = await check()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(POLL_S)


async def execution(f: Flovyn, workflow_id: str) -> dict[str, Any]:
    data: dict[str, Any] = await f.ok("GET", f"P/workflow-executions/{workflow_id}")
    return data


async def wait_status(
    f: Flovyn, workflow_id: str, *statuses: str, within: float = 20.0
) -> dict[str, Any]:
    """The execution once its status is one of `statuses`."""

    async def check() -> dict[str, Any] | None:
        row = await execution(f, workflow_id)
        return row if row["status"] in statuses else None

    return await wait_for(check, within=within, what=f"{workflow_id} to be {statuses}")


async def wait_event(
    f: Flovyn, workflow_id: str, event_type: str, *, count: int = 1, within: float = 20.0
) -> list[dict[str, Any]]:
    """The events of `workflow_id` once at least `count` of type `event_type` are there."""

    async def check() -> list[dict[str, Any]] | None:
        events = await f.events(workflow_id)
        found = [e for e in events if e["eventType"] == event_type]
        return events if len(found) >= count else None

    return await wait_for(
        check, within=within, what=f"{count} {event_type} event(s) of {workflow_id}"
    )


def event_types(events: list[dict[str, Any]]) -> list[str]:
    return [e["eventType"] for e in events]


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["eventType"] == event_type]


def assert_gapless(events: list[dict[str, Any]]) -> None:
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
