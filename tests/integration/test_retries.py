"""Task retries with backoff, attempt history, per-attempt logs, and failures for good."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flovyn_worker import RetryPolicy, TaskContext, TaskFailed, WorkflowContext, task, workflow
from tests.integration.conftest import Flovyn
from tests.integration.helpers import (
    ONE_TASK_HISTORY,
    assert_error,
    assert_gapless,
    attempts,
    event_types,
    ms_between,
    wait_status,
)

INITIAL_MS = 200

# --- fails twice, then succeeds -----------------------------------------------------------


@task(
    name="flaky",
    retry_policy=RetryPolicy(
        max_attempts=4,
        initial_interval=timedelta(milliseconds=INITIAL_MS),
        backoff_coefficient=2.0,
        max_interval=timedelta(seconds=5),
    ),
)
async def flaky(ctx: TaskContext, item: str) -> dict[str, Any]:
    ctx.logger.debug("debug detail of attempt %d", ctx.attempt)
    ctx.logger.info("processing %s in attempt %d", item, ctx.attempt)
    if ctx.attempt < 3:
        ctx.logger.warning("upstream glitch in attempt %d", ctx.attempt)
        raise RuntimeError(f"glitch #{ctx.attempt}")
    ctx.logger.error("all good in attempt %d (logged at ERROR on purpose)", ctx.attempt)
    return {"item": item, "attempt": ctx.attempt}


@workflow(name="flaky-flow")
async def flaky_flow(ctx: WorkflowContext, item: str) -> Any:
    return await ctx.schedule(flaky, item)


async def test_task_retried_with_backoff_keeps_every_attempt_and_its_logs(flovyn: Flovyn) -> None:
    # A long poll timeout: a retry must be dispatched when due, not when a held poll ends.
    async with (
        flovyn.worker([flaky_flow], [flaky], poll_timeout=60.0) as worker,
        flovyn.client() as client,
    ):
        handle = await client.start_workflow(flaky_flow, "order-7")
        assert await handle.result(timeout=30) == {"item": "order-7", "attempt": 3}
    # Leaving the block stopped the worker, which flushes its buffered task logs.

    events = await flovyn.events(handle.id)
    # Attempts are not workflow events: one TASK_COMPLETED, no trace of the failures.
    assert event_types(events) == ONE_TASK_HISTORY
    task_id = events[1]["data"]["taskExecutionId"]
    assert events[1]["data"]["maxRetries"] == 3

    tried = await attempts(flovyn, handle.id, task_id)
    assert [a["attempt"] for a in tried] == [1, 2, 3]
    assert [a["status"] for a in tried] == ["FAILED", "FAILED", "COMPLETED"]
    assert "glitch #1" in tried[0]["error"]
    assert "glitch #2" in tried[1]["error"]
    assert tried[2].get("error") is None
    assert tried[2]["output"] == {"item": "order-7", "attempt": 3}
    for a in tried:
        assert a["workerId"] == worker.worker_id
        assert isinstance(a["durationMs"], int) and a["durationMs"] >= 0
        assert a["startedAt"] and a["finishedAt"]
        assert a["durationMs"] == round(ms_between(a["startedAt"], a["finishedAt"]))
    # Backoff: initial 200 ms, then x2. Lower bounds only (a busy machine is only slower).
    assert ms_between(tried[0]["finishedAt"], tried[1]["startedAt"]) >= INITIAL_MS - 1
    assert ms_between(tried[1]["finishedAt"], tried[2]["startedAt"]) >= 2 * INITIAL_MS - 1
    assert ms_between(tried[0]["startedAt"], tried[1]["startedAt"]) >= INITIAL_MS - 1
    assert ms_between(tried[1]["startedAt"], tried[2]["startedAt"]) >= 2 * INITIAL_MS - 1

    task_row = (await flovyn.tasks(handle.id))[0]
    assert (task_row["status"], task_row["executionCount"]) == ("COMPLETED", 3)

    logs_path = f"P/workflow-executions/{handle.id}/tasks/{task_id}/logs"
    every = await flovyn.ok("GET", logs_path)
    assert every["taskExecutionId"] == task_id
    assert every["total"] == 9  # attempts 1-2: debug, info, warn; attempt 3: debug, info, error
    for n in (1, 2, 3):
        mine = await flovyn.ok("GET", logs_path, params={"attempt": n})
        assert {line["attempt"] for line in mine["logs"]} == {n}
        messages = [line["message"] for line in mine["logs"]]
        assert f"processing order-7 in attempt {n}" in messages
        assert all(f"attempt {n}" in m for m in messages), messages
        for line in mine["logs"]:
            assert set(line) >= {"id", "level", "message", "timestamp", "attempt"}

    # `level` is a minimum: WARN returns WARN and ERROR lines.
    warn_up = await flovyn.ok("GET", logs_path, params={"level": "WARN"})
    assert sorted(line["level"] for line in warn_up["logs"]) == ["ERROR", "WARN", "WARN"]
    assert warn_up["total"] == 3
    info_up = await flovyn.ok("GET", logs_path, params={"level": "info"})
    assert info_up["total"] == 6
    assert "DEBUG" not in {line["level"] for line in info_up["logs"]}
    debug_up = await flovyn.ok("GET", logs_path, params={"level": "DEBUG"})
    assert debug_up["total"] == 9

    found = await flovyn.ok("GET", logs_path, params={"search": "GLITCH"})
    assert [line["message"] for line in found["logs"]] == [
        "upstream glitch in attempt 1",
        "upstream glitch in attempt 2",
    ]
    both = await flovyn.ok(
        "GET", logs_path, params={"search": "attempt 2", "level": "INFO", "attempt": 2}
    )
    assert [line["level"] for line in both["logs"]] == ["INFO", "WARN"]

    paged = await flovyn.ok("GET", logs_path, params={"limit": 2, "offset": 1})
    assert (paged["total"], paged["limit"], paged["offset"]) == (9, 2, 1)
    assert [line["id"] for line in paged["logs"]] == [line["id"] for line in every["logs"][1:3]]

    status, body = await flovyn.call("GET", logs_path, params={"level": "VERBOSE"})
    assert_error(status, body, 400)
    assert "VERBOSE" in body["error"]


# --- fails for good -----------------------------------------------------------------------

BROKEN_POLICY = RetryPolicy(
    max_attempts=2,
    initial_interval=timedelta(milliseconds=50),
    backoff_coefficient=2.0,
    max_interval=timedelta(seconds=1),
)


@task(name="broken", retry_policy=BROKEN_POLICY)
async def broken(ctx: TaskContext, what: str) -> None:
    raise ValueError(f"cannot {what} (attempt {ctx.attempt})")


@workflow(name="catches-failure")
async def catches_failure(ctx: WorkflowContext, what: str) -> dict[str, Any]:
    try:
        await ctx.schedule(broken, what)
    except TaskFailed as exc:
        return {"recovered": True, "error": exc.error, "kind": exc.kind}
    return {"recovered": False}


@workflow(name="lets-it-fail")
async def lets_it_fail(ctx: WorkflowContext, what: str) -> None:
    await ctx.schedule(broken, what)


async def test_workflow_catches_a_failed_task_and_completes(flovyn: Flovyn) -> None:
    async with flovyn.worker([catches_failure], [broken]), flovyn.client() as client:
        handle = await client.start_workflow(catches_failure, "ship")
        result = await handle.result(timeout=30)
    assert result["recovered"] is True
    assert "cannot ship (attempt 2)" in result["error"]
    assert result["kind"] in (None, "broken")
    events = await flovyn.events(handle.id)
    assert event_types(events) == [
        "WORKFLOW_STARTED",
        "TASK_SCHEDULED",
        "TASK_FAILED",
        "WORKFLOW_COMPLETED",
    ]
    task_id = events[1]["data"]["taskExecutionId"]
    tried = await attempts(flovyn, handle.id, task_id)
    assert [a["status"] for a in tried] == ["FAILED", "FAILED"]
    task_row = (await flovyn.tasks(handle.id))[0]
    assert task_row["status"] == "FAILED"
    assert "cannot ship (attempt 2)" in task_row["error"]


async def test_uncaught_task_failure_fails_the_workflow(flovyn: Flovyn) -> None:
    async with flovyn.worker([lets_it_fail], [broken]):
        status, started = await flovyn.call(
            "POST", "P/workflows/lets-it-fail/trigger", {"input": "pack"}
        )
        assert status == 201
        wf_id = started["workflowExecutionId"]
        row = await wait_status(flovyn, wf_id, within=30)
    assert row["status"] == "FAILED"
    assert "cannot pack (attempt 2)" in row["error"]
    assert row["output"] is None
    assert row["completedAt"] is not None
    events = await flovyn.events(wf_id)
    assert event_types(events) == [
        "WORKFLOW_STARTED",
        "TASK_SCHEDULED",
        "TASK_FAILED",
        "WORKFLOW_EXECUTION_FAILED",
    ]
    assert_gapless(events)
    assert "cannot pack (attempt 2)" in events[2]["data"]["error"]
    assert events[2]["data"]["taskExecutionId"] == events[1]["data"]["taskExecutionId"]
    assert "cannot pack (attempt 2)" in events[3]["data"]["error"]
    listed = await flovyn.ok("GET", "P/workflow-executions", params={"status": "FAILED"})
    assert [w["id"] for w in listed["workflows"]] == [wf_id]
