"""Small helpers shared by the integration tests: waiting, timestamps, error shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from tests.integration.conftest import Flovyn

T = TypeVar("T")

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


async def wait_for(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 20.0,  # noqa: ASYNC109 - how long to keep polling
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: T | None = None
    while True:
        last = await check()
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


async def execution(f: Flovyn, workflow_id: str) -> dict[str, Any]:
    data: dict[str, Any] = await f.ok("GET", f"P/workflow-executions/{workflow_id}")
    return data


async def wait_status(
    f: Flovyn,
    workflow_id: str,
    statuses: frozenset[str] | set[str] = TERMINAL,
    *,
    timeout: float = 20.0,  # noqa: ASYNC109 - how long to keep polling
) -> dict[str, Any]:
    """The execution once its status is one of `statuses`."""

    async def check() -> dict[str, Any] | None:
        row = await execution(f, workflow_id)
        return row if row["status"] in statuses else None

    return await wait_for(
        check, timeout=timeout, what=f"execution {workflow_id} to reach {sorted(statuses)}"
    )


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
