"""Helpers shared by the integration tests: polling (any condition, a status, an event),
reading executions, histories and attempts, timestamps, and the REST error shape."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from tests.integration.conftest import Flovyn

T = TypeVar("T")

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")

# The history of a workflow that runs one task, and of one that sleeps once.
ONE_TASK_HISTORY = ["WORKFLOW_STARTED", "TASK_SCHEDULED", "TASK_COMPLETED", "WORKFLOW_COMPLETED"]
ONE_TIMER_HISTORY = ["WORKFLOW_STARTED", "TIMER_STARTED", "TIMER_FIRED", "WORKFLOW_COMPLETED"]

# --- waiting ------------------------------------------------------------------------------


async def wait_for(
    check: Callable[[], Awaitable[T | None]],
    *,
    within: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call `check` every `interval` seconds until it returns something other than None
    or False, and return that; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        last = await check()
        if last is not None and last is not False:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


async def eventually(check: Callable[[], bool], *, within: float = 5.0) -> None:
    """`wait_for` of a synchronous check on this process's own state (no I/O)."""

    async def holds() -> bool:
        return check()

    await wait_for(holds, within=within, interval=0.01)


async def wait_status(
    f: Flovyn, workflow_id: str, *statuses: str, within: float = 20.0
) -> dict[str, Any]:
    """The execution once its status is one of `statuses` (by default: any terminal one)."""
    wanted = statuses or TERMINAL

    async def check() -> dict[str, Any] | None:
        row = await execution(f, workflow_id)
        return row if row["status"] in wanted else None

    return await wait_for(check, within=within, what=f"{workflow_id} to be one of {wanted}")


async def wait_event(
    f: Flovyn, workflow_id: str, event_type: str, *, count: int = 1, within: float = 20.0
) -> list[dict[str, Any]]:
    """The events of `workflow_id` once at least `count` of type `event_type` are there."""

    async def check() -> list[dict[str, Any]] | None:
        events = await f.events(workflow_id)
        return events if len(of_type(events, event_type)) >= count else None

    return await wait_for(
        check, within=within, what=f"{count} {event_type} event(s) of {workflow_id}"
    )


async def wait_first_child(
    f: Flovyn, workflow_id: str, status: str, *, within: float = 20.0
) -> str:
    """The id of the first child of `workflow_id` once that child has `status`."""

    async def check() -> str | None:
        kids = await children(f, workflow_id)
        if kids and kids[0]["status"] == status:
            return str(kids[0]["childWorkflowExecutionId"])
        return None

    return await wait_for(check, within=within, what=f"the child of {workflow_id} to be {status}")


# --- reading ------------------------------------------------------------------------------


async def execution(f: Flovyn, workflow_id: str) -> dict[str, Any]:
    data: dict[str, Any] = await f.ok("GET", f"P/workflow-executions/{workflow_id}")
    return data


async def children(f: Flovyn, workflow_id: str) -> list[dict[str, Any]]:
    data = await f.ok("GET", f"P/workflow-executions/{workflow_id}/children")
    return list(data["children"])


async def attempts(f: Flovyn, workflow_id: str, task_id: str) -> list[dict[str, Any]]:
    data = await f.ok("GET", f"P/workflow-executions/{workflow_id}/tasks/{task_id}/attempts")
    return list(data["attempts"])


async def diagnose(f: Flovyn, workflow_id: str) -> str:
    """The execution, its tasks with their attempts and its events, for a failure message."""
    lines = [f"execution: {await execution(f, workflow_id)}"]
    for t in await f.tasks(workflow_id):
        lines.append(f"task: {t}")
        lines.append(f"  attempts: {await attempts(f, workflow_id, t['id'])}")
    lines += [f"event: {e}" for e in await f.events(workflow_id)]
    return "\n".join(lines)


async def trigger(f: Flovyn, kind: str, body: dict[str, Any] | None = None) -> str:
    data = await f.ok("POST", f"P/workflows/{kind}/trigger", body or {})
    return str(data["workflowExecutionId"])


async def workflow_total(f: Flovyn, status: str | None = None) -> int:
    params = {"limit": 1} if status is None else {"limit": 1, "status": status}
    data = await f.ok("GET", "P/workflow-executions", params=params)
    return int(data["total"])


# --- histories ----------------------------------------------------------------------------


def event_types(events: list[dict[str, Any]]) -> list[str]:
    return [e["eventType"] for e in events]


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["eventType"] == event_type]


def assert_gapless(events: list[dict[str, Any]]) -> None:
    """The sequences are 1, 2, 3, ... with no gap and no repeat."""
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1)), events


# --- timestamps and errors ----------------------------------------------------------------


def ts(value: str) -> datetime:
    """An RFC 3339 timestamp from the API."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ms_between(earlier: str, later: str) -> float:
    return (ts(later) - ts(earlier)).total_seconds() * 1000


def assert_error(status: int, body: Any, expected: int, code: str | None = None) -> None:
    """`status` is `expected` and `body` has the REST error shape `{error, code, details?}`."""
    assert status == expected, (status, body)
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("code"), str) and body["code"], body
    assert set(body) <= {"error", "code", "details"}, body
    if code is not None:
        assert body["code"] == code, body
